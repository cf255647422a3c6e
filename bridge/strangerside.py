"""A session's handling of its stranger's events: connecting, messages, typing, notices, partings."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from . import rich
from .bucket import TokenBucket
from .events import (
    Connected,
    Disconnected,
    Edit,
    Message,
    Question,
    Reaction,
    Reason,
    Retract,
    ServerNotice,
    StoppedTyping,
    Typing,
    Waiting,
)
from .hygiene import clean
from .indicator import Indicator
from .sessionbase import FAILURES, NOTHING_YET, RELAYED_TO_USER, Ended, State, burst

if TYPE_CHECKING:
    from .session import Session

__all__ = ["StrangerSide"]

log = logging.getLogger(__name__)


class StrangerSide:
    """The stranger-side half of bridge.session.Session (a mixin: the state lives in the Session's slots)."""

    __slots__ = ()


    async def _on_stranger(self: Session, event: object) -> None:
        match event:
            case Ended(error=error):
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
                    if self.stranger_buckets is NOTHING_YET:
                        self.stranger_buckets = {}
                    bucket = self.stranger_buckets[label] = TokenBucket(
                        self.settings.stranger_rate, self.settings.stranger_burst
                    )
                if not bucket.allow():
                    refill = self.settings.stranger_burst / self.settings.stranger_rate
                    self.stranger_throttled, fresh = burst(self.stranger_throttled, refill)
                    if fresh:
                        await self.notice("The stranger is sending messages too fast: some were not shown.")
                    return
                text = clean(text, 65536).strip()
                if not text and image is None:
                    return
                moderator = self.host.moderator
                relayed = moderator.relayed(self.room, text)  # None: not relayed, and from_stranger says why
                if relayed is None:
                    await self._refused(moderator.from_stranger(self.room, text, label))
                    return
                text = relayed
                ind = self.stranger_typing.get(label)
                if ind is not None and ind.message():
                    await self.deliver(StoppedTyping(label))
                await self.deliver(rich.incoming(self, event, text))
                self.host.metrics.add(RELAYED_TO_USER)
            case Edit() | Retract() | Reaction():
                await rich.from_stranger(self, event)
            case Typing(stranger=label):
                if self.state is State.SEARCHING:
                    await self._connected(Connected())
                ind = self.stranger_typing.get(label)
                if ind is None:
                    if self.stranger_typing is NOTHING_YET:
                        self.stranger_typing = {}
                    ind = self.stranger_typing[label] = Indicator()
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
                    if label in self.stranger_typing:
                        del self.stranger_typing[label]
                    await self.deliver(event)
            case _:
                log.debug("session %s: ignoring stranger %s", self.room, type(event).__name__)

    async def _stranger_stopped(self: Session, label: str | None) -> None:
        ind = self.stranger_typing.get(label)
        if ind is not None and ind.stop():
            await self.deliver(StoppedTyping(label))

    def _failure_follows(self: Session) -> bool:
        # A backend that fails says why in a ServerNotice and ends the chat right after it (in
        # the same batch, so both are queued): that notice is then the one failure notice.
        queued = self.inbox.peek()
        if queued is None or queued[0] != self.generation:
            return False
        item = queued[1]
        return type(item) is Ended or (type(item) is Disconnected and item.reason in FAILURES)

    async def _connected(self: Session, event: Connected) -> None:
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

    async def _chat_ended(self: Session, error: BaseException | None) -> None:
        if error is not None:
            log.warning("session %s: backend %s failed: %r", self.room, self.backend_name, error)
            self.host.metrics.inc("errors", kind="backend")
            await self._finish(Disconnected(reason=Reason.ERROR))
        elif self.chat is not None:
            # The stream ended without a final Disconnected: the connection died.
            await self._finish(Disconnected(reason=Reason.ERROR))

    async def _finish(self: Session, final: Disconnected) -> None:
        """The stranger side ended the chat: leave it and tell the room once."""
        if self.host.closing and final.reason == Reason.STRANGER:
            final = dataclasses.replace(final, reason=Reason.SHUTDOWN)  # the partner left because we stop
        if self.explained and final.reason in FAILURES:
            final = dataclasses.replace(final, explained=True)  # its notice said why: say it once
        await self._leave_chat()
        await self.deliver(final)
