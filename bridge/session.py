"""One room's session: IDLE → SEARCHING → CHATTING → IDLE, driven by one task reading one inbox."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .abc import Backend, Chat
from . import rich
from .events import (
    Connected,
    Disconnected,
    Edit,
    Event,
    Message,
    Mode,
    Posted,
    Question,
    Reaction,
    Reason,
    Report,
    Retract,
    Room,
    ServerNotice,
    Start,
    StoppedTyping,
    Typing,
    Undelivered,
    Waiting,
)
from .bucket import TokenBucket
from .hygiene import clean, cut
from .inbox import Inbox
from .indicator import Indicator
from .metrics import counter_key
from .policy.moderator import Decision, wait_notice
from .starts import check_start, complete_start, start_from_dict, start_to_dict
from .store import SessionRecord, StoreUnavailable
from .wording import NOT_ALL_DELIVERED, ROOM_NOT_SHOWN, ROOM_NOT_SHOWN_UNTOLD, not_delivered, reason_text

if TYPE_CHECKING:
    from .host import Host

__all__ = ["Session", "State"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds a backend may take to leave a chat
STORE_DOWN = "The bridge cannot reach its database right now, so no chat was started. Please try again in a minute."


class State(str, enum.Enum):
    IDLE = "idle"
    SEARCHING = "searching"
    CHATTING = "chatting"


class _Ended:
    """Inbox marker: a chat's event stream finished (error: what it raised)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Shutdown:
    """Inbox marker: the daemon is stopping (`keep`: the room outlives it, so a chat that can may wait for the next run)."""

    __slots__ = ("keep",)

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep


_SHUTDOWN = _Shutdown()
_SHUTDOWN_KEEP = _Shutdown(keep=True)
_USER = -1  # generation tag of user-side inbox items
_FAILURES = (Reason.ERROR, Reason.REFUSED)  # ends that a backend explains in its own notice
_TYPING = (Typing, StoppedTyping)
# Counted on every message: the counter keys are made once.
_RELAYED_TO_STRANGER = counter_key("messages_relayed", direction="to_stranger")
_RELAYED_TO_USER = counter_key("messages_relayed", direction="to_user")


