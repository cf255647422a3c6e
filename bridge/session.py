"""One room's session: IDLE → SEARCHING → CHATTING → IDLE, driven by one task reading one inbox."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from typing import TYPE_CHECKING

from .abc import Backend, Chat
from .events import (
    Connected,
    Disconnected,
    Event,
    Message,
    Mode,
    Question,
    Reason,
    Report,
    Room,
    ServerNotice,
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)
from .inbox import Inbox
from .bucket import TokenBucket
from .store import SessionRecord
from .hygiene import clean, cut

if TYPE_CHECKING:
    from .router import Router

__all__ = ["Session", "State"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds a backend may take to leave a chat
REPORT_WINDOW = 300.0  # seconds after a chat ends during which "report" still reaches it


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
    """Inbox marker: the daemon is stopping."""


_SHUTDOWN = _Shutdown()
_USER = -1  # generation tag of user-side inbox items


class Session:
    """The core's state for one room. Only its own task touches it, so no locks are needed."""

    # Tens of thousands live at once: slots keep each one small.
    __slots__ = (
        "room", "router", "settings", "state", "inbox", "chat", "last_chat", "last_chat_until",
        "backend_name", "start", "generation", "pump", "task", "spy", "strangers", "final_sent",
        "search_started", "search_deadline", "user_typing_until", "stranger_typing", "user_bucket",
        "stranger_buckets", "user_throttled", "stranger_throttled", "overflowed",
    )  # fmt: skip

    def __init__(self, room: Room, router: Router) -> None:
        self.room = room
        self.router = router
        self.settings = router.settings
        self.state = State.IDLE
        self.inbox: Inbox[tuple[int, object]] = Inbox(self.settings.inbox_size)
        self.chat: Chat | None = None
        self.last_chat: Chat | None = None  # a chat that just ended, so "report" still works
        self.last_chat_until: float | None = None
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
        self.user_typing_until: float | None = None
        self.stranger_typing: dict[str | None, float] = {}
        self.user_bucket = TokenBucket(self.settings.user_rate, self.settings.user_burst)
        self.stranger_buckets: dict[str | None, TokenBucket] = {}
        self.user_throttled = False
        self.stranger_throttled = False
        self.overflowed = False

    # ---- feeding the inbox -------------------------------------------------------------------

    def put_user(self, event: Event) -> bool:
        """Queue a user-side event without blocking; False (and one notice) on overflow."""
        try:
            self.inbox.put_nowait((_USER, event))
        except asyncio.QueueFull:
            if not self.overflowed:
                self.overflowed = True
                self.router.spawn_notice(self.room, "Too much at once: some of your messages were not sent.")
            return False
        return True

    def put_shutdown(self) -> None:
        """Queue the shutdown marker; it is the last item the task handles."""
        try:
            self.inbox.put_nowait((_USER, _SHUTDOWN))
        except asyncio.QueueFull:
            if self.task:
                self.task.cancel()

    async def _pump(self, chat: Chat, generation: int) -> None:
        # Stranger events wait for room in the inbox: back-pressure on the backend, never loss.
        error: BaseException | None = None
        try:
            async for event in chat.events():
                await self.inbox.put((generation, event))
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
                if item is _SHUTDOWN:
                    await self._shutdown()
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
                    self.router.metrics.inc("errors", kind="session")
                if self.inbox.empty():
                    self.overflowed = False
                    if self._retire():
                        return
        finally:
            if self.pump:
                self.pump.cancel()

    def _retire(self) -> bool:
        # Idle rooms hold no task; the next event creates a fresh one.
        if self.state is State.IDLE and self.chat is None and self.last_chat is None and self.inbox.empty():
            return self.router.retire(self)
        return False

    def _next_deadline(self) -> float | None:
        times = [t for t in (self.search_deadline, self.user_typing_until, self.last_chat_until) if t is not None]
        times.extend(self.stranger_typing.values())
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    async def _on_deadlines(self) -> None:
        now = time.monotonic()
        if self.last_chat_until is not None and now >= self.last_chat_until:
            self.last_chat = self.last_chat_until = None
        if self.search_deadline is not None and now >= self.search_deadline and self.state is State.SEARCHING:
            await self._end_chat(Reason.TIMEOUT)
        if self.user_typing_until is not None and now >= self.user_typing_until:
            self.user_typing_until = None
            await self._send(StoppedTyping())
        for label, until in list(self.stranger_typing.items()):
            if now >= until:
                del self.stranger_typing[label]
                await self.deliver(StoppedTyping(label))

    # ---- user side ---------------------------------------------------------------------------

    async def _on_user(self, event: Event) -> None:
        match event:
            case Start():
                await self._start(event)
            case Report():
                await self._report()
            case Disconnected():
                if self.chat is None:
                    await self.notice("You're not in a chat. Start one first.")
                else:
                    await self._end_chat(Reason.USER)
            case Message(text=text):
                await self._user_message(text)
            case Typing():
                if self._can_write() and self.user_typing_until is None:
                    await self._send(Typing())
                if self._can_write():
                    self.user_typing_until = time.monotonic() + self.settings.typing_timeout
            case StoppedTyping():
                if self.user_typing_until is not None:
                    self.user_typing_until = None
                    await self._send(StoppedTyping())
            case _:
                log.debug("session %s: ignoring user %s", self.room, type(event).__name__)

    def _can_write(self) -> bool:
        return self.state is State.CHATTING and not self.spy and self.chat is not None

    async def _start(self, start: Start) -> None:
        problem = self._check_start(start)
        if problem:
            await self.notice(problem)
            return
        if self.chat is not None:  # while chatting or searching, start means "next"
            await self._end_chat(Reason.USER)
        name = start.backend or self.router.backend_for(self.room.platform)
        backend = self.router.backends.get(name)
        if backend is None:
            await self.notice(f"There is no stranger service named “{cut(name, 64)}”.")
            return
        if self.router.closing:
            await self.notice("The bridge is shutting down; no new chats can start.")
            return
        start = dataclasses.replace(
            start,
            backend=name,
            interests=tuple(dict.fromkeys(i.strip().lower() for i in start.interests if i.strip())),
            user=start.user or str(self.room),
        )
        try:
            chat = await backend.connect(start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("session %s: backend %s failed to connect: %s", self.room, name, exc)
            self.router.metrics.inc("errors", kind="backend")
            await self.deliver(Disconnected(reason=Reason.ERROR))
            return
        self._begin(chat, backend, start)
        self.search_deadline = time.monotonic() + self.settings.search_timeout
        await self.router.save(self._record())

    def _check_start(self, start: Start) -> str | None:
        s = self.settings
        if len(start.interests) > s.max_interests:
            return f"Too many interests ({len(start.interests)}); at most {s.max_interests}. No chat was started."
        for interest in start.interests:
            if len(interest) > s.max_interest_length:
                return f"An interest is too long; at most {s.max_interest_length} characters. No chat was started."
        if start.mode is Mode.ASK and not (start.question and start.question.strip()):
            return "Ask mode needs a question. No chat was started."
        if start.question is not None and len(start.question) > s.max_question_length:
            return f"The question is too long; at most {s.max_question_length} characters. No chat was started."
        if not (2 <= len(start.language) <= 3 and start.language.isalpha()):
            return "The language must be a two- or three-letter code such as “en”. No chat was started."
        return None

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
        self.pump = asyncio.get_running_loop().create_task(self._pump(chat, self.generation))

    def resume(self, chat: Chat, record: SessionRecord, backend: Backend) -> None:
        """Take up a chat the backend resumed after a restart. Called by the router before run()."""
        start = _start_from_dict(record.start)
        self._begin(chat, backend, start)
        if record.state == State.CHATTING:
            self.state = State.CHATTING
            self.strangers = ("Stranger",)
        else:
            self.search_deadline = time.monotonic() + self.settings.search_timeout

    async def _user_message(self, text: str) -> None:
        if self.state is State.IDLE:
            await self.notice("You're not chatting with anyone, so your message was not sent. Start a chat first.")
            return
        if self.state is State.SEARCHING:
            await self.notice("Still looking for a stranger: your message was not sent.")
            return
        if self.spy:
            await self.notice("You're the spy: you can watch, but the strangers cannot see your messages.")
            return
        text = clean(text).strip()
        if not text:
            return
        limit = self.router.max_message_length(self.backend_name)
        if len(text) > limit:
            await self.notice(f"Your message is too long ({len(text)} characters; the limit is {limit}). It was not sent.")
            return
        if not self.user_bucket.allow():
            if not self.user_throttled:
                self.user_throttled = True
                await self.notice("You're sending messages too fast: some were not sent.")
            return
        self.user_throttled = False
        self.user_typing_until = None  # a message implies the user stopped typing
        if await self._send(Message(text)):
            self.router.metrics.inc("messages_relayed", direction="to_stranger")

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
            self.router.metrics.inc("errors", kind="backend")
            await self._end_chat(Reason.ERROR)
            return False

    async def _report(self) -> None:
        chat = self.chat or self.last_chat
        if chat is None:
            await self.notice("There is no stranger to report.")
            return
        try:
            await chat.send(Report())
        except Exception as exc:  # the report is recorded locally anyway; the chat still ends
            log.info("session %s: backend took no report: %s", self.room, exc)
        self.router.metrics.inc("reports")
        if self.chat is not None:
            await self._end_chat(Reason.REPORT)
        else:
            self.last_chat = self.last_chat_until = None
            await self.notice("You reported the last stranger. You will not be paired with them again.")

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
            case Message(text=text, stranger=label):
                if self.state is State.SEARCHING:  # events may come before "connected"
                    await self._connected(Connected())
                bucket = self.stranger_buckets.get(label)
                if bucket is None:
                    bucket = self.stranger_buckets[label] = TokenBucket(
                        self.settings.stranger_rate, self.settings.stranger_burst
                    )
                if not bucket.allow():
                    if not self.stranger_throttled:
                        self.stranger_throttled = True
                        await self.notice("The stranger is sending messages too fast: some were not shown.")
                    return
                self.stranger_throttled = False
                text = clean(text, 65536).strip()
                if not text:
                    return
                if self.stranger_typing.pop(label, None) is not None:
                    await self.deliver(StoppedTyping(label))
                await self.deliver(Message(text, label))
                self.router.metrics.inc("messages_relayed", direction="to_user")
            case Typing(stranger=label):
                if self.state is State.SEARCHING:
                    await self._connected(Connected())
                if label not in self.stranger_typing:
                    await self.deliver(event)
                self.stranger_typing[label] = time.monotonic() + self.settings.stranger_typing_timeout
            case StoppedTyping(stranger=label):
                if self.stranger_typing.pop(label, None) is not None:
                    await self.deliver(event)
            case Question(text=text):
                await self.deliver(Question(clean(text, self.settings.max_question_length)))
            case ServerNotice(text=text):
                await self.deliver(ServerNotice(clean(text, 2000)))
            case Disconnected(stranger=label, final=final):
                remaining = tuple(s for s in self.strangers if s != label)
                if final or label is None or not remaining:
                    await self._finish(dataclasses.replace(event, final=True, reason=event.reason or Reason.STRANGER))
                else:
                    self.strangers = remaining
                    if self.stranger_typing.pop(label, None) is not None:
                        await self.deliver(StoppedTyping(label))  # who left is no longer typing
                    await self.deliver(event)
            case _:
                log.debug("session %s: ignoring stranger %s", self.room, type(event).__name__)

    async def _connected(self, event: Connected) -> None:
        if self.state is not State.SEARCHING:
            return
        self.state = State.CHATTING
        self.search_deadline = None
        self.strangers = event.strangers
        self.router.metrics.observe_wait(time.monotonic() - self.search_started)
        interests = tuple(clean(i, 64) for i in event.common_interests[:20])
        question = clean(event.question, self.settings.max_question_length) if event.question else None
        await self.deliver(dataclasses.replace(event, common_interests=interests, question=question))
        await self.router.save(self._record())

    async def _chat_ended(self, error: BaseException | None) -> None:
        if error is not None:
            log.warning("session %s: backend %s failed: %r", self.room, self.backend_name, error)
            self.router.metrics.inc("errors", kind="backend")
            await self._finish(Disconnected(reason=Reason.ERROR))
        elif self.chat is not None:
            # The stream ended without a final Disconnected: the connection died.
            await self._finish(Disconnected(reason=Reason.ERROR))

    async def _finish(self, final: Disconnected) -> None:
        """The stranger side ended the chat: leave it and tell the room once."""
        if self.router.closing and final.reason == Reason.STRANGER:
            final = dataclasses.replace(final, reason=Reason.SHUTDOWN)  # the partner left because we stop
        await self._leave_chat()
        await self.deliver(final)

    async def _end_chat(self, reason: Reason) -> None:
        """The user side (or the core) ends the chat: leave it and tell the room once."""
        await self._leave_chat()
        await self.deliver(Disconnected(reason=reason))

    async def _leave_chat(self) -> None:
        chat, pump = self.chat, self.pump
        self.generation += 1  # whatever the old chat still says is now stale
        self.chat, self.pump = None, None
        if chat is not None:
            self.last_chat, self.last_chat_until = chat, time.monotonic() + REPORT_WINDOW
        self.state = State.IDLE
        self.search_deadline = None
        self.user_typing_until = None
        self.stranger_typing.clear()
        self.strangers = ()
        if pump is not None:
            pump.cancel()
        if chat is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await chat.aclose()
            except Exception as exc:  # noqa: BLE001 - leaving must never fail the session
                log.info("session %s: closing the chat failed: %r", self.room, exc)
        await self.router.forget(self.room)

    async def _shutdown(self) -> None:
        if self.chat is not None:
            await self._end_chat(Reason.SHUTDOWN)

    # ---- output ------------------------------------------------------------------------------

    async def deliver(self, event: Event) -> None:
        """Show `event` in the room (bounded retries inside the router)."""
        await self.router.deliver(self.room, event)

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
            start=_start_to_dict(start),
        )


def _start_to_dict(start: Start) -> dict:
    data = dataclasses.asdict(start)
    data["mode"] = start.mode.value
    data["interests"] = list(start.interests)
    return data


def _start_from_dict(data: dict) -> Start:
    fields = {f.name for f in dataclasses.fields(Start)}
    values = {k: v for k, v in data.items() if k in fields}
    values["interests"] = tuple(values.get("interests", ()))
    values["mode"] = Mode(values.get("mode", "random"))
    return Start(**values)

