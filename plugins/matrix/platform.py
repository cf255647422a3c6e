"""The Matrix platform: wires login, sync, the receiver, room state and the per-room outboxes; delivers events."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from nio import AsyncClient, SyncResponse

from bridge.abc import CredentialsError, Platform
from bridge.events import Connected, Disconnected, Event, Message, Room, StoppedTyping, Typing, Waiting

from . import render
from .appservice import Pushed
from .config import MatrixConfig
from .login import forget_saved_login, login
from .outbox import Entry, Outbox, Sent, TxnIds
from .receive import ENCRYPTED_REASON, Receiver
from .rooms import RoomState, SessionRoom
from .sender import RoomSender
from .sync import Sync, TokenRefused

__all__ = ["MatrixPlatform"]

log = logging.getLogger(__name__)


class MatrixPlatform(Platform):
    """A Matrix bot account: each invited room (or, in thread mode, each thread) is a session room."""

    Config = MatrixConfig

    def __init__(self, *args: Any, sync: Sync | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg: MatrixConfig = self.config
        self.cfg = cfg
        self.client: AsyncClient | None = None
        self.txn = TxnIds(self.state)
        self.outboxes: dict[str, Outbox] = {}
        self.rooms = RoomState(cfg.remember_rooms)
        self.sync = sync or Sync(self.state)
        self.stats: collections.Counter[str] = collections.Counter()  # send results, for tests and status
        self.sender = RoomSender(cfg, self.rooms, self.refuse_encrypted, self.stats)
        self.receiver = Receiver(self, cfg, self.rooms, self.sync)
        self.ghosts: Any = None  # ghost mode (plugins.matrix.ghosts.Ghosts) when `appservice` is set
        self.undelivered: dict[tuple[str, str | None], int] = {}  # (room, thread) -> lost messages not yet told
        self.lost: str | None = None  # the error code once the homeserver refused our token while running
        self._ready = asyncio.Event()
        self._saving: asyncio.Task | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def ready(self) -> None:
        """Ready once logged in and the first sync was handled."""
        await self._ready.wait()

    def rooms_active(self, rooms: list[Room]) -> None:
        """Remember the sessions a previous run left, so their rooms keep relaying."""
        for room in rooms:
            self.rooms.active.add(room.id)
            where = SessionRoom.parse(room.id)
            if where.root:
                self.rooms.add_thread(where.room, where.root)
        if self.ghosts is not None:
            # Ghosts of chats the core no longer has (they ended, or the process died before their
            # leave went out) leave now; chats the core resumes or ends with a notice keep theirs until then.
            for rid, ghost in self.ghosts.orphans({room.id for room in rooms}):
                self._put(rid, Entry(leave=True, sender=ghost))
            self._saving = asyncio.get_running_loop().create_task(self.ghosts.save())

    async def run(self) -> None:
        """Log in, then sync until cancelled; each batch is handed in before its token is saved."""
        await self.txn.load()
        await self.sync.load()
        if self.cfg.appservice is not None:
            from .ghosts import Ghosts  # only ghost mode needs aiohttp's server side

            # Reads and checks the registration: a bad one fails the start loudly.
            self.ghosts = self.sender.ghosts = Ghosts(self.cfg, self.state, self.handle_push)
        try:
            if self.ghosts is not None:
                # The appservice sender cannot /sync: events arrive by push on the listener.
                self.client = self.sender.client = await login(self.cfg, as_token=self.ghosts.reg.as_token)
                await self.ghosts.start()
                self._ready.set()
                await asyncio.Event().wait()
            else:
                await self._sync()
        finally:
            for box in self.outboxes.values():
                box.cancel()
            if self.ghosts is not None:
                await self.ghosts.stop()
            if self.client is not None:
                await self.client.close()

    async def _sync(self) -> None:
        """Sync until cancelled, or until the homeserver refuses the token for good (CredentialsError)."""
        saved_login_tried = False
        while True:
            self.client = self.sender.client = await login(self.cfg)
            try:
                await self.sync.run(self.client, self.cfg.sync_timeout, self.handle_sync, self._ready)
            except TokenRefused as exc:
                if not self._ready.is_set() and not saved_login_tried and forget_saved_login(self.cfg):
                    log.warning("matrix: the saved login was refused (%s); logging in with the password again", exc.code)
                    saved_login_tried = True
                    await self.client.close()
                    continue
                if self._ready.is_set():
                    self._token_lost(exc.code)
                raise CredentialsError(
                    f"the homeserver refused the access token of {self.cfg.user_id} ({exc.code}); "
                    "set a new access_token (or password) and restart"
                ) from None

    def _token_lost(self, code: str) -> None:
        """The token was revoked while running: nothing can be sent any more, so every chat ends now."""
        self.lost = code
        for box in self.outboxes.values():
            box.cancel()
        self.outboxes.clear()
        ended = sorted(self.rooms.active)
        self.rooms.active.clear()
        log.error("matrix: the homeserver refused the access token (%s) while running; ending %d chats", code, len(ended))
        for sid in ended:
            self.submit(Room(self.name, sid), Disconnected())

    async def flush(self) -> None:
        """Wait until every outbox has sent what it holds."""
        for box in list(self.outboxes.values()):
            await box.drain()

    async def handle_sync(self, resp: SyncResponse, history: bool = False) -> None:
        """Hand one sync batch to the core. `history`: the very first sync; old messages are not relayed."""
        await self.receiver.handle_sync(resp, history)

    async def handle_push(self, pushed: Pushed) -> None:
        """Ghost mode: hand one pushed transaction to the core (in order), then persist the seen ids."""
        await self.receiver.handle_push(pushed)

    # ---- room actions ------------------------------------------------------------------------

    def end_all(self, rid: str) -> None:
        """End every chat of the room (and of its threads) on the core's side."""
        for sid in self.rooms.end_all(rid):
            self.submit(Room(self.name, sid), Disconnected())

    def removed(self, rid: str) -> None:
        """We left or were kicked: end the room's chats; nothing is sent there any more."""
        if self.rooms.is_gone(rid):
            return
        self.end_all(rid)
        self.rooms.left(rid)
        self._drop_outbox(rid)

    async def refuse_encrypted(self, rid: str) -> None:
        """A room turned encryption on: end its chats and leave, once."""
        if rid in self.rooms.encrypted:
            return
        log.info("matrix: a room turned on encryption; ending its chats and leaving")
        self.rooms.encrypted.remember(rid)
        self.end_all(rid)
        await self.leave(rid, ENCRYPTED_REASON)

    async def leave(self, rid: str, reason: str) -> None:
        """Leave (or refuse an invite to) a room, with a reason its members can read."""
        self.rooms.left(rid)
        self._drop_outbox(rid)
        await self.sender.leave(rid, reason)

    async def notice(self, rid: str, thread: str | None, text: str) -> None:
        """Queue a bridge notice in a room (or thread) the bot is still in."""
        if self.rooms.closed(rid):
            return
        self._put(rid, Entry(content=render.notice(text), thread=thread, txn=await self.txn.take()))

    # ---- outbound ----------------------------------------------------------------------------

    async def deliver(self, room: Room, event: Event) -> None:
        """Show a stranger-side or core event: queued in the room's outbox, sent in order."""
        where = SessionRoom.parse(room.id)
        rid, thread = where.room, where.root
        match event:
            case Waiting() | Connected():
                self.rooms.active.add(room.id)
            case Disconnected(final=True):
                self.rooms.active.discard(room.id)
        if self.rooms.closed(rid):
            log.info("matrix: %s not shown: the bot is no longer in that room", type(event).__name__)
            if self.ghosts is not None and isinstance(event, Disconnected):
                await self._ghosts_leave(rid, room.id, event)  # ghosts may still be there
            return
        if self.ghosts is not None:
            await self._deliver_ghost(rid, room.id, thread, event)
            return
        match event:
            case Typing():
                self._put(rid, Entry(typing=True, thread=thread))
                return
            case StoppedTyping():
                self._put(rid, Entry(typing=False, thread=thread))
                return
        for content in render.render(event):
            self._put(rid, Entry(content=content, thread=thread, txn=await self.txn.take()))

    async def _deliver_ghost(self, rid: str, sid: str, thread: str | None, event: Event) -> None:
        """Ghost mode: stranger text and typing come from the stranger's ghost; notices from the bot."""
        ghosts = self.ghosts
        match event:
            case Typing(stranger=label):
                self._put(rid, Entry(typing=True, thread=thread, sender=await ghosts.ghost(sid, label)))
                return
            case StoppedTyping(stranger=label):
                self._put(rid, Entry(typing=False, thread=thread, sender=await ghosts.ghost(sid, label)))
                return
            case Message(text=text, stranger=label):
                ghost = await ghosts.ghost(sid, label)
                for content in render.ghost_message(text):
                    self._put(rid, Entry(content=content, thread=thread, txn=await self.txn.take(), sender=ghost))
                return
        for content in render.render(event):
            self._put(rid, Entry(content=content, thread=thread, txn=await self.txn.take()))
        await self._ghosts_leave(rid, sid, event)

    async def _ghosts_leave(self, rid: str, sid: str, event: Event) -> None:
        """The ghosts whose chat (or stranger) `event` ends leave the room, after the notice."""
        leaving: list[str] = []
        match event:
            case Waiting() | Connected():
                leaving = await self.ghosts.end(sid, everyone=True)  # a new chat gets new ghosts
            case Disconnected(final=True):  # also the core's "restart" end of a chat a crash left
                leaving = await self.ghosts.end(sid, everyone=True)
            case Disconnected(stranger=label):
                leaving = await self.ghosts.end(sid, label)
        for ghost in leaving:
            self._put(rid, Entry(leave=True, sender=ghost))

    def _put(self, rid: str, entry: Entry) -> None:
        if self.lost is not None:
            return  # logged once when the token was refused; nothing can be sent
        box = self.outboxes.get(rid)
        if box is None:
            box = self.outboxes[rid] = Outbox(
                rid,
                self.sender.send,
                self.txn,
                self.cfg.merge_budget,
                self._outbox_idle,
                attempts=self.cfg.send_attempts,
                on_sent=self._sent,
                on_given_up=self._given_up,
            )
        if (rid, entry.thread) in self.undelivered and not entry.covers:
            self._tell_undelivered(box, entry.thread)  # before anything newer than the loss
        box.put(entry)

    async def _sent(self, rid: str, entry: Entry) -> None:
        if entry.covers:
            key = (rid, entry.thread)
            left = self.undelivered.get(key, 0) - entry.covers
            if left > 0:
                self.undelivered[key] = left
            else:
                self.undelivered.pop(key, None)

    async def _given_up(self, rid: str, entry: Entry, result: Sent) -> None:
        """An entry the homeserver never took: counted; lost stranger messages are told about in one notice."""
        if entry.covers:
            return  # the count stays in `undelivered`: told before the room's next event
        self.metrics.inc("delivery_failures", platform=self.name, reason=result.kind)
        content = entry.content
        if content is None or content.get("msgtype") != "m.text":
            log.warning("matrix: a bridge event was not delivered (%s: %s)", result.kind, result.error)
            return
        count = content.get("_count", 1)
        log.warning("matrix: %d stranger messages not delivered (%s: %s)", count, result.kind, result.error)
        key = (rid, entry.thread)
        self.undelivered[key] = self.undelivered.get(key, 0) + count
        box = self.outboxes.get(rid)
        if box is not None and not self.rooms.closed(rid):
            self._tell_undelivered(box, entry.thread)

    def _tell_undelivered(self, box: Outbox, thread: str | None) -> None:
        """Queue one notice for the stranger messages of `thread` lost and not yet told (replacing an unsent one)."""
        missing = self.undelivered.get((box.room_id, thread), 0)
        for queued in list(box.items):
            if queued.covers and queued.thread == thread:
                if queued.attempted or box.sending(queued):
                    missing -= queued.covers  # on its way already
                else:
                    box.items.remove(queued)
        if missing > 0:
            box.put_next(Entry(content=render.notice(render.undelivered(missing)), thread=thread, covers=missing))

    def _outbox_idle(self, rid: str) -> None:
        box = self.outboxes.get(rid)
        if box is not None and not box.items:
            del self.outboxes[rid]

    def _drop_outbox(self, rid: str) -> None:
        """Nothing more is written to a room the bot left; its ghosts still leave (they may be there)."""
        for key in [k for k in self.undelivered if k[0] == rid]:
            del self.undelivered[key]
        box = self.outboxes.pop(rid, None)
        if box is None:
            return
        leaves = [e for e in box.items if e.leave]
        box.cancel()
        for entry in leaves:
            self._put(rid, entry)
