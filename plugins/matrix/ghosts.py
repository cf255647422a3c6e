"""Ghost mode glue (aiohttp): the appservice push listener and the writes made as ghost users."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bridge.abc import KeyValue
from bridge.dedupe import SeenIds

from . import render
from .appservice import Pushed, Registration, bearer_ok, ghost_id, parse_registration, parse_transaction
from .config import MatrixConfig
from .sender import Sent, Write
from .rooms import SessionRoom

__all__ = ["Ghosts"]

log = logging.getLogger(__name__)

TXN_KEEP = 256  # pushed transaction ids remembered (and persisted) to answer a repeat at once
STATE_KEY = "as_ghosts"  # persisted: the ghosts of running chats, and ghosts still to leave their rooms
CLIENT = "/_matrix/client/v3"


def _err(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


class Ghosts:
    """The application service: receives pushed events, and sends as one ghost user per stranger per chat."""

    def __init__(self, cfg: MatrixConfig, state: KeyValue, on_push: Callable[[Pushed], Awaitable[None]]) -> None:
        assert cfg.appservice is not None
        self.cfg = cfg
        self.as_cfg = cfg.appservice
        self.state = state
        self.on_push = on_push
        self.server = cfg.user_id.partition(":")[2]
        self.reg: Registration = parse_registration(
            self.as_cfg.registration.read_text(), bot=cfg.user_id, ghost_prefix=self.as_cfg.ghost_prefix
        )
        if self.reg.rate_limited:
            log.warning("matrix appservice: rate_limited is true in the registration; ghosts will hit 429s")
        if not self.reg.receive_ephemeral:
            log.warning("matrix appservice: receive_ephemeral is off; users' typing will not reach strangers")
        self.chats: dict[str, dict[str | None, str]] = {}  # session room id -> stranger label -> ghost
        self.labels: dict[str, str] = {}  # ghost -> display name
        self.joined: set[tuple[str, str]] = set()  # (room id, ghost) the ghost is (or may be) in
        # Ghosts whose chat ended but whose leave did not go through yet. Persisted with `chats`, so
        # a crash between a chat's end and the ghost's leave does not strand the ghost in the room.
        self.leaving: set[tuple[str, str]] = set()
        self.unsure: set[tuple[str, str]] = set()  # loaded as joined, not seen joined by this run
        self.done: SeenIds[str, None] = SeenIds(TXN_KEEP)  # handled txn ids
        self.lock = asyncio.Lock()
        self.http: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.pushes = 0  # transactions handled (not counting repeats), for tests and status

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load what a previous run left, then open the push listener on `listen` (port 0: a free one)."""
        raw = await self.state.get("as_txns")
        for txn in json.loads(raw) if raw else []:
            self.done.remember(txn)
        await self.load()
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.request_timeout))
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_put("/_matrix/app/v1/transactions/{txn}", self._transaction)
        app.router.add_put("/transactions/{txn}", self._transaction)  # legacy path
        app.router.add_get("/_matrix/app/v1/users/{user}", self._query)
        app.router.add_get("/_matrix/app/v1/rooms/{alias}", self._query)
        app.router.add_post("/_matrix/app/v1/ping", self._ping)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        host, _, port = self.as_cfg.listen.rpartition(":")
        site = web.TCPSite(self.runner, host.strip("[]"), int(port))
        await site.start()
        self.port = self.runner.addresses[0][1]
        log.info("matrix appservice: listening on %s:%d", host, self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.http is not None:
            await self.http.close()

    # ---- the homeserver's pushes -------------------------------------------------------------

    def _authorized(self, request: web.Request) -> web.Response | None:
        ok = bearer_ok(request.headers.get("Authorization"), request.query.get("access_token"), self.reg.hs_token)
        if ok is None:
            return _err(401, "M_UNAUTHORIZED", "missing token")
        if not ok:
            log.warning("matrix appservice: a push with a wrong hs_token was refused")
            return _err(403, "M_FORBIDDEN", "bad token")
        return None

    async def _transaction(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused is not None:
            return refused
        txn = request.match_info["txn"]
        try:
            pushed = parse_transaction(await request.json())
        except ValueError:
            return _err(400, "M_NOT_JSON", "bad transaction body")
        # One at a time, so a repeat that arrives while the first is handled waits and is skipped.
        async with self.lock:
            if txn in self.done:
                return web.json_response({})
            try:
                await self.on_push(pushed)
            except Exception:  # the homeserver retries the transaction; event ids deduplicate
                log.exception("matrix appservice: handling a transaction failed")
                return _err(500, "M_UNKNOWN", "try again")
            self.done.remember(txn)
            self.pushes += 1
            await self.state.set("as_txns", json.dumps(list(self.done)))
        return web.json_response({})

    async def _query(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused is not None:
            return refused
        # Ghosts exist only for running chats and the bridge registers them itself.
        return _err(404, "M_NOT_FOUND", "no such user or room")

    async def _ping(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        return refused if refused is not None else web.json_response({})

    # ---- ghosts ------------------------------------------------------------------------------

    def owns(self, mxid: str) -> bool:
        """True for our ghosts (anything in the exclusive namespace except the bot itself)."""
        return mxid != self.cfg.user_id and any(p.fullmatch(mxid) for p in self.reg.users)

    async def load(self) -> None:
        """Take up the ghost map a previous run persisted; its ghosts may still be in their rooms."""
        raw = await self.state.get(STATE_KEY)
        try:
            data = json.loads(raw) if raw else {}
            chats = {
                str(sid): {(str(label) if label is not None else None): str(ghost) for label, ghost in pairs}
                for sid, pairs in (data.get("chats") or {}).items()
            }
            leaving = {(str(rid), str(ghost)) for rid, ghost in data.get("leaving") or []}
        except (ValueError, TypeError, AttributeError):
            log.warning("matrix appservice: the persisted ghost map is unreadable; starting without it")
            return
        for sid, chat in chats.items():
            room = _room_of(sid)
            for label, ghost in chat.items():
                self.labels[ghost] = label or "Stranger"
                self.unsure.add((room, ghost))  # maybe joined: a leave is tried, a join only if a send fails
        self.chats.update(chats)
        self.leaving |= leaving
        self.unsure |= leaving
        self.joined |= self.unsure

    async def save(self) -> None:
        """Persist the ghost map (labels of strangers are kept: they are core labels, not identities)."""
        data = {
            "chats": {sid: [[label, ghost] for label, ghost in chat.items()] for sid, chat in self.chats.items() if chat},
            "leaving": sorted([rid, ghost] for rid, ghost in self.leaving),
        }
        await self.state.set(STATE_KEY, json.dumps(data))

    async def ghost(self, sid: str, label: str | None) -> str:
        """The ghost of stranger `label` in session `sid`, made on first use in a chat (and persisted,
        so a chat that goes on after a restart keeps its ghost)."""
        chat = self.chats.setdefault(sid, {})
        found = chat.get(label)
        if found is None:
            found = chat[label] = ghost_id(self.as_cfg.ghost_prefix, self.server)
            self.labels[found] = label or "Stranger"
            await self.save()
        return found

    async def end(self, sid: str, label: str | None = None, *, everyone: bool = False) -> list[str]:
        """Forget the ghosts of a chat (or of one stranger); returns them so they can leave. They stay
        persisted as leaving until their leave went through."""
        chat = self.chats.get(sid, {})
        if everyone:
            gone = list(chat.values())
            self.chats.pop(sid, None)
        else:
            gone = [chat.pop(label)] if label in chat else []
        if gone:
            self.leaving.update((_room_of(sid), ghost) for ghost in gone)
            await self.save()
        return gone

    def orphans(self, running: set[str]) -> list[tuple[str, str]]:
        """After a restart: the ghosts of chats not in `running` (sessions the core no longer has)
        are moved to leaving. Returns every (room id, ghost) that must leave, to be queued."""
        for sid in [s for s in self.chats if s not in running]:
            self.leaving.update((_room_of(sid), ghost) for ghost in self.chats.pop(sid).values())
        return sorted(self.leaving)

    async def _left(self, rid: str, ghost: str) -> None:
        self.joined.discard((rid, ghost))
        self.unsure.discard((rid, ghost))
        self.labels.pop(ghost, None)
        if (rid, ghost) in self.leaving:
            self.leaving.discard((rid, ghost))
            await self.save()

    async def send(self, rid: str, entry: Write) -> Sent:
        """One write made as its ghost (`entry.sender`): joins the ghost first if needed."""
        ghost = entry.sender
        assert ghost is not None
        if entry.leave:
            if (rid, ghost) not in self.joined:
                await self._left(rid, ghost)  # never joined: nothing to leave
                return Sent(Sent.OK)
            result = await self._call("POST", f"/rooms/{quote(rid)}/leave", ghost, {})
            if result.kind in (Sent.OK, Sent.FATAL):  # FATAL: not in the room (any more)
                await self._left(rid, ghost)
            return result
        if (rid, ghost) not in self.joined:
            if entry.typing is False:
                return Sent(Sent.OK)  # never joined: nothing to clear
            result = await self._join(rid, ghost)
            if result.kind != Sent.OK:
                return result
        result = await self._write(rid, ghost, entry)
        if result.kind == Sent.FATAL and (rid, ghost) in self.unsure:
            # A ghost of the previous run that never got into the room (a crash before its join).
            self.unsure.discard((rid, ghost))
            self.joined.discard((rid, ghost))
            joined = await self._join(rid, ghost)
            result = await self._write(rid, ghost, entry) if joined.kind == Sent.OK else joined
        elif result.kind == Sent.OK:
            self.unsure.discard((rid, ghost))
        return result

    async def _write(self, rid: str, ghost: str, entry: Write) -> Sent:
        if entry.typing is not None:
            body: dict[str, Any] = {"typing": entry.typing}
            if entry.typing:
                body["timeout"] = int(self.cfg.typing_timeout * 1000)
            return await self._call("PUT", f"/rooms/{quote(rid)}/typing/{quote(ghost)}", ghost, body)
        if entry.redacts is not None:
            path = f"/rooms/{quote(rid)}/redact/{quote(entry.redacts)}/{quote(entry.txn)}"
            return await self._call("PUT", path, ghost, render.redaction())
        assert entry.content is not None
        path = f"/rooms/{quote(rid)}/send/{quote(entry.kind)}/{quote(entry.txn)}"
        return await self._call("PUT", path, ghost, render.wire(entry.content, entry.thread))

    async def _join(self, rid: str, ghost: str) -> Sent:
        """Register the ghost, name it, have the bot invite it, and join it to the room."""
        localpart = ghost[1:].partition(":")[0]
        reg = await self._call(
            "POST", "/register", None, {"type": "m.login.application_service", "username": localpart, "inhibit_login": True}
        )
        if reg.kind != Sent.OK and reg.error != "M_USER_IN_USE":
            return reg
        name = await self._call(
            "PUT", f"/profile/{quote(ghost)}/displayname", ghost, {"displayname": self.labels.get(ghost, "Stranger")}
        )
        if name.kind in (Sent.LIMITED, Sent.TRANSIENT):
            return name
        invite = await self._call("POST", f"/rooms/{quote(rid)}/invite", None, {"user_id": ghost})
        if invite.kind in (Sent.LIMITED, Sent.TRANSIENT):
            return invite
        joined = await self._call("POST", f"/rooms/{quote(rid)}/join", ghost, {})
        if joined.kind == Sent.OK:
            self.joined.add((rid, ghost))
            self.unsure.discard((rid, ghost))
        return joined

    async def _call(self, method: str, path: str, user: str | None, body: dict[str, Any]) -> Sent:
        """One client-server request with the as_token, as `user` (None: the bot) via ?user_id=."""
        assert self.http is not None
        params = {"user_id": user} if user else {}
        headers = {"Authorization": f"Bearer {self.reg.as_token}"}
        try:
            async with self.http.request(
                method, self.cfg.homeserver + CLIENT + path, params=params, json=body, headers=headers
            ) as resp:
                status = resp.status
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = {}
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Sent(Sent.TRANSIENT, error=type(exc).__name__)
        data = data if isinstance(data, dict) else {}
        if status == 200:
            event_id = data.get("event_id")
            return Sent(Sent.OK, event_id=event_id if isinstance(event_id, str) else "")
        errcode = str(data.get("errcode") or status)
        if status == 429:
            return Sent(Sent.LIMITED, retry_after=(data.get("retry_after_ms") or 1000) / 1000, error=errcode)
        if status >= 500:
            return Sent(Sent.TRANSIENT, error=errcode)
        return Sent(Sent.FATAL, error=errcode)


def _room_of(sid: str) -> str:
    """The Matrix room id of a core room id (thread mode: a thread of that room)."""
    return SessionRoom.parse(sid).room
