"""One room's session: IDLE → SEARCHING → CHATTING → IDLE, driven by one task reading one inbox."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import rich
from .abc import Chat
from .bucket import TokenBucket
from .events import Disconnected, Event, Message, Posted, Reason, Room, ServerNotice, Start, StoppedTyping, Typing
from .inbox import Inbox
from .indicator import Indicator
from .sessionbase import NOTHING_YET, Ended, State
from .store import SessionRecord
from .starts import start_to_dict
from .strangerside import StrangerSide
from .userside import UserSide
from .wording import NOT_ALL_DELIVERED, ROOM_NOT_SHOWN, ROOM_NOT_SHOWN_UNTOLD, not_delivered

if TYPE_CHECKING:
    from .host import Host

__all__ = ["Session", "State"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds a backend may take to leave a chat


class _Shutdown:
    """Inbox marker: the daemon is stopping (`keep`: the room outlives it, so a chat that can may wait for the next run)."""

    __slots__ = ("keep",)

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep


_SHUTDOWN = _Shutdown()
_SHUTDOWN_KEEP = _Shutdown(keep=True)
_USER = -1  # generation tag of user-side inbox items
_TYPING = (Typing, StoppedTyping)


class Session(UserSide, StrangerSide):
    """The core's state for one room. Only its own task touches it, so no locks are needed.

    Its user-side handling is in bridge.userside, its stranger-side handling in bridge.strangerside."""

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
        self.stranger_typing: dict[str | None, Indicator] = NOTHING_YET  # type: ignore[assignment]  # per stranger label
        self.user_bucket = TokenBucket(self.settings.user_rate, self.settings.user_burst)
        self.stranger_buckets: dict[str | None, TokenBucket] = NOTHING_YET  # type: ignore[assignment]
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
        if type(event) is Posted and rich.posted_at_once(self, event):
            return True  # one per stranger line shown: recorded now when nothing waits on it
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

    def put_save(self, state: rich.ChatRich) -> None:
        """Queue the save of the chat's reference map `state` (the host calls this at its turn): a
        state item, so it is never refused and never takes a message's place."""
        self.inbox.put_state((_USER, state), _is_save)

    def take(self, event: object) -> bool:
        """`Chat.feed`'s taker: the pump's work for a message or a typing state of the
        current chat, done at once when the inbox has room and the pump holds no earlier event
        (else False: the pump does it). A chat is fed only while it is the current one."""
        kind = type(event)
        if kind is Message:
            return self.inbox.offer((self.generation, event))
        if kind in _TYPING:
            generation = self.generation
            return self.inbox.offer_state((generation, event), _same_typing(generation, event))  # type: ignore[arg-type]
        return False

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
        await self.inbox.put((generation, Ended(error)))

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
                    if type(item) is rich.ChatRich:
                        await rich.save(self, item)
                    elif generation == _USER:
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
            if self.chat is not None:  # nobody reads the inbox now: the chat keeps its events
                self.chat.feed(None)

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
        self.stranger_typing = NOTHING_YET  # type: ignore[assignment]
        self.strangers = ()
        self.explained = False
        self.rich = None  # edits and replies to this chat's messages are ignored from now on (a queued save is skipped)
        if pump is not None:
            pump.cancel()
        if chat is not None:
            chat.feed(None)
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await chat.aclose()
            except Exception as exc:  # noqa: BLE001 - leaving must never fail the session
                log.info("session %s: closing the chat failed: %r", self.room, exc)
        await self.host.forget(self.room)

    async def _shutdown(self, keep: bool) -> None:
        if keep and self.chat is not None and self.state is State.CHATTING and self.chat.survives_restart:
            await self.host.save(self._record())  # the next run resumes it; nobody is told anything
            self.chat.feed(None)
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

    def _record(self, handle: str | None = None) -> SessionRecord:
        """What the store keeps of this session; `handle`: the chat's, when the caller just built it
        (the hub's is JSON made per call), else it is asked here, once."""
        if handle is None and self.chat is not None:
            handle = self.chat.handle
        return SessionRecord(
            room=self.room,
            state=self.state.value,
            backend=self.backend_name or "",
            handle=handle,
            start=start_to_dict(self.start or Start()),
            refs=rich.encoded(self, handle),
        )


def _is_save(item: tuple[int, object]) -> bool:
    return type(item[1]) is rich.ChatRich


def _same_typing(generation: int, event: Typing | StoppedTyping) -> Callable[[tuple[int, object]], bool]:
    """Whether a queued state item is a typing state of the same chat and speaker (so it is replaced)."""
    label = event.stranger

    def same(item: tuple[int, object]) -> bool:
        return item[0] == generation and type(item[1]) in _TYPING and item[1].stranger == label  # type: ignore[union-attr]

    return same
