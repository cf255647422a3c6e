"""Messages the bot cannot decrypt: the key request, a bounded wait, one notice, and relaying a late decryption."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from nio import AsyncClient, MegolmEvent
from nio.exceptions import EncryptionError, LocalProtocolError

from bridge.dedupe import SeenIds

from .rooms import RoomState, SessionRoom

__all__ = ["KEEP_FOR", "KEEP_MAX", "Pending", "Undecryptable", "told_text"]

log = logging.getLogger(__name__)

KEEP_FOR = 3600.0  # seconds a message of a live chat may still be decrypted (and relayed) after the notice
KEEP_MAX = 1000  # undecrypted messages remembered at most (the oldest are forgotten first)

Relay = Callable[[str, dict[str, Any]], Awaitable[None]]


class NoticeHost(Protocol):
    async def notice(self, rid: str, thread: str | None, text: str) -> None: ...


@dataclasses.dataclass(slots=True)
class Pending:
    """One message not decrypted yet, in the session room it was written in."""

    rid: str
    sid: str
    root: str | None
    event: MegolmEvent | None  # None: malformed, no key can ever decrypt it
    live: bool  # a chat was going on there when it arrived
    since: float
    told: bool = False
    ended: bool = False  # the chat it belongs to ended before it was decrypted


def told_text(count: int, live: bool) -> str:
    """The notice for messages that could not be decrypted within the wait."""
    if live:
        if count == 1:
            return "A message could not be decrypted and was not sent to the stranger."
        return f"{count} messages could not be decrypted and were not sent to the stranger."
    if count == 1:
        return "A message could not be decrypted, so the bridge could not read it."
    return f"{count} messages could not be decrypted, so the bridge could not read them."


LATE_RELAYED = "The message that could not be decrypted earlier has now been decrypted and sent to the stranger."
LATE_ENDED = "A message that could not be decrypted during the chat was decrypted after the chat ended; it was not sent."


class Undecryptable:
    """Undecrypted timeline events: keys are requested at once, the room is told after `wait` seconds.

    After every sync batch (new room keys arrive as to-device events) each one is tried again; one
    decrypted in time is relayed as if it had just arrived, one decrypted after the notice is relayed
    too (and the room told) while its chat goes on, and is dropped with a notice once the chat ended.
    """

    def __init__(self, host: NoticeHost, rooms: RoomState, relay: Relay, *, wait: float, thread_mode: bool) -> None:
        self.host = host
        self.rooms = rooms
        self.relay = relay
        self.wait = wait
        self.thread_mode = thread_mode
        self.pending: dict[str, Pending] = {}  # event id -> message, oldest first
        self.notified = 0  # notices sent (for tests and status)
        # Outside a live chat (room talk in thread mode, an idle room) a room is told at most once an
        # hour: a member whose client does not encrypt for the bot would otherwise get one per message.
        self.idle_told: SeenIds[str, float] = SeenIds(KEEP_MAX)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()

    async def add(self, client: AsyncClient, rid: str, source: dict[str, Any]) -> None:
        """An event nio could not decrypt: request its key, and tell the room if it stays undecrypted."""
        event_id = source.get("event_id")
        if not isinstance(event_id, str) or event_id in self.pending:
            return
        content = source.get("content") if isinstance(source.get("content"), dict) else {}
        relates = content.get("m.relates_to") if isinstance(content.get("m.relates_to"), dict) else {}
        root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        root = root if isinstance(root, str) else None
        sid = SessionRoom(rid, root).format() if (self.thread_mode and root) else rid
        parsed = MegolmEvent.from_dict(source)
        event = parsed if isinstance(parsed, MegolmEvent) else None
        log.info("matrix: a message could not be decrypted (%s); requesting its key", "malformed" if event is None else "no key")
        if event is not None:
            event.room_id = rid
            try:
                await client.request_room_key(event)
            except LocalProtocolError:
                pass  # this session's key was already requested
            except Exception as exc:  # noqa: BLE001 - the wait and the notice go on regardless
                log.warning("matrix: requesting a room key failed (%s)", type(exc).__name__)
        while len(self.pending) >= KEEP_MAX:
            self._forget(next(iter(self.pending)))
        self.pending[event_id] = Pending(rid, sid, root, event, sid in self.rooms.active, time.monotonic())
        self._timers[event_id] = asyncio.get_running_loop().call_later(self.wait, self._expired, event_id)

    def chat_ended(self, sid: str) -> None:
        """The chat of a session room ended: its late decryptions are not relayed any more."""
        for entry in self.pending.values():
            if entry.sid == sid and entry.live:
                entry.ended = True

    async def retry(self, client: AsyncClient) -> None:
        """Try the waiting messages again (after a batch that may have brought their keys)."""
        now = time.monotonic()
        for event_id, entry in list(self.pending.items()):
            if entry.told and (not entry.live or now - entry.since > KEEP_FOR):
                self._forget(event_id)
                continue
            if entry.event is None:
                continue
            try:
                decrypted = client.decrypt_event(entry.event)
            except (EncryptionError, LocalProtocolError):
                continue
            source = getattr(decrypted, "source", None)
            if not isinstance(source, dict):
                continue
            self._forget(event_id)
            if entry.ended:  # never relayed into a later chat (or to nobody): the room is told instead
                await self.host.notice(entry.rid, entry.root, LATE_ENDED)
                self.notified += 1
                continue
            log.info("matrix: a message was decrypted after %.1f s", now - entry.since)
            await self.relay(entry.rid, source)
            if entry.told:
                await self.host.notice(entry.rid, entry.root, LATE_RELAYED)
                self.notified += 1

    def close(self) -> None:
        """Cancel the timers (the platform stops)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def _expired(self, event_id: str) -> None:
        self._timers.pop(event_id, None)
        entry = self.pending.get(event_id)
        if entry is None or entry.told:
            return
        now = time.monotonic()
        # One notice for every message of that session room whose wait is over.
        group = [e for e in self.pending.values() if e.sid == entry.sid and not e.told and now - e.since >= self.wait - 0.01]
        for e in group:
            e.told = True
        live = any(e.live for e in group)
        if not live:
            last = self.idle_told.get(entry.rid)
            if last is not None and now - last < KEEP_FOR:
                return
            self.idle_told.remember(entry.rid, now)
        task = asyncio.get_running_loop().create_task(self._tell(entry.rid, entry.root, told_text(len(group), live)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell(self, rid: str, root: str | None, text: str) -> None:
        await self.host.notice(rid, root, text)
        self.notified += 1

    def _forget(self, event_id: str) -> None:
        self.pending.pop(event_id, None)
        handle = self._timers.pop(event_id, None)
        if handle is not None:
            handle.cancel()
