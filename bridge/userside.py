"""A session's handling of its user's events: starting (and "next"), messages, reports, leaving."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from . import rich
from .abc import Backend, Chat
from .events import (
    Disconnected,
    Edit,
    Event,
    Message,
    Mode,
    Posted,
    Reaction,
    Reason,
    Report,
    Retract,
    Start,
    StoppedTyping,
    Typing,
    Undelivered,
)
from .hygiene import clean, cut
from .policy.moderator import Decision, wait_notice
from .sessionbase import NOTHING_YET, RELAYED_TO_STRANGER, STORE_DOWN, State, burst
from .starts import check_start, complete_start, start_from_dict
from .store import SessionRecord, StoreUnavailable
from .wording import reason_text

if TYPE_CHECKING:
    from .session import Session

__all__ = ["UserSide"]

log = logging.getLogger(__name__)


class UserSide:
    """The user-side half of bridge.session.Session (a mixin: the state lives in the Session's slots)."""

    __slots__ = ()


    async def _on_user(self: Session, event: Event) -> None:
        match event:  # the cases are tried in order: the most frequent events first
            case Message():
                await self._user_message(event)
            case Posted() | Edit() | Retract() | Reaction():
                await rich.from_user(self, event)
            case Start():
                await self._start(event)
            case Report(reason=reason):
                await self._report(reason)
            case Disconnected():
                if self.chat is None:
                    await self.notice("You're not in a chat. Start one first.")
                else:
                    await self._end_chat(Reason.USER)
            case Typing():
                s = self.settings
                if self._can_write() and self.user_typing.start(time.monotonic(), s.typing_timeout, s.typing_interval):
                    await self._send(Typing())
            case StoppedTyping():
                if self.user_typing.stop():
                    await self._send(StoppedTyping())
            case Undelivered(text=text):
                await self._tell_not_delivered(text)
            case _:
                log.debug("session %s: ignoring user %s", self.room, type(event).__name__)

    def _can_write(self: Session) -> bool:
        return self.state is State.CHATTING and not self.spy and self.chat is not None

    async def _start(self: Session, start: Start) -> None:
        problem = check_start(start, self.settings)
        if problem:
            await self.notice(problem)
            return
        # Banned or starting too often: told plainly; a chat in progress goes on.
        shared = start.pairing is not None and start.pairing != start.user  # one key, several people
        user = start.user or str(self.room)  # one copy: the completed Start below keeps it too
        try:
            refusal = await self.host.moderator.start_refusal(user, server=start.server, shared=shared)
        except StoreUnavailable:  # bans cannot be checked now: no chat starts, and the user is told why
            await self.notice(STORE_DOWN)
            return
        if refusal:
            await self.notice(refusal)
            return
        if self.chat is not None:  # while chatting or searching, start means "next"
            await self._end_chat(Reason.USER)
        name = start.backend or self.host.backend_for(self.room.platform)
        backend = self.host.backends.get(name)
        if backend is None:
            await self.notice(f"There is no stranger service named “{cut(name, 64)}”.")
            return
        if self.host.closing:
            await self.notice("The bridge is shutting down; no new chats can start.")
            return
        if start.accept and not backend.honours_accept:
            await self.notice("This server only allows strangers from some places, and this stranger service "
                              "cannot guarantee where its strangers come from. No chat was started.")
            return
        start = complete_start(start, name, self.room, user)
        try:
            chat = await backend.connect(start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("session %s: backend %s failed to connect: %s", self.room, name, exc)
            self.host.metrics.inc("errors", kind="backend")
            await self.deliver(Disconnected(reason=Reason.ERROR))
            return
        self._begin(chat, backend, start)
        self.search_deadline = time.monotonic() + self.settings.search_timeout
        await self.host.save(self._record())

    def _begin(self: Session, chat: Chat, backend: Backend, start: Start) -> None:
        self.generation += 1
        self.chat = chat
        self.backend_name = backend.name
        self.start = start
        self.spy = start.mode is Mode.ASK
        self.state = State.SEARCHING
        self.final_sent = False
        self.strangers = ()
        self.search_started = time.monotonic()
        self.stranger_buckets = NOTHING_YET  # type: ignore[assignment]
        self.rich = None  # a new chat: references of the last one are no longer found
        self.pump = asyncio.get_running_loop().create_task(self._pump(chat, self.generation))
        chat.feed(self)

    def resume(self: Session, chat: Chat, record: SessionRecord, backend: Backend) -> None:
        """Take up a chat the backend resumed after a restart. Called by the router before run()."""
        start = start_from_dict(record.start)
        self._begin(chat, backend, start)
        rich.restore(self, record.refs)
        if record.state == State.CHATTING:
            self.state = State.CHATTING
            self.strangers = ("Stranger",)
        else:
            self.search_deadline = time.monotonic() + self.settings.search_timeout

    async def _user_message(self: Session, event: Message) -> None:
        if self.state is State.IDLE:
            await self.notice("You're not chatting with anyone, so your message was not sent. Start a chat first.")
            return
        if self.state is State.SEARCHING:
            await self.notice("Still looking for a stranger: your message was not sent.")
            return
        if self.spy:
            await self.notice("You're the spy: you can watch, but the strangers cannot see your messages.")
            return
        text = clean(event.text).strip()
        if not text and event.image is None:
            return
        limit = self.host.max_message_length(self.backend_name)
        if len(text) > limit:
            await self.notice(f"Your message is too long ({len(text)} characters; the limit is {limit}). It was not sent.")
            return
        if not self.user_bucket.allow():
            self.user_throttled, fresh = burst(self.user_throttled, self.settings.user_burst / self.settings.user_rate)
            if fresh:
                await self.notice("You're sending messages too fast: some were not sent.")
            return
        moderator = self.host.moderator
        wait = moderator.first_message_wait(self.connected_at)
        if wait > 0:
            await self.notice(wait_notice(wait))
            return
        relayed = moderator.relayed(self.room, text)  # None: not relayed, and from_user says why
        if relayed is None:
            await self._refused(moderator.from_user(self.room, text))
            return
        text = relayed
        self.user_typing.message()  # a message implies the user stopped typing (no stop is sent)
        out = rich.outgoing_text(self, event, text) if event.image is None else await rich.outgoing(self, event, text)
        if out is not None and await self._send(out):
            self.host.metrics.add(RELAYED_TO_STRANGER)
        rich.changed(self)

    async def _send(self: Session, event: Event) -> bool:
        chat = self.chat
        if chat is None:
            return False
        try:
            await chat.send(event)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("session %s: sending to the backend failed: %s", self.room, exc)
            self.host.metrics.inc("errors", kind="backend")
            await self._end_chat(Reason.ERROR)
            return False

    async def _refused(self: Session, decision: Decision) -> None:
        """A message the policy does not relay: tell the room, and end the chat if the rule says so."""
        if decision.notice:
            await self.notice(decision.notice)
        if decision.end and self.chat is not None:
            await self._end_chat(Reason.POLICY)

    async def _report(self: Session, reason: str | None) -> None:
        chat = self.chat or self.host.recent.take(self.room)  # "report" is often pressed just after the end
        if chat is None:
            await self.notice("There is no stranger to report.")
            return
        reported = chat.stranger_key()
        try:
            await chat.send(Report(reason))
        except Exception as exc:  # the report is recorded locally anyway; the chat still ends
            log.info("session %s: backend took no report: %s", self.room, exc)
        self.host.metrics.inc("reports")
        reporter = (self.start.user if self.start else None) or str(self.room)
        try:
            await self.host.moderator.report(reporter, reported, reason or "")
        except Exception:  # noqa: BLE001 - a store failure must not keep the chat from ending
            log.exception("session %s: the report could not be recorded", self.room)
        blocks = chat.enforces_blocks
        apart = chat.apart_days() if blocks else None
        if self.chat is not None:
            await self._end_chat(Reason.REPORT if blocks else Reason.REPORT_RECORDED, apart)
            self.host.recent.take(self.room)  # reported already: nothing left to report later
        else:
            ended = Disconnected("the last stranger", Reason.REPORT if blocks else Reason.REPORT_RECORDED,
                                 apart_days=apart)
            await self.notice(reason_text(ended))
