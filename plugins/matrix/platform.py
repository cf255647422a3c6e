"""The Matrix platform: wires login, sync, the receiver, room state and delivery; runs and ends them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

from nio import AsyncClient, SyncResponse

from bridge.abc import CredentialsError, Platform
from bridge.backoff import Backoff
from bridge.delivery import OutboxPolicy
from bridge.events import Disconnected, Event, Room
from bridge.policy.logfollow import FOLLOW_EVERY

from . import render
from .admin import Admin
from .commands import help_text
from .config import MatrixConfig
from .delivery import Delivery
from .e2ee import ENCRYPTION_NOTE, refusal_reason
from .login import check_token, forget_saved_login, login
from .moderation import MatrixModeration
from .media import Media
from .receive import Receiver
from .relations import Relations
from .relay import Relay
from .rooms import RoomState, SessionRoom
from .sender import GhostLeave, Post, RoomSender
from .sync import Sync, TokenRefused
from .txn import TxnIds

if TYPE_CHECKING:  # only ghost mode receives pushes: its module is loaded with the ghosts
    from .appservice import Pushed

__all__ = ["MatrixPlatform"]

log = logging.getLogger(__name__)

TYPING_EVERY = 5.0  # seconds between typing calls while someone types (each call shows it for typing_timeout)
MERGE_BACKLOG = 5  # stranger messages waiting that are merged even when the room is not slowed
RATE_WAITS = 30  # 429s one event waits out before it is given up


class MatrixPlatform(Platform):
    """A Matrix bot account: each invited room (or, in thread mode, each thread) is a session room."""

    rooms_persist = True  # its rooms outlive the process: a stop may leave their hub chats for the next run

    Config = MatrixConfig
    modlog_every = FOLLOW_EVERY  # seconds between two looks at the core's moderation log

    def __init__(self, *args: Any, sync: Sync | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg: MatrixConfig = self.config
        self.cfg = cfg
        self.client: AsyncClient | None = None
        self.txn = TxnIds(self.state)
        self.rooms = RoomState(cfg.remember_rooms)
        self.sync = sync or Sync(self.state)
        # A notice about lost messages sent: told to the delivery (made below, once the sender exists).
        told = lambda where, covers: self.delivery.told(where, covers)  # noqa: E731
        self.sender = RoomSender(cfg, self.rooms, self.txn, self.refuse_encrypted, told, self._token_refused)
        self.stats = self.sender.stats  # request results by kind, for tests and status
        policy = OutboxPolicy(
            platform=self.name,
            retry=Backoff(base=0.2, factor=2.5, cap=10.0, attempts=cfg.send_attempts),  # timeouts and 5xx
            merge_backlog=MERGE_BACKLOG,
            merge_limit=min(cfg.merge_budget, render.PART_SIZE),  # a merged text is one event
            typing_every=TYPING_EVERY,
            typing_off=True,
            max_rate_waits=RATE_WAITS,
        )
        self.delivery = Delivery(self, policy)  # outbound: session room outboxes, ghosts, lost messages told
        self.outboxes = self.delivery.outboxes
        self.ghost_typing = self.delivery.ghost_typing  # per (room, ghost)
        self.metrics.gauge_source("queue_depth", ("owner", "queue"), self._queue_depth)
        self.moderation = MatrixModeration(self)  # policy lists, session cap, moderation log room
        self.admin = Admin(self)  # !stranger-admin in the management room
        self.relations = Relations()  # the rich relay's bounded maps of event ids, both ways
        self.media = Media(self)  # images: per-room switch, download and re-upload
        self.relay = self.sender.relay = Relay(self.name, self.relations, self.sender, self.submit, self.media.upload)
        self.receiver = Receiver(self, cfg, self.rooms, self.sync)
        # End-to-end encryption (sync mode); a message decrypted late is handled as if it just came.
        late = functools.partial(self.receiver.on_timeline, history=False, decrypted_late=True)
        self.crypto = self.sender.crypto = None
        if cfg.encryption:  # its modules (0.1 MB of heap) are loaded only when encryption is on
            from .crypto import Crypto

            self.crypto = self.sender.crypto = Crypto.for_platform(self, cfg, self.rooms, late)
        self.sync.full_state_first = self.crypto is not None
        self.ghosts: Any = None  # ghost mode (plugins.matrix.ghosts.Ghosts) when `appservice` is set
        self.lost: str | None = None  # the error code once the homeserver refused our token while running
        self._refused: asyncio.Future[str] | None = None  # set with the error code when the token is refused
        self._ready = asyncio.Event()
        self._previous: set[str] | None = None  # sessions a previous run left (rooms_active)
        self._follower: asyncio.Task | None = None  # the core's moderation log, followed into the log room
        self._saving: asyncio.Task | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def ready(self) -> None:
        """Ready once logged in and the first sync was handled."""
        await self._ready.wait()

    def scope_of(self, room: Room) -> str | None:
        """The Matrix room of a session (in thread mode, the room its thread is in)."""
        return SessionRoom.parse(room.id).room

    def rooms_active(self, rooms: list[Room]) -> None:
        """Remember the sessions a previous run left, so their rooms keep relaying."""
        for room in rooms:
            self.rooms.active.add(room.id)
            where = SessionRoom.parse(room.id)
            if where.root:
                self.rooms.add_thread(where.room, where.root)
        self._previous = {room.id for room in rooms}
        if self.ghosts is not None:
            self._leave_orphans(self._previous)

    def _leave_orphans(self, running: set[str]) -> None:
        """Ghosts of chats the core no longer has (they ended, or the process died before their
        leave went out) leave now; chats the core resumes or ends with a notice keep theirs until then."""
        for rid, ghost in self.ghosts.orphans(running):
            self.delivery.box(SessionRoom(rid)).put_call(GhostLeave(self.sender, rid, ghost))
        self._saving = asyncio.get_running_loop().create_task(self.ghosts.save())

    async def run(self) -> None:
        """Log in, then sync until cancelled; each batch is handed in before its token is saved."""
        await self.txn.load()
        await self.sync.load()
        await self.media.load()
        if self.cfg.appservice is not None:
            from .ghosts import Ghosts  # only ghost mode needs aiohttp's server side

            # Reads and checks the registration: a bad one fails the start loudly.
            self.ghosts = self.sender.ghosts = Ghosts(self.cfg, self.state, self.handle_push)
        try:
            if self.ghosts is not None:
                # The appservice sender cannot /sync: events arrive by push on the listener.
                self.client = self.sender.client = await login(self.cfg, as_token=self.ghosts.reg.as_token)
                await check_token(self.client, self.cfg)
                await self.moderation.join_rooms()
                self._follower = self.moderation.follow(self.modlog_every)
                await self.ghosts.start()
                if self._previous is not None:  # told before run: the ghost map is loaded only now
                    self._leave_orphans(self._previous)
                self._refused = asyncio.get_running_loop().create_future()
                self._ready.set()
                self._token_lost(await self._refused)  # a send was refused the as_token
                raise self._refused_error(self._refused.result())
            await self._sync()
        finally:
            if self._follower is not None:
                self._follower.cancel()
            self.outboxes.close()
            self.ghost_typing.close()
            if self.crypto is not None:
                self.crypto.close()
            if self.ghosts is not None:
                await self.ghosts.stop()
            if self.client is not None:
                await self.client.close()

    async def _sync(self) -> None:
        """Sync until cancelled, or until the homeserver refuses the token for good (CredentialsError)."""
        saved_login_tried = False
        while True:
            self.client = self.sender.client = await login(self.cfg)
            if self.crypto is not None:
                await self.crypto.open(self.client)  # a bad key store fails the start (exit 2), untouched
            if not self._ready.is_set():
                await self.moderation.join_rooms()
                if self._follower is None:
                    self._follower = self.moderation.follow(self.modlog_every)
            code = await self._sync_until_refused()
            if not self._ready.is_set() and not saved_login_tried and forget_saved_login(self.cfg):
                log.warning("matrix: the saved login was refused (%s); logging in with the password again", code)
                saved_login_tried = True
                await self.client.close()
                continue
            if self._ready.is_set():
                self._token_lost(code)
            raise self._refused_error(code)

    async def _sync_until_refused(self) -> str:
        """Run the sync loop until the homeserver refuses the token, in /sync or in a send; its error code."""
        assert self.client is not None
        refused = self._refused = asyncio.get_running_loop().create_future()
        syncing = asyncio.get_running_loop().create_task(
            self.sync.run(self.client, self.cfg.sync_timeout, self.handle_sync, self._ready, self._reachable),
            name="matrix sync",
        )
        try:
            await asyncio.wait({syncing, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await syncing
        if refused.done():
            return refused.result()
        error = syncing.exception()
        if isinstance(error, TokenRefused):
            return error.code
        raise error if error is not None else RuntimeError("the sync loop ended")

    def _reachable(self, up: bool) -> None:
        """Readiness on /metrics follows /sync once started (the daemon says ready at start-up)."""
        if self._ready.is_set() and self.metrics.ready.get(self.name) is not up:
            if not up:
                log.info("matrix: the homeserver does not answer /sync; not ready until it does")
            self.metrics.set_ready(self.name, up)

    def _queue_depth(self) -> dict[tuple[str, ...], float]:
        return {(self.name, "outbox"): float(self.outboxes.depth())}

    def _token_refused(self, code: str) -> None:
        """A request was refused the token (revoked, logged out): the sync loop (or ghost mode) stops now."""
        if self._refused is not None and not self._refused.done():
            self._refused.set_result(code)

    def _refused_error(self, code: str) -> CredentialsError:
        return CredentialsError(
            f"the homeserver refused the access token of {self.cfg.user_id} ({code}); "
            "set a new access_token (or password) and restart"
        )

    def _token_lost(self, code: str) -> None:
        """The token was revoked while running: nothing can be sent any more, so every chat ends now."""
        self.lost = code
        self.metrics.set_ready(self.name, False)
        self.outboxes.close()
        self.ghost_typing.close()
        ended = sorted(self.rooms.active)
        self.rooms.active.clear()
        log.error("matrix: the homeserver refused the access token (%s) while running; ending %d chats", code, len(ended))
        for sid in ended:
            self.submit(Room(self.name, sid), Disconnected())

    async def flush(self) -> None:
        """Wait until every outbox has sent what it holds."""
        await self.outboxes.drain()

    async def handle_sync(self, resp: SyncResponse, history: bool = False) -> None:
        """Hand one sync batch to the core. `history`: the very first sync; old messages are not relayed."""
        await self.receiver.handle_sync(resp, history)
        if self.crypto is not None:
            await self.crypto.after_sync(resp)  # keys nio leaves to us; waiting messages tried again

    def help_text(self) -> str:
        """The help notice (with what encryption means for this bot, when it encrypts)."""
        text = help_text(self.cfg.command_prefix, self.moderation.report_lines(), images=self.cfg.images)
        return f"{text}\n{ENCRYPTION_NOTE}" if self.crypto is not None else text

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
        self.delivery.drop_room(rid)

    async def refuse_encrypted(self, rid: str) -> None:
        """A room turned encryption on: end its chats and leave, once."""
        if rid in self.rooms.encrypted:
            return
        log.info("matrix: a room turned on encryption; ending its chats and leaving")
        self.rooms.encrypted.remember(rid)
        self.end_all(rid)
        await self.leave(rid, refusal_reason(self.cfg))

    async def leave(self, rid: str, reason: str) -> None:
        """Leave (or refuse an invite to) a room, with a reason its members can read."""
        self.rooms.left(rid)
        self.delivery.drop_room(rid)
        await self.sender.leave(rid, reason)

    async def notice(self, rid: str, thread: str | None, text: str) -> None:
        """Queue a bridge notice in a room (or thread) the bot is still in."""
        if self.rooms.closed(rid) or self.lost is not None:
            return
        self.delivery.box(SessionRoom(rid, thread)).put_payload(Post(render.notice(text)))

    # ---- outbound ----------------------------------------------------------------------------

    async def deliver(self, room: Room, event: Event) -> None:
        """Show a stranger-side or core event (see `plugins.matrix.delivery`)."""
        await self.delivery.deliver(room, event)