class Session:
    """The core's state for one room. Only its own task touches it, so no locks are needed."""

    # Tens of thousands live at once: slots keep each one small.
    __slots__ = (
        "room", "host", "settings", "state", "inbox", "chat",
        "backend_name", "start", "generation", "pump", "task", "spy", "strangers", "final_sent",
        "search_started", "search_deadline", "user_typing", "stranger_typing", "user_bucket",
        "stranger_buckets", "user_throttled", "stranger_throttled", "overflowed", "dropped", "explained",
        "undeliverable", "connected_at", "rich",
    )  # fmt: skip

    def __init__(self, room: Room, host: Host) -> None:
        self.room = room
        self.host = host  # the router, seen through the few members a session needs
        self.settings = host.settings
        self.state = State.IDLE
        self.inbox: Inbox[tuple[int, object]] = Inbox(self.settings.inbox_size)
        self.chat: Chat | None = None
        self.backend_name: str | None = None
        self.start: Start | None = None
        self.generation = 0
        self.pump: asyncio.Task | None = None
        self.task: asyncio.Task | None = None
        self.spy = False  # the user asked the question: watch only
        self.strangers: tuple[str, ...] = ()
        self.final_sent = False
        self.search_started = 0.0
        self.search_deadline: float | None = None
        self.user_typing = Indicator()  # what the stranger was told of the user's typing
        self.stranger_typing: dict[str | None, Indicator] = {}  # per stranger label
        self.user_bucket = TokenBucket(self.settings.user_rate, self.settings.user_burst)
        self.stranger_buckets: dict[str | None, TokenBucket] = {}
        self.user_throttled: float | None = None  # end of the user's throttled burst (monotonic)
        self.stranger_throttled: float | None = None  # likewise for the stranger side
        self.overflowed = False  # the user was told that some events did not fit in the inbox
        self.dropped = False  # ... and some of them were messages: the stranger is still to be told
        self.explained = False  # the backend's notice just shown says why the chat is failing
        self.undeliverable = False  # the room failed to show a message and was told (re-armed by a success)
        self.connected_at = 0.0  # when the current chat began (monotonic), for the first-message cooldown
        self.rich: rich.ChatRich | None = None  # the current chat's message references (bridge.rich)

    # ---- feeding the inbox -------------------------------------------------------------------

    def put_user(self, event: Event) -> bool:
        """Queue a user-side event without blocking; False (and one notice) on overflow.

        Typing indicators are state, not items: the newest wins and never takes a message's place.
        """
        if type(event) in _TYPING:
            self.inbox.put_state((_USER, event), _same_typing(_USER, event))
            return True
        try:
            self.inbox.put_nowait((_USER, event))
        except asyncio.QueueFull:
            if type(event) is Message:  # the stranger is told too, once the queued ones are sent
                self.host.metrics.inc("messages_dropped", side="user", reason="inbox_full")
                self.dropped = True
            if not self.overflowed:  # one notice per overflow
                self.overflowed = True
                self.host.spawn_notice(self.room, "Too much at once: some of your messages were not sent.")
            return False
        return True

    def put_shutdown(self, keep: bool = False) -> None:
        """Queue the shutdown marker; it is the last item the task handles.

        `keep`: the room outlives the process, so a chat the backend can resume (survives_restart)
        is left for the next run instead of ended.
        """
        try:
            self.inbox.put_nowait((_USER, _SHUTDOWN_KEEP if keep else _SHUTDOWN))
        except asyncio.QueueFull:
            if self.task:
                self.task.cancel()

    async def _pump(self, chat: Chat, generation: int) -> None:
        # Stranger events wait for room in the inbox: back-pressure on the backend, never loss.
        error: BaseException | None = None
        try:
            async for event in chat.events():
                if type(event) in _TYPING:
                    self.inbox.put_state((generation, event), _same_typing(generation, event))
                else:
                    await self.inbox.put((generation, event))
                del event  # an idle session holds no event it has passed on
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a backend failure ends the chat with one notice
            error = exc
        await self.inbox.put((generation, _Ended(error)))

    # ---- the task ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Handle inbox items in order until shutdown, or until idle with nothing queued."""
        try:
            while True:
                delay = self._next_deadline()
                try:
                    if delay is None:
                        generation, item = await self.inbox.get()
                    else:
                        async with asyncio.timeout(delay):
                            generation, item = await self.inbox.get()
                except TimeoutError:
                    await self._on_deadlines()
                    if self._retire():
                        return
                    continue
                if type(item) is _Shutdown:
                    await self._shutdown(item.keep)
                    return
                try:
                    if generation == _USER:
                        await self._on_user(item)  # type: ignore[arg-type]
                    elif generation == self.generation:
                        await self._on_stranger(item)
                    # else: a stale event from a chat already left; dropped on purpose
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("session %s: failed to handle %s", self.room, type(item).__name__)
                    self.host.metrics.inc("errors", kind="session")
                del item  # an idle session holds no event it has handled
                if self.inbox.empty():
                    self.overflowed = False
                    if self.dropped:  # what did fit is sent: now tell the stranger some did not
                        self.dropped = False
                        if self._can_write():
                            await self._send(Message(NOT_ALL_DELIVERED))
                    if self._retire():
                        return
        finally:
            if self.pump:
                self.pump.cancel()

    def _retire(self) -> bool:
        # Idle rooms hold no task; the next event creates a fresh one.
        if self.state is State.IDLE and self.chat is None and self.inbox.empty():
            return self.host.retire(self)
        return False

    def _next_deadline(self) -> float | None:
        # Called before every inbox item: no list, and no clock read when nothing is due.
        soonest = self.search_deadline
        due = self.user_typing.deadline()
        if due is not None and (soonest is None or due < soonest):
            soonest = due
        for ind in self.stranger_typing.values():
            due = ind.deadline()
            if due is not None and (soonest is None or due < soonest):
                soonest = due
        if soonest is None:
            return None
        return max(0.0, soonest - time.monotonic())

    async def _on_deadlines(self) -> None:
        now = time.monotonic()
        if self.search_deadline is not None and now >= self.search_deadline and self.state is State.SEARCHING:
            await self._end_chat(Reason.TIMEOUT)
        s = self.settings
        relay = self.user_typing.due(now, s.typing_timeout, s.typing_interval)
        if relay is not None:
            await self._send(Typing() if relay else StoppedTyping())
        for label, ind in list(self.stranger_typing.items()):
            relay = ind.due(now, s.stranger_typing_timeout, s.typing_interval)
            if relay is not None:
                await self.deliver(Typing(label) if relay else StoppedTyping(label))

    # ---- user side ---------------------------------------------------------------------------

    async def _on_user(self, event: Event) -> None:
        match event:
            case Start():
                await self._start(event)
            case Report(reason=reason):
                await self._report(reason)
            case Disconnected():
                if self.chat is None:
                    await self.notice("You're not in a chat. Start one first.")
                else:
                    await self._end_chat(Reason.USER)
            case Message():
                await self._user_message(event)
            case Edit() | Retract() | Reaction() | Posted():
                await rich.from_user(self, event)
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

    def _can_write(self) -> bool:
        return self.state is State.CHATTING and not self.spy and self.chat is not None

    async def _start(self, start: Start) -> None:
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

    def _begin(self, chat: Chat, backend: Backend, start: Start) -> None:
        self.generation += 1
        self.chat = chat
        self.backend_name = backend.name
        self.start = start
        self.spy = start.mode is Mode.ASK
        self.state = State.SEARCHING
        self.final_sent = False
        self.strangers = ()
        self.search_started = time.monotonic()
        self.stranger_buckets.clear()
        self.rich = None  # a new chat: references of the last one are no longer found
        self.pump = asyncio.get_running_loop().create_task(self._pump(chat, self.generation))

    def resume(self, chat: Chat, record: SessionRecord, backend: Backend) -> None:
        """Take up a chat the backend resumed after a restart. Called by the router before run()."""
        start = start_from_dict(record.start)
        self._begin(chat, backend, start)
        rich.restore(self, record.refs)
        if record.state == State.CHATTING:
            self.state = State.CHATTING
            self.strangers = ("Stranger",)
        else:
            self.search_deadline = time.monotonic() + self.settings.search_timeout

    async def _user_message(self, event: Message) -> None:
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
            self.user_throttled, fresh = _burst(self.user_throttled, self.settings.user_burst / self.settings.user_rate)
            if fresh:
                await self.notice("You're sending messages too fast: some were not sent.")
            return
        moderator = self.host.moderator
        wait = moderator.first_message_wait(self.connected_at)
        if wait > 0:
            await self.notice(wait_notice(wait))
            return
        if not moderator.clearly_allowed(self.room, text):
            decision = moderator.from_user(self.room, text)
            if not decision.relay:
                await self._refused(decision)
                return
            text = decision.text
        self.user_typing.message()  # a message implies the user stopped typing (no stop is sent)
        out = rich.outgoing_text(self, event, text) if event.image is None else await rich.outgoing(self, event, text)
        if out is not None and await self._send(out):
            self.host.metrics.add(_RELAYED_TO_STRANGER)
        if rich.save_due(self):
            await rich.save(self)

    async def _send(self, event: Event) -> bool:
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

    async def _refused(self, decision: Decision) -> None:
        """A message the policy does not relay: tell the room, and end the chat if the rule says so."""
        if decision.notice:
            await self.notice(decision.notice)
        if decision.end and self.chat is not None:
            await self._end_chat(Reason.POLICY)

    async def _report(self, reason: str | None) -> None:
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

    # ---- stranger side -----------------------------------------------------------------------

    async def _on_stranger(self, event: object) -> None:
        match event:
            case _Ended(error=error):
                await self._chat_ended(error)
            case Waiting():
                if self.state is State.SEARCHING:
                    await self.deliver(event)
            case Connected():
                await self._connected(event)
            case Message(text=text, stranger=label, image=image):
                if self.state is State.SEARCHING:  # events may come before "connected"
                    await self._connected(Connected())
                bucket = self.stranger_buckets.get(label)
                if bucket is None:
                    bucket = self.stranger_buckets[label] = TokenBucket(
                        self.settings.stranger_rate, self.settings.stranger_burst
                    )
                if not bucket.allow():
                    refill = self.settings.stranger_burst / self.settings.stranger_rate
                    self.stranger_throttled, fresh = _burst(self.stranger_throttled, refill)
                    if fresh:
                        await self.notice("The stranger is sending messages too fast: some were not shown.")
                    return
                text = clean(text, 65536).strip()
                if not text and image is None:
                    return
                moderator = self.host.moderator
                if not moderator.clearly_allowed(self.room, text):
                    decision = moderator.from_stranger(self.room, text, label)
                    if not decision.relay:
                        await self._refused(decision)
                        return
                    text = decision.text
                ind = self.stranger_typing.get(label)
                if ind is not None and ind.message():
                    await self.deliver(StoppedTyping(label))
                await self.deliver(rich.incoming(self, event, text))
                self.host.metrics.add(_RELAYED_TO_USER)
            case Edit() | Retract() | Reaction():
                await rich.from_stranger(self, event)
            case Typing(stranger=label):
                if self.state is State.SEARCHING:
                    await self._connected(Connected())
                ind = self.stranger_typing.get(label) or self.stranger_typing.setdefault(label, Indicator())
                s = self.settings
                if ind.start(time.monotonic(), s.stranger_typing_timeout, s.typing_interval):
                    await self.deliver(event)
            case StoppedTyping(stranger=label):
                await self._stranger_stopped(label)
            case Question(text=text):
                await self.deliver(Question(clean(text, self.settings.max_question_length)))
            case ServerNotice(text=text):
                self.explained = self._failure_follows()
                await self.deliver(ServerNotice(clean(text, 2000)))
            case Disconnected(stranger=label, final=final):
                remaining = tuple(s for s in self.strangers if s != label)
                if final or label is None or not remaining:
                    await self._finish(dataclasses.replace(event, final=True, reason=event.reason or Reason.STRANGER))
                else:
                    self.strangers = remaining
                    await self._stranger_stopped(label)  # who left is no longer typing
                    self.stranger_typing.pop(label, None)
                    await self.deliver(event)
            case _:
                log.debug("session %s: ignoring stranger %s", self.room, type(event).__name__)

    async def _stranger_stopped(self, label: str | None) -> None:
        ind = self.stranger_typing.get(label)
        if ind is not None and ind.stop():
            await self.deliver(StoppedTyping(label))

    def _failure_follows(self) -> bool:
        # A backend that fails says why in a ServerNotice and ends the chat right after it (in
        # the same batch, so both are queued): that notice is then the one failure notice.
        queued = self.inbox.peek()
        if queued is None or queued[0] != self.generation:
            return False
        item = queued[1]
        return type(item) is _Ended or (type(item) is Disconnected and item.reason in _FAILURES)

    async def _connected(self, event: Connected) -> None:
        if self.state is not State.SEARCHING:
            return
        self.state = State.CHATTING
        self.search_deadline = None
        self.connected_at = time.monotonic()
        self.strangers = event.strangers
        self.host.metrics.observe_wait(time.monotonic() - self.search_started)
        interests = tuple(clean(i, 64) for i in event.common_interests[:20])
        question = clean(event.question, self.settings.max_question_length) if event.question else None
        await self.deliver(dataclasses.replace(event, common_interests=interests, question=question))
        await self.host.save(self._record())

    async def _chat_ended(self, error: BaseException | None) -> None:
        if error is not None:
            log.warning("session %s: backend %s failed: %r", self.room, self.backend_name, error)
            self.host.metrics.inc("errors", kind="backend")
            await self._finish(Disconnected(reason=Reason.ERROR))
        elif self.chat is not None:
            # The stream ended without a final Disconnected: the connection died.
            await self._finish(Disconnected(reason=Reason.ERROR))

    async def _finish(self, final: Disconnected) -> None:
        """The stranger side ended the chat: leave it and tell the room once."""
        if self.host.closing and final.reason == Reason.STRANGER:
            final = dataclasses.replace(final, reason=Reason.SHUTDOWN)  # the partner left because we stop
        if self.explained and final.reason in _FAILURES:
            final = dataclasses.replace(final, explained=True)  # its notice said why: say it once
        await self._leave_chat()
        await self.deliver(final)

    async def _end_chat(self, reason: Reason, apart_days: float | None = None) -> None:
        """The user side (or the core) ends the chat: leave it and tell the room once."""
        await self._leave_chat()
        await self.deliver(Disconnected(reason=reason, apart_days=apart_days))

    async def _leave_chat(self) -> None:
        chat, pump = self.chat, self.pump
        self.generation += 1  # whatever the old chat still says is now stale
        self.chat, self.pump = None, None
        if chat is not None and self.state is State.CHATTING:  # a search left has nobody to report
            self.host.recent.keep(self.room, chat)
        self.state = State.IDLE
        self.search_deadline = None
        self.user_typing.stop()
        self.stranger_typing.clear()
        self.strangers = ()
        self.explained = False
        self.rich = None  # edits and replies to this chat's messages are ignored from now on
        if pump is not None:
            pump.cancel()
        if chat is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await chat.aclose()
            except Exception as exc:  # noqa: BLE001 - leaving must never fail the session
                log.info("session %s: closing the chat failed: %r", self.room, exc)
        await self.host.forget(self.room)

    async def _shutdown(self, keep: bool) -> None:
        if keep and self.chat is not None and self.state is State.CHATTING and self.chat.survives_restart:
            await self.host.save(self._record())  # the next run resumes it; nobody is told anything
            if self.pump is not None:
                self.pump.cancel()
            self.chat, self.pump = None, None
            return
        if self.chat is not None:
            await self._end_chat(Reason.SHUTDOWN)

    # ---- output ------------------------------------------------------------------------------

    async def deliver(self, event: Event) -> None:
        """Show `event` in the room (bounded retries inside the router).

        A stranger's message that cannot be shown is not lost silently: the stranger is told
        about that very message, and the room once per run of failures (if it can be reached).
        """
        if await self.host.deliver(self.room, event):
            self.undeliverable = False
            return
        if type(event) is not Message:
            return
        told = await self._tell_not_delivered(event.text)
        if not self.undeliverable:
            self.undeliverable = True
            await self.host.deliver(self.room, ServerNotice(ROOM_NOT_SHOWN if told else ROOM_NOT_SHOWN_UNTOLD))

    async def _tell_not_delivered(self, text: str) -> bool:
        """Tell the stranger that their message `text` never reached this room; True if told."""
        self.host.metrics.inc("messages_dropped", side="stranger", reason="not_delivered")
        # (A spy's strangers do not know the spy: there is nobody to tell.)
        return self._can_write() and await self._send(Message(not_delivered(text)))

    async def notice(self, text: str) -> None:
        """Tell the room something no person typed."""
        await self.deliver(ServerNotice(text))

    def _record(self) -> SessionRecord:
        start = self.start or Start()
        return SessionRecord(
            room=self.room,
            state=self.state.value,
            backend=self.backend_name or "",
            handle=self.chat.handle if self.chat else None,
            start=start_to_dict(start),
            refs=rich.encoded(self),
        )


def _same_typing(generation: int, event: Typing | StoppedTyping) -> Callable[[tuple[int, object]], bool]:
    """Whether a queued state item is a typing state of the same chat and speaker (so it is replaced)."""
    label = event.stranger

    def same(item: tuple[int, object]) -> bool:
        return item[0] == generation and type(item[1]) in _TYPING and item[1].stranger == label  # type: ignore[union-attr]

    return same


def _burst(until: float | None, refill: float) -> tuple[float, bool]:
    """One message was dropped: the new end of its throttled burst, and whether a burst starts.

    A burst ends only when nothing was dropped for as long as the bucket takes to refill
    (burst / rate): a flood that lets a message through now and then is still one burst,
    so it gets one notice.
    """
    now = time.monotonic()
    return now + refill, until is None or now >= until

