"""matrix-nio glue: sync loop, invites, room/thread sessions, typing, and the per-room outboxes."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinedMembersResponse,
    JoinError,
    LoginResponse,
    RoomGetStateEventResponse,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
    TypingNoticeEvent,
)
from nio.api import Api
from nio.responses import ErrorResponse, RoomLeaveResponse

from bridge.abc import Platform
from bridge.events import Connected, Disconnected, Event, Message, Room, Start, StoppedTyping, Typing, Waiting

from . import render
from .commands import Command, help_text, to_event
from .config import MatrixConfig
from .appservice import Pushed
from .inbound import Ignore, Media, Said, classify
from .outbox import Entry, Outbox, Sent, TxnIds

__all__ = ["MatrixPlatform"]

log = logging.getLogger(__name__)

SEEN_KEEP = 512  # event ids remembered (and persisted) to drop a batch delivered twice
GAP_PAGES = 5  # /messages pages fetched to fill a gap in a limited timeline
SYNC_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
ENCRYPTED_REASON = "stranger-bridge does not support encrypted rooms; invite it to an unencrypted room."


def user_key(mxid: str) -> str:
    """The opaque per-person key handed to the core (never leaves the process)."""
    return "matrix:" + hashlib.sha256(mxid.encode()).hexdigest()[:16]


class MatrixPlatform(Platform):
    """A Matrix bot account: each invited room (or, in thread mode, each thread) is a session room."""

    Config = MatrixConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg: MatrixConfig = self.config
        self.cfg = cfg
        self.client: AsyncClient | None = None
        self.txn = TxnIds(self.state)
        self.outboxes: dict[str, Outbox] = {}
        self.since: str | None = None
        self.seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.active: set[str] = set()  # session room ids with a chat (or search) going on
        self.threads: dict[str, set[str]] = collections.defaultdict(set)  # room id -> thread roots
        self.gone: set[str] = set()  # rooms we left or were removed from: nothing is sent there
        self.encrypted: set[str] = set()  # never send plaintext there
        self.plaintext: set[str] = set()  # rooms the server confirmed unencrypted (this run)
        self.members: dict[str, frozenset[str]] = {}  # joined members, refreshed on member events
        self.typing: dict[str, frozenset[str]] = {}  # room id -> users typing (not us)
        self.last_thread: dict[tuple[str, str], str] = {}  # (room, user) -> thread last written in
        self.last_start: dict[str, Start] = {}  # session room id -> the Start "next" repeats
        self.ignore = [re.compile(p) for p in cfg.ignore_users]
        self.stats: collections.Counter[str] = collections.Counter()  # send results, for tests and status
        self._ready = asyncio.Event()
        self.ghosts: Any = None  # ghost mode (plugins.matrix.ghosts.Ghosts) when `appservice` is set
        self._saving: asyncio.Task | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def ready(self) -> None:
        """Ready once logged in and the first sync was handled."""
        await self._ready.wait()

    def rooms_active(self, rooms: list[Room]) -> None:
        """Remember the sessions a previous run left, so their rooms keep relaying."""
        for room in rooms:
            self.active.add(room.id)
            rid, _, root = room.id.partition("|")
            if root:
                self.threads[rid].add(root)
        if self.ghosts is not None:
            # Ghosts of chats the core no longer has (they ended, or the process died before their
            # leave went out) leave now; chats the core resumes or ends with a notice keep theirs until then.
            for rid, ghost in self.ghosts.orphans({room.id for room in rooms}):
                self._put(rid, Entry(leave=True, sender=ghost))
            self._saving = asyncio.get_running_loop().create_task(self.ghosts.save())

    async def run(self) -> None:
        """Log in, then sync until cancelled; each batch is handed in before its token is saved."""
        await self.txn.load()
        await self._load_sync_state()
        if self.cfg.appservice is not None:
            from .ghosts import Ghosts  # only ghost mode needs aiohttp's server side

            # Reads and checks the registration: a bad one fails the start loudly.
            self.ghosts = Ghosts(self.cfg, self.state, self.handle_push)
        self.client = await self._login()
        try:
            if self.ghosts is not None:
                # The appservice sender cannot /sync: events arrive by push on the listener.
                await self.ghosts.start()
                self._ready.set()
                await asyncio.Event().wait()
            else:
                await self._sync_loop()
        finally:
            for box in self.outboxes.values():
                box.cancel()
            if self.ghosts is not None:
                await self.ghosts.stop()
            await self.client.close()

    async def flush(self) -> None:
        """Wait until every outbox has sent what it holds."""
        for box in list(self.outboxes.values()):
            await box.drain()

    async def _login(self) -> AsyncClient:
        cfg = self.cfg
        client = AsyncClient(
            cfg.homeserver,
            cfg.user_id,
            device_id=cfg.device_id,
            config=AsyncClientConfig(
                max_limit_exceeded=0,  # we handle 429 ourselves (merging instead of sleeping blind)
                max_timeouts=0,  # and timeouts (retrying with the same transaction id)
                request_timeout=cfg.request_timeout,
                encryption_enabled=False,
                store_sync_tokens=False,
            ),
        )
        if self.ghosts is not None or cfg.access_token is not None:
            token = self.ghosts.reg.as_token if self.ghosts is not None else cfg.access_token.get_secret_value()
            client.access_token = token
            client.user_id = cfg.user_id
            if cfg.device_id:
                client.device_id = cfg.device_id
            return client
        saved = self._read_saved_login()
        if saved:
            client.access_token = saved["access_token"]
            client.device_id = saved.get("device_id") or cfg.device_id
            client.user_id = cfg.user_id
            return client
        assert cfg.password is not None
        delay = 0
        while True:
            try:
                resp = await client.login(cfg.password.get_secret_value(), device_name="stranger-bridge")
            except Exception as exc:  # homeserver not up yet: keep trying, the daemon waits
                resp = exc
            if isinstance(resp, LoginResponse):
                break
            log.warning("matrix login failed (%s); retrying", getattr(resp, "message", type(resp).__name__))
            await asyncio.sleep(SYNC_BACKOFF[min(delay, len(SYNC_BACKOFF) - 1)])
            delay += 1
        self._write_saved_login(resp.device_id, resp.access_token)
        return client

    def _read_saved_login(self) -> dict[str, str] | None:
        path = self.cfg.store_path
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("matrix: the saved login in store_path is unreadable; logging in again")
            return None
        if data.get("user_id") != self.cfg.user_id or not data.get("access_token"):
            return None
        return data

    def _write_saved_login(self, device_id: str, token: str) -> None:
        path: Path | None = self.cfg.store_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"user_id": self.cfg.user_id, "device_id": device_id, "access_token": token}, f)

    # ---- sync --------------------------------------------------------------------------------

    async def _load_sync_state(self) -> None:
        raw = await self.state.get("sync")
        if not raw:
            return
        data = json.loads(raw)
        self.since = data.get("since")
        for eid in data.get("seen", []):
            self.seen[eid] = None

    async def _save_sync_state(self) -> None:
        seen = list(self.seen)[-SEEN_KEEP:]
        await self.state.set("sync", json.dumps({"since": self.since, "seen": seen}))

    def _filter(self) -> dict[str, Any]:
        return {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {"timeline": {"limit": 100}, "account_data": {"types": []}},
        }

    async def _sync_loop(self) -> None:
        assert self.client is not None
        failures = 0
        first = self.since is None
        while True:
            timeout = 0 if (first or not self._ready.is_set()) else int(self.cfg.sync_timeout * 1000)
            try:
                resp = await self.client.sync(timeout=timeout, since=self.since, sync_filter=self._filter())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection refused, timeout: the homeserver is away
                resp = exc
            if not isinstance(resp, SyncResponse):
                retry = getattr(resp, "retry_after_ms", None)
                delay = retry / 1000 if retry else SYNC_BACKOFF[min(failures, len(SYNC_BACKOFF) - 1)]
                failures += 1
                log.warning("matrix sync failed (%s); retrying in %.1f s", _why(resp), delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            await self.handle_sync(resp, history=first)
            first = False
            # Only now: everything in the batch was handed to the core.
            self.since = resp.next_batch
            await self._save_sync_state()
            self._ready.set()

    async def handle_sync(self, resp: SyncResponse, *, history: bool = False) -> None:
        """Hand one sync batch to the core. `history`: the very first sync; old messages are not relayed."""
        for rid, info in resp.rooms.invite.items():
            await self._on_invite(rid, [_stripped(e) for e in info.invite_state])
        for rid, info in resp.rooms.join.items():
            if any(getattr(e, "source", {}).get("type") == "m.room.encryption" for e in info.state):
                await self._refuse_encrypted(rid)
                continue
            events = [e.source for e in info.timeline.events if isinstance(getattr(e, "source", None), dict)]
            if info.timeline.limited and not history and self.since:
                events = await self._fill_gap(rid, info.timeline.prev_batch, events)
            for source in events:
                await self._on_timeline(rid, source, history=history)
            for ephemeral in info.ephemeral:
                if isinstance(ephemeral, TypingNoticeEvent):
                    self._on_typing(rid, ephemeral.users)
        for rid, info in resp.rooms.leave.items():
            for e in info.timeline.events:
                source = getattr(e, "source", None)
                if isinstance(source, dict):
                    await self._on_timeline(rid, source, history=history)
            self._removed(rid)

    async def handle_push(self, pushed: Pushed) -> None:
        """Ghost mode: hand one pushed transaction to the core (in order), then persist the seen ids."""
        me = self.cfg.user_id
        for ev in pushed.events:
            rid = ev["room_id"]
            content = ev.get("content") if isinstance(ev.get("content"), dict) else {}
            if ev.get("type") == "m.room.member" and ev.get("state_key") == me and content.get("membership") == "invite":
                if self._seen(ev.get("event_id")):
                    continue
                state = (ev.get("unsigned") or {}).get("invite_room_state") or []
                await self._on_invite(rid, [ev, *(s for s in state if isinstance(s, dict))])
                continue
            await self._on_timeline(rid, ev, history=False)
        for rid, users in pushed.typing:
            self._on_typing(rid, list(users))
        await self._save_sync_state()

    async def _fill_gap(self, rid: str, prev_batch: str | None, events: list[dict]) -> list[dict]:
        """A limited timeline skipped events since our token: fetch them with /messages."""
        assert self.client is not None
        if not prev_batch:
            return events
        older: list[dict] = []
        start = prev_batch
        for _ in range(GAP_PAGES):
            resp = await self.client.room_messages(rid, start=start, end=self.since, direction="b", limit=100)
            if not isinstance(resp, RoomMessagesResponse):
                log.warning("matrix: could not fetch missed events (%s)", _why(resp))
                break
            older.extend(e.source for e in resp.chunk if isinstance(getattr(e, "source", None), dict))
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start = resp.end
        older.reverse()
        return older + events

    # ---- inbound -----------------------------------------------------------------------------

    def _seen(self, event_id: str | None) -> bool:
        if not event_id:
            return False
        if event_id in self.seen:
            return True
        self.seen[event_id] = None
        if len(self.seen) > SEEN_KEEP * 2:
            for _ in range(len(self.seen) - SEEN_KEEP):
                self.seen.popitem(last=False)
        return False

    def _ignored(self, sender: str) -> bool:
        if sender == self.cfg.user_id:
            return True
        if self.ghosts is not None and self.ghosts.owns(sender):
            return True
        return any(p.fullmatch(sender) for p in self.ignore)

    async def _on_invite(self, rid: str, state: list[dict]) -> None:
        me = self.cfg.user_id
        inviter = None
        encrypted = False
        for ev in state:
            if ev.get("type") == "m.room.member" and ev.get("state_key") == me:
                if (ev.get("content") or {}).get("membership") == "invite":
                    inviter = ev.get("sender")
            if ev.get("type") == "m.room.encryption":
                encrypted = True
        if inviter is None:
            return
        if not self.cfg.may_invite(inviter):
            log.warning("matrix: invite from %s refused: not in allowed_inviters", inviter)
            await self._leave(rid, "You are not allowed to invite this bot.")
            return
        if encrypted:
            log.info("matrix: invite to an encrypted room refused")
            await self._leave(rid, ENCRYPTED_REASON)
            return
        assert self.client is not None
        resp = await self.client.join(rid)
        if isinstance(resp, JoinError):
            log.warning("matrix: could not join an invited room: %s", resp.message)
            return
        self.gone.discard(rid)
        self.members.pop(rid, None)
        await self._notice(rid, None, help_text(self.cfg.command_prefix))

    async def _on_timeline(self, rid: str, ev: dict[str, Any], *, history: bool) -> None:
        if self._seen(ev.get("event_id")):
            return
        kind = ev.get("type")
        sender = ev.get("sender") or ""
        if kind == "m.room.member":
            await self._on_member(rid, ev)
            return
        if kind in ("m.room.encryption", "m.room.encrypted"):
            await self._refuse_encrypted(rid)
            return
        if history or kind not in ("m.room.message", "m.sticker") or self._ignored(sender):
            return
        if rid in self.gone or rid in self.encrypted:
            return
        content = ev.get("content")
        if not isinstance(content, dict):
            return
        await self._on_message(rid, ev, sender, content, kind)

    async def _on_message(self, rid: str, ev: dict, sender: str, content: dict, kind: str) -> None:
        media_base = f"{self.cfg.homeserver}/_matrix/media/v3/download" if self.cfg.allow_media_links else None
        what = classify(content, prefix=self.cfg.command_prefix, event_type=kind, media_base=media_base)
        if isinstance(what, Ignore):
            return
        relates = content.get("m.relates_to") if isinstance(content.get("m.relates_to"), dict) else {}
        root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        threaded = self.cfg.mode == "thread" and not await self._is_dm(rid)
        if threaded:
            if root is not None and root in self.threads[rid]:
                sid = f"{rid}|{root}"
                self.last_thread[(rid, sender)] = root
            elif root is None and isinstance(what, Command) and what.name in ("start", "ask", "answer"):
                root = ev["event_id"]  # the command itself becomes the thread's root
                self.threads[rid].add(root)
                sid = f"{rid}|{root}"
                self.last_thread[(rid, sender)] = root
            elif isinstance(what, Command):
                await self._notice(rid, root, f"Use {self.cfg.command_prefix} start here to open a chat in a new thread.")
                return
            else:
                return  # ordinary conversation in a shared room
        else:
            sid, root = rid, None
        room = Room(self.name, sid)
        self._user_stopped_typing(rid, sender)
        if isinstance(what, Command):
            if what.name == "help":
                await self._notice(rid, root, help_text(self.cfg.command_prefix))
                return
            if what.name == "unknown":
                await self._notice(rid, root, f"Unknown command. Try {self.cfg.command_prefix} help.")
                return
            event = to_event(what, user=user_key(sender), last=self.last_start.get(sid))
            if event is None:
                return
            if isinstance(event, Start):
                self.last_start[sid] = event
                self.active.add(sid)
            self.submit(room, event)
            return
        if isinstance(what, Media):
            if what.link is not None:
                self.submit(room, Message(f"[{what.kind}] {what.link}"))
            elif sid in self.active:
                await self._notice(rid, root, f"You sent {what.kind}: media is not sent to strangers.")
            return
        assert isinstance(what, Said)
        if sid not in self.active and self.cfg.dm_autostart and not threaded and await self._is_dm(rid):
            start = Start(user=user_key(sender))
            self.last_start[sid] = start
            self.active.add(sid)
            self.submit(room, start)
            return
        self.submit(room, Message(what.text))

    async def _on_member(self, rid: str, ev: dict[str, Any]) -> None:
        me = self.cfg.user_id
        target = ev.get("state_key")
        membership = (ev.get("content") or {}).get("membership")
        self.members.pop(rid, None)
        if target == me:
            if membership in ("leave", "ban"):
                self._removed(rid)
            return
        if membership not in ("leave", "ban") or rid in self.gone:
            return
        members = await self._members(rid)
        people = {m for m in members if m != me and not self._ignored(m)}
        if not people:
            log.info("matrix: nobody left in a session room; leaving it")
            self._end_all(rid)
            await self._leave(rid, "Nobody is left in this room.")

    def _removed(self, rid: str) -> None:
        """We left or were kicked: end the room's chats; nothing is sent there any more."""
        if rid in self.gone:
            return
        self._end_all(rid)
        self.gone.add(rid)
        self._drop_outbox(rid)

    def _drop_outbox(self, rid: str) -> None:
        """Nothing more is written to a room the bot left; its ghosts still leave (they may be there)."""
        box = self.outboxes.pop(rid, None)
        if box is None:
            return
        leaves = [e for e in box.items if e.leave]
        box.cancel()
        for entry in leaves:
            self._put(rid, entry)

    def _end_all(self, rid: str) -> None:
        for sid in [rid, *(f"{rid}|{t}" for t in self.threads.get(rid, ()))]:
            if sid in self.active:
                self.active.discard(sid)
                self.submit(Room(self.name, sid), Disconnected())

    async def _refuse_encrypted(self, rid: str) -> None:
        if rid in self.encrypted:
            return
        log.info("matrix: a room turned on encryption; ending its chats and leaving")
        self.encrypted.add(rid)
        self._end_all(rid)
        await self._leave(rid, ENCRYPTED_REASON)

    def _on_typing(self, rid: str, users: list[str]) -> None:
        now = frozenset(u for u in users if not self._ignored(u))
        before = self.typing.get(rid, frozenset())
        self.typing[rid] = now
        for user in now - before:
            self._typing_changed(rid, user, Typing())
        for user in before - now:
            self._typing_changed(rid, user, StoppedTyping())

    def _typing_changed(self, rid: str, user: str, event: Event) -> None:
        if self.cfg.mode == "thread" and self.threads.get(rid):
            root = self.last_thread.get((rid, user))
            sid = f"{rid}|{root}" if root else None
        else:
            sid = rid
        if sid is not None and sid in self.active:
            self.submit(Room(self.name, sid), event)

    def _user_stopped_typing(self, rid: str, user: str) -> None:
        # A message implies the user stopped typing (the core does the same on its side).
        current = self.typing.get(rid)
        if current and user in current:
            self.typing[rid] = current - {user}

    async def _members(self, rid: str) -> frozenset[str]:
        cached = self.members.get(rid)
        if cached is not None:
            return cached
        assert self.client is not None
        resp = await self.client.joined_members(rid)
        if isinstance(resp, JoinedMembersResponse):
            found = frozenset(m.user_id for m in resp.members)
            self.members[rid] = found
            return found
        return frozenset({self.cfg.user_id, "?"})  # unknown: assume somebody is there

    async def _is_dm(self, rid: str) -> bool:
        members = await self._members(rid)
        if self.ghosts is not None:
            members = frozenset(m for m in members if not self.ghosts.owns(m))  # ghosts come and go
        return len([m for m in members if not self._ignored(m)]) == 1 and len(members) <= 2

    # ---- outbound ----------------------------------------------------------------------------

    async def deliver(self, room: Room, event: Event) -> None:
        """Show a stranger-side or core event: queued in the room's outbox, sent in order."""
        rid, _, root = room.id.partition("|")
        thread = root or None
        match event:
            case Waiting() | Connected():
                self.active.add(room.id)
            case Disconnected(final=True):
                self.active.discard(room.id)
        if rid in self.gone or rid in self.encrypted:
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

    async def _notice(self, rid: str, thread: str | None, text: str) -> None:
        if rid in self.gone or rid in self.encrypted:
            return
        self._put(rid, Entry(content=render.notice(text), thread=thread, txn=await self.txn.take()))

    def _put(self, rid: str, entry: Entry) -> None:
        box = self.outboxes.get(rid)
        if box is None:
            box = self.outboxes[rid] = Outbox(rid, self._send, self.txn, self.cfg.merge_budget, self._outbox_idle)
        box.put(entry)

    def _outbox_idle(self, rid: str) -> None:
        box = self.outboxes.get(rid)
        if box is not None and not box.items:
            del self.outboxes[rid]

    async def _send(self, rid: str, entry: Entry) -> Sent:
        """One request for one outbox entry. Never sends into an encrypted room."""
        if entry.leave and self.ghosts is not None:
            # A ghost leaving sends no content: it goes out even where the bot left or saw encryption.
            result = await self.ghosts.send(rid, entry)
            self.stats[result.kind] += 1
            return result
        if rid in self.encrypted or rid in self.gone:
            return Sent(Sent.FATAL, error="room encrypted or left")
        client = self.client
        assert client is not None
        nio_room = client.rooms.get(rid)
        if nio_room is not None and nio_room.encrypted:
            await self._refuse_encrypted(rid)
            return Sent(Sent.FATAL, error="room is encrypted")
        if rid not in self.plaintext:
            # Invite state may not show encryption, and after a restart nio knows no room state:
            # ask the server once per room before the first plaintext event goes out.
            try:
                state = await client.room_get_state_event(rid, "m.room.encryption")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                return Sent(Sent.TRANSIENT, error=type(exc).__name__)
            if isinstance(state, RoomGetStateEventResponse):
                await self._refuse_encrypted(rid)
                return Sent(Sent.FATAL, error="room is encrypted")
            if str(getattr(state, "status_code", "")) != "M_NOT_FOUND":
                return classify_response(state) if isinstance(state, ErrorResponse) else Sent(Sent.TRANSIENT)
            self.plaintext.add(rid)
        if entry.sender is not None and self.ghosts is not None:
            result = await self.ghosts.send(rid, entry)
            self.stats[result.kind] += 1
            return result
        try:
            if entry.typing is not None:
                resp = await client.room_typing(rid, entry.typing, timeout=int(self.cfg.typing_timeout * 1000))
            else:
                assert entry.content is not None
                resp = await client.room_send(
                    rid, "m.room.message", render.wire(entry.content, entry.thread), tx_id=entry.txn
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # timeout or connection error: the event may or may not be stored
            return Sent(Sent.TRANSIENT, error=type(exc).__name__)
        result = classify_response(resp)
        self.stats[result.kind] += 1
        return result

    async def _leave(self, rid: str, reason: str) -> None:
        """Leave (or refuse an invite to) a room, with a reason its members can read."""
        assert self.client is not None
        self.gone.add(rid)
        self._drop_outbox(rid)
        method, path = Api.room_leave(self.client.access_token, rid)
        try:
            resp = await self.client._send(RoomLeaveResponse, method, path, json.dumps({"reason": reason}))
        except Exception as exc:  # noqa: BLE001 - leaving is best effort; the room is marked gone anyway
            log.warning("matrix: leaving a room failed: %r", exc)
            return
        if isinstance(resp, ErrorResponse):
            log.warning("matrix: leaving a room failed: %s", resp.message)


def _stripped(event: Any) -> dict[str, Any]:
    """An invite-state event as a dict (nio keeps the membership out of `source`)."""
    source = dict(getattr(event, "source", None) or {})
    membership = getattr(event, "membership", None)
    if membership is not None:
        source["content"] = {**(source.get("content") or {}), "membership": membership}
    return source


def classify_response(resp: Any) -> Sent:
    """What a nio response means for the outbox."""
    if isinstance(resp, RoomSendResponse) or not isinstance(resp, ErrorResponse):
        return Sent(Sent.OK)
    status = str(resp.status_code or "")
    if status in ("M_LIMIT_EXCEEDED", "429"):
        return Sent(Sent.LIMITED, retry_after=(resp.retry_after_ms or 1000) / 1000)
    transport = getattr(resp, "transport_response", None)
    code = getattr(transport, "status", 0) or 0
    if code >= 500 or code == 0 and not status.startswith("M_"):
        return Sent(Sent.TRANSIENT, error=status or str(code))
    return Sent(Sent.FATAL, error=status or str(code))


def _why(resp: object) -> str:
    if isinstance(resp, BaseException):
        return type(resp).__name__
    return str(getattr(resp, "message", None) or getattr(resp, "status_code", None) or type(resp).__name__)


