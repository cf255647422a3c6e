"""A small Discord-compatible server (REST v10 + gateway v10) that records every request and injects faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

import aiohttp
from aiohttp import web

from .fakebase import (
    ADMINISTRATOR,
    ALL_REQUESTS,
    APP_ID,
    BODY,
    BOT_ID,
    DISCORD_EPOCH_MS,
    FILES,
    GUILD_ID,
    MANAGE_GUILD,
    MEMBER_PERMISSIONS,
    OWNER_ID,
    SEND_MESSAGES,
    Fault,
    GatewaySession,
    Recorded,
    RefusingResolver,
    guarded_connector,
    json_answer,
    multipart,
    now_iso,
    shard_of,
    snowflake,
    user_object,
)
from .fakerich import RichMessages

__all__ = [
    "ADMINISTRATOR",
    "ALL_REQUESTS",
    "APP_ID",
    "BOT_ID",
    "FakeDiscord",
    "GUILD_ID",
    "MANAGE_GUILD",
    "MEMBER_PERMISSIONS",
    "Recorded",
    "RefusingResolver",
    "SEND_MESSAGES",
    "guarded_connector",
    "snowflake",
]


def _str_or_none(value: Any) -> str | None:
    # Discord takes the permission bits as a number or a string and answers with a string.
    return None if value is None else str(value)

class FakeDiscord(RichMessages):
    """Guilds (one to start with) with text channels, users, threads, webhooks, an app-command tree
    and one bot, which may connect as several shards (each guild's events only to its shard's session)."""

    def __init__(self, channels: int = 2, recommended_shards: int = 1) -> None:
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.users: dict[int, dict] = {BOT_ID: user_object(BOT_ID, "strangerbot", bot=True)}
        self.channels: dict[int, dict] = {}
        self.messages: dict[int, list[dict]] = {}
        self.webhooks: dict[int, dict] = {}
        self.commands: list[dict] = []
        self.callbacks: dict[int, list[dict]] = {}  # interaction id -> responses and follow-ups
        self.interactions: dict[int, dict] = {}
        self.tokens: dict[str, int] = {}  # interaction token -> id
        self.session: GatewaySession | None = None  # the newest unsharded (or shard-less) session
        self.shard_sessions: dict[int, GatewaySession] = {}  # shard id -> its live session
        self.sessions: dict[str, GatewaySession] = {}
        self.recommended_shards = recommended_shards  # what GET /gateway/bot answers
        self.guild_ids: list[int] = []
        self.identifies = 0
        self.resumes = 0
        self.changed = asyncio.Condition()
        self.text_channels: list[int] = self._add_channels(GUILD_ID, [900000000000000200 + n for n in range(channels)])
        self.webhooks_forbidden = False
        self.cdn: dict[str, tuple[bytes, str]] = {}  # path under /cdn/ -> (bytes, content type)
        self.cdn_fetches: list[str] = []  # paths fetched from the CDN, in order
        self.reactors: dict[int, dict[str, list[int]]] = {}  # message id -> emoji -> who reacted, in order
        self.deleted: list[dict] = []  # messages deleted, by anyone, in order
        self.permissions: dict[int, int] = {}  # user -> permissions in interactions (default MEMBER_PERMISSIONS)
        self.unanswered = 0  # requests a "reset" or "hang" fault left without an answer
        self._released = asyncio.Event()  # ends every "hang" (at stop)
        self.runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=10 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/{tail:.*}", self._cdn_get)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._released.set()
        for session in self.sessions.values():
            if session.ws is not None:
                with contextlib.suppress(Exception):
                    await session.ws.close()
        if self.runner:
            await self.runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def cdn_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/cdn"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_until(self, test, timeout: float = 10.0):
        """Wait until `test()` returns something truthy, and return it."""
        async with asyncio.timeout(timeout):
            async with self.changed:
                while True:
                    result = test()
                    if result:
                        return result
                    await self.changed.wait()

    # ---- users and guilds ----------------------------------------------------------------------

    def _add_channels(self, gid: int, cids: list[int]) -> list[int]:
        self.guild_ids.append(gid)
        for n, cid in enumerate(cids):
            self.channels[cid] = {
                "id": str(cid), "type": 0, "guild_id": str(gid), "name": f"general-{n}", "position": n,
                "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
                "last_message_id": None, "rate_limit_per_user": 0,
            }
            self.messages[cid] = []
        return cids

    def add_guild(self, shard: int = 0, count: int = 1, channels: int = 1) -> tuple[int, list[int]]:
        """Another guild (set up before the bot connects) whose id falls on `shard` of `count`;
        returns its id and its text channels' ids."""
        gid = GUILD_ID
        while gid in self.guild_ids or shard_of(gid, count) != shard:
            gid += 1 << 22
        return gid, self._add_channels(gid, [snowflake() for _ in range(channels)])

    def guild_of(self, cid: int) -> int | None:
        """The guild of a channel or thread; None for a DM channel."""
        raw = self.channels[cid].get("guild_id")
        return int(raw) if raw else None

    def sessions_of(self, guild: int | None) -> list[GatewaySession]:
        """The live session that gets this guild's events (DMs: shard 0), as Discord routes them."""
        if self.shard_sessions:
            found = [s for sid, s in self.shard_sessions.items() if shard_of(guild, s.shard[1]) == sid]  # type: ignore[index]
            return found[:1]
        return [self.session] if self.session is not None else []

    def add_user(self, name: str, *, created: float | None = None, permissions: int | None = None) -> int:
        """A user; `created` (Unix time) sets the account's age as Discord encodes it in the id."""
        uid = snowflake() if created is None else (int(created * 1000) - DISCORD_EPOCH_MS) << 22 | snowflake() % 4096
        self.users[uid] = user_object(uid, name)
        if permissions is not None:
            self.permissions[uid] = permissions
        return uid

    def deny_bot(self, cid: int, bits: int = SEND_MESSAGES) -> None:
        """A channel overwrite that denies the bot `bits` (set before the bot connects); sending then answers 403."""
        self.channels[cid]["permission_overwrites"].append({"id": str(BOT_ID), "type": 1, "allow": "0", "deny": str(bits)})

    def member(self, uid: int) -> dict:
        return {"user": self.users[uid], "roles": [], "joined_at": now_iso(), "deaf": False, "mute": False, "flags": 0}

    def guild_payload(self, gid: int = GUILD_ID) -> dict:
        mine = [c for c in self.channels.values() if c.get("guild_id") == str(gid)]
        threads = [self.public(c) for c in mine if c["type"] in (11, 12) and not c["thread_metadata"]["archived"]]
        return {
            "id": str(gid), "name": "Test Guild" + (f" {self.guild_ids.index(gid)}" if gid != GUILD_ID else ""), "owner_id": str(OWNER_ID), "icon": None,
            "roles": [{"id": str(gid), "name": "@everyone", "permissions": "2248473465835073", "position": 0,
                       "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}],
            "channels": [c for c in mine if c["type"] == 0],
            "threads": threads, "members": [self.member(BOT_ID)], "member_count": len(self.users),
            "emojis": [], "stickers": [], "features": [], "voice_states": [], "presences": [],
            "large": False, "unavailable": False, "joined_at": now_iso(), "premium_tier": 2,
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "mfa_level": 0, "nsfw_level": 0, "preferred_locale": "en-US", "system_channel_flags": 0,
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        }

    # ---- gateway -------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}))
        session: GatewaySession | None = None
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                op = data.get("op")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
                elif op == 2:
                    self.identifies += 1
                    shard = data["d"].get("shard")
                    session = GatewaySession(id=f"session-{snowflake()}", ws=ws, shard=tuple(shard) if shard else None)
                    self.sessions[session.id] = session
                    if session.shard is not None and session.shard[1] > 1:
                        self.shard_sessions[session.shard[0]] = session
                    else:
                        self.session = session
                    sid, count = session.shard or (0, 1)
                    guilds = [g for g in self.guild_ids if shard_of(g, count) == sid]
                    await self._send(session, "READY", {
                        "v": 10, "user": self.users[BOT_ID], "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
                        "session_id": session.id, "resume_gateway_url": self.gateway_url,
                        "application": {"id": str(APP_ID), "flags": 0}, "private_channels": [], "relationships": [],
                        **({"shard": [sid, count]} if session.shard else {}),
                    })
                    for g in guilds:
                        await self._send(session, "GUILD_CREATE", self.guild_payload(g))
                elif op == 6:
                    found = self.sessions.get(data["d"]["session_id"])
                    live = self.shard_sessions.get(found.shard[0]) if found is not None and found.shard and found.shard[1] > 1 else self.session
                    if found is None or found is not live:
                        await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
                        continue
                    self.resumes += 1
                    session = found
                    session.ws = ws
                    for frame in [f for f in session.buffer if f["s"] > (data["d"].get("seq") or 0)]:
                        await ws.send_str(json.dumps(frame))
                    await self._send(session, "RESUMED", {})
                await self._notify()
        finally:
            if session is not None and session.ws is ws:
                session.ws = None
        return ws

    async def _send(self, session: GatewaySession, event: str, data: dict) -> None:
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.buffer.append(frame)
        if session.ws is not None and not session.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await session.ws.send_str(json.dumps(frame))

    async def dispatch(self, event: str, data: dict) -> None:
        """Send a DISPATCH to the bot (to the session of the guild's shard); buffered for a RESUME
        while it is away; lost when its session was invalidated (as on Discord: that is what
        catch-up after a re-IDENTIFY is for)."""
        guild = data.get("guild_id")
        for session in self.sessions_of(int(guild) if guild else None):
            await self._send(session, event, data)
        await self._notify()

    async def reconnect(self) -> None:
        """op 7: the bot must RESUME."""
        ws = self.session.ws if self.session else None
        if ws is not None:
            await ws.send_str(json.dumps({"op": 7, "d": None, "s": None, "t": None}))

    async def invalidate(self, shard: int | None = None) -> None:
        """op 9 (not resumable): the bot must IDENTIFY again (the session of `shard`, when sharded);
        events until then are lost to it."""
        if shard is None:
            session, self.session = self.session, None
        else:
            session = self.shard_sessions.pop(shard, None)
        if session is not None and session.ws is not None:
            await session.ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))

    # ---- REST ----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        if not request.path.startswith("/api/v10/"):
            return await handler(request)
        body = None
        files: list[tuple[str, str, str, bytes]] = []
        raw = await request.read()
        if raw and request.content_type == "application/json":
            body = json.loads(raw)
        elif raw and request.content_type == "multipart/form-data":
            body, files = multipart(request.headers["Content-Type"], raw)
        rec = Recorded(request.method, request.path[len("/api/v10"):], dict(request.query), body, files=files)
        self.requests.append(rec)
        ALL_REQUESTS.append(rec)
        request[BODY] = body
        request[FILES] = files
        fault = self._take_fault(rec)
        if fault is not None and not fault.after_store:
            resp = self._fault_response(fault)
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                resp = json_answer({"message": exc.reason, "code": 0}, exc.status)
            if fault is not None:
                resp = self._fault_response(fault)
        if fault is not None and fault.action != "answer":
            rec.status = -1  # no answer at all
            self.unanswered += 1
            await self._notify()
            if fault.action == "hang":
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(fault.hold):
                        await self._released.wait()
            if request.transport is not None:
                request.transport.abort()  # the connection ends without a status line
            return resp
        rec.status = resp.status
        await self._notify()
        return resp

    def fail(self, method: str, pattern: str, status: int = 500, **kw: Any) -> Fault:
        """Answer the next matching request(s) with `status` (429: retry_after, is_global), or with
        no answer (action "reset" or "hang"; with after_store the message is stored first)."""
        fault = Fault(method, re.compile(pattern), status, **kw)
        self.faults.append(fault)
        return fault

    def _take_fault(self, rec: Recorded) -> Fault | None:
        for fault in self.faults:
            if fault.query and any(rec.query.get(k) != v for k, v in fault.query.items()):
                continue
            if fault.content_has is not None and fault.content_has not in str((rec.body or {}).get("content", "")):
                continue
            if fault.times > 0 and fault.method == rec.method and fault.pattern.search(rec.path):
                fault.times -= 1
                return fault
        return None

    def _fault_response(self, fault: Fault) -> web.Response:
        if fault.status == 429:
            headers = {"Via": "1.1 google", "Retry-After": str(max(1, round(fault.retry_after))),
                       "X-RateLimit-Scope": "global" if fault.is_global else "user"}
            if fault.is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {"message": "You are being rate limited.", "retry_after": fault.retry_after,
                    "global": fault.is_global, "code": 0}
            return json_answer(body, 429, headers)
        return json_answer({"message": "Internal Server Error", "code": 0}, fault.status)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len("/api/v10"):]
        method = request.method
        body = request[BODY] or {}
        for pattern, meth, handler in self._routes:
            if meth != method:
                continue
            m = re.fullmatch(pattern, path)
            if m:
                return await handler(self, request, body, *m.groups())
        return json_answer({"message": f"404: {method} {path}", "code": 0}, 404)

    # handlers ------------------------------------------------------------------------------------

    async def _bot_gateway(self, request, body):
        return json_answer({"url": self.gateway_url, "shards": self.recommended_shards, "session_start_limit": {
            "total": 1000, "remaining": 1000 - self.identifies, "reset_after": 86400000, "max_concurrency": 1}})

    async def _me(self, request, body):
        return json_answer(self.users[BOT_ID])

    async def _app(self, request, body):
        return json_answer({
            "id": str(APP_ID), "name": "strangerbot", "description": "", "icon": None, "bot_public": True,
            "bot_require_code_grant": False, "owner": user_object(OWNER_ID, "owner"), "verify_key": "00" * 32,
            "flags": 0, "team": None, "rpc_origins": [],
        })

    async def _put_commands(self, request, body, app_id, guild_id=None):
        out = []
        for cmd in request[BODY] or []:
            out.append({**cmd, "id": str(snowflake()), "application_id": str(APP_ID), "version": str(snowflake()),
                        "guild_id": guild_id, "default_member_permissions": _str_or_none(cmd.get("default_member_permissions")),
                        "type": cmd.get("type", 1)})
        self.commands = out
        return json_answer(out)

    async def _get_channel(self, request, body, cid):
        channel = self.channels.get(int(cid))
        return json_answer(channel) if channel else json_answer({"message": "Unknown Channel", "code": 10003}, 404)

    async def _create_thread(self, request, body, cid):
        parent = self.channels.get(int(cid))
        if parent is None:
            return json_answer({"message": "Unknown Channel", "code": 10003}, 404)
        tid = snowflake()
        thread = {
            "id": str(tid), "type": body.get("type", 11), "guild_id": parent["guild_id"], "parent_id": cid,
            "owner_id": str(BOT_ID), "name": body["name"], "last_message_id": None, "rate_limit_per_user": 0,
            "message_count": 0, "member_count": 1, "flags": 0,
            "thread_metadata": {"archived": False, "auto_archive_duration": body.get("auto_archive_duration", 1440),
                                "archive_timestamp": now_iso(), "locked": False,
                                "invitable": body.get("invitable", True), "create_timestamp": now_iso()},
            "members": set(),
        }
        self.channels[tid] = thread
        self.messages[tid] = []
        public = {k: v for k, v in thread.items() if k != "members"}
        await self.dispatch("THREAD_CREATE", {**public, "newly_created": True})
        return json_answer(public, 201)

    async def _add_thread_member(self, request, body, tid, uid):
        thread = self.channels.get(int(tid))
        if thread is None:
            return json_answer({"message": "Unknown Channel", "code": 10003}, 404)
        thread["members"].add(int(uid))
        return web.Response(status=204)

    async def _patch_channel(self, request, body, cid):
        channel = self.channels.get(int(cid))
        if channel is None:
            return json_answer({"message": "Unknown Channel", "code": 10003}, 404)
        meta = channel.get("thread_metadata")
        for key in ("archived", "locked", "auto_archive_duration", "invitable"):
            if key in body and meta is not None:
                meta[key] = body[key]
        if "name" in body:
            channel["name"] = body["name"]
        public = self.public(channel)
        await self.dispatch("THREAD_UPDATE" if meta is not None else "CHANNEL_UPDATE", public)
        return json_answer(public)

    def public(self, channel: dict) -> dict:
        return {k: v for k, v in channel.items() if k != "members"}

    async def _typing(self, request, body, cid):
        if int(cid) not in self.channels:
            return json_answer({"message": "Unknown Channel", "code": 10003}, 404)
        return web.Response(status=204)

    def _message(self, cid: int, author: dict, content: str, **extra: Any) -> dict:
        channel = self.channels[cid]
        msg = {
            "id": str(snowflake()), "channel_id": str(cid), "author": author,
            "content": content, "timestamp": now_iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
            "pinned": False, "type": 0, "flags": 0, "components": [], "sticker_items": [],
        }
        if channel.get("guild_id"):  # DM messages carry no guild
            msg["guild_id"] = channel["guild_id"]
        msg.update(extra)
        channel["last_message_id"] = msg["id"]
        self.messages[cid].append(msg)
        return msg

    async def _post_message(self, request, body, cid):
        channel = self.channels.get(int(cid))
        if channel is None:
            return json_answer({"message": "Unknown Channel", "code": 10003}, 404)
        if channel.get("thread_metadata", {}).get("locked"):
            return json_answer({"message": "Thread is locked", "code": 160005}, 403)
        if any(o["id"] == str(BOT_ID) and int(o["deny"]) & SEND_MESSAGES for o in channel.get("permission_overwrites", [])):
            return json_answer({"message": "Missing Permissions", "code": 50013}, 403)
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            for old in self.messages[int(cid)]:
                if old.get("nonce") == nonce and old["author"]["id"] == str(BOT_ID):
                    return json_answer(old)
        if channel.get("thread_metadata", {}).get("archived"):
            channel["thread_metadata"]["archived"] = False
        msg = self._message(int(cid), self.users[BOT_ID], body.get("content", ""), embeds=body.get("embeds", []),
                            components=body.get("components", []), flags=body.get("flags", 0), nonce=nonce,
                            attachments=self._uploaded(int(cid), request[FILES]))
        await self.dispatch("MESSAGE_CREATE", self._with_member(msg, BOT_ID))
        return json_answer(msg)

    async def _get_messages(self, request, body, cid):
        msgs = self.messages.get(int(cid))
        if msgs is None:
            return json_answer({"message": "Unknown Channel", "code": 10003}, 404)
        after = int(request.query.get("after", 0))
        limit = int(request.query.get("limit", 50))
        found = [m for m in msgs if int(m["id"]) > after]
        found = found[:limit] if "after" in request.query else found[-limit:]
        return json_answer(list(reversed(found)))  # newest first, as Discord answers

    async def _list_webhooks(self, request, body, cid):
        if self.webhooks_forbidden:
            return json_answer({"message": "Missing Permissions", "code": 50013}, 403)
        return json_answer([w for w in self.webhooks.values() if w["channel_id"] == cid])

    async def _create_webhook(self, request, body, cid):
        if self.webhooks_forbidden:
            return json_answer({"message": "Missing Permissions", "code": 50013}, 403)
        wid = snowflake()
        hook = {"id": str(wid), "type": 1, "token": f"tok{wid}", "channel_id": cid, "guild_id": self.channels[int(cid)].get("guild_id"),
                "name": body.get("name", "hook"), "avatar": None, "application_id": str(APP_ID),
                "user": self.users[BOT_ID]}
        self.webhooks[wid] = hook
        return json_answer(hook)

    async def _execute_webhook(self, request, body, wid, token):
        if int(wid) == APP_ID:  # an interaction follow-up
            iid = self.tokens.get(token)
            if iid is None:
                return json_answer({"message": "Unknown Webhook", "code": 10015}, 404)
            msg = self._interaction_message(iid, body)
            self.callbacks[iid].append({"type": "followup", **body})
            return json_answer(msg)
        hook = self.webhooks.get(int(wid))
        if hook is None or hook["token"] != token:
            return json_answer({"message": "Unknown Webhook", "code": 10015}, 404)
        cid = int(request.query.get("thread_id") or hook["channel_id"])
        channel = self.channels.get(cid)
        if channel is None:
            return json_answer({"message": "Unknown Channel", "code": 10003}, 404)
        if channel.get("thread_metadata", {}).get("locked"):
            return json_answer({"message": "Thread is locked", "code": 160005}, 403)
        author = {**user_object(int(wid), body.get("username") or hook["name"], bot=True), "discriminator": "0000"}
        msg = self._message(cid, author, body.get("content", ""), webhook_id=str(wid),
                            embeds=body.get("embeds", []), flags=body.get("flags", 0),
                            attachments=self._uploaded(cid, request[FILES]))
        await self.dispatch("MESSAGE_CREATE", msg)
        if request.query.get("wait") in ("true", "1", "True"):
            return json_answer(msg)
        return web.Response(status=204)

    def _interaction_message(self, iid: int, body: dict) -> dict:
        inter = self.interactions[iid]
        user = inter["member"]["user"] if "member" in inter else inter["user"]
        return {
            "id": str(snowflake()), "channel_id": inter["channel_id"], "author": self.users[BOT_ID],
            "content": body.get("content", ""), "timestamp": now_iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": body.get("embeds", []), "pinned": False, "type": 20, "flags": body.get("flags", 0),
            "components": body.get("components", []), "application_id": str(APP_ID),
            "interaction_metadata": {"id": str(iid), "type": inter["type"], "user": user,
                                     "authorizing_integration_owners": {"0": inter.get("guild_id", "0")}},
        }

    async def _callback(self, request, body, iid, token):
        iid_int = int(iid)
        inter = self.interactions.get(iid_int)
        if inter is None or inter["token"] != token:
            return json_answer({"message": "Unknown interaction", "code": 10062}, 404)
        if any(c.get("kind") == "callback" for c in self.callbacks[iid_int]):
            return json_answer({"message": "Interaction has already been acknowledged.", "code": 40060}, 400)
        self.callbacks[iid_int].append({"kind": "callback", **body})
        rtype = body.get("type")
        data = body.get("data") or {}
        ephemeral = bool((data.get("flags") or 0) & 64)
        resource: dict = {"type": rtype}
        interaction = {"id": iid, "type": inter["type"], "response_message_loading": rtype == 5,
                       "response_message_ephemeral": ephemeral}
        if rtype in (4, 7):
            msg = self._interaction_message(iid_int, data)
            resource["message"] = msg
            interaction["response_message_id"] = msg["id"]
        if request.query.get("with_response") in ("1", "true", "True"):
            return json_answer({"interaction": interaction, "resource": resource})
        return web.Response(status=204)

    async def _edit_original(self, request, body, app_id, token):
        iid = self.tokens.get(token)
        if iid is None:
            return json_answer({"message": "Unknown Webhook", "code": 10015}, 404)
        self.callbacks[iid].append({"type": "edit", **body})
        return json_answer(self._interaction_message(iid, body))


    _routes = [
        (r"/gateway/bot", "GET", _bot_gateway),
        (r"/users/@me", "GET", _me),
        (r"/oauth2/applications/@me", "GET", _app),
        (r"/applications/(\d+)/commands", "PUT", _put_commands),
        (r"/applications/(\d+)/guilds/(\d+)/commands", "PUT", _put_commands),
        (r"/channels/(\d+)", "GET", _get_channel),
        (r"/channels/(\d+)", "PATCH", _patch_channel),
        (r"/channels/(\d+)/threads", "POST", _create_thread),
        (r"/channels/(\d+)/thread-members/(\d+)", "PUT", _add_thread_member),
        (r"/channels/(\d+)/typing", "POST", _typing),
        (r"/channels/(\d+)/messages", "POST", _post_message),
        (r"/channels/(\d+)/messages", "GET", _get_messages),
        (r"/channels/(\d+)/messages/(\d+)", "PATCH", RichMessages._patch_message),
        (r"/channels/(\d+)/messages/(\d+)", "DELETE", RichMessages._delete_message),
        (r"/channels/(\d+)/messages/(\d+)/reactions/([^/]+)/@me", "PUT", RichMessages._own_reaction),
        (r"/channels/(\d+)/messages/(\d+)/reactions/([^/]+)/@me", "DELETE", RichMessages._own_reaction),
        (r"/channels/(\d+)/webhooks", "GET", _list_webhooks),
        (r"/channels/(\d+)/webhooks", "POST", _create_webhook),
        (r"/webhooks/(\d+)/([^/]+)", "POST", _execute_webhook),
        (r"/webhooks/(\d+)/([^/]+)/messages/@original", "PATCH", _edit_original),
        (r"/webhooks/(\d+)/([^/]+)/messages/(\d+)", "PATCH", RichMessages._patch_webhook_message),
        (r"/webhooks/(\d+)/([^/]+)/messages/(\d+)", "DELETE", RichMessages._delete_webhook_message),
        (r"/interactions/(\d+)/([^/]+)/callback", "POST", _callback),
    ]

    # ---- acting as users -----------------------------------------------------------------------

    def dm_channel(self, uid: int) -> int:
        """The direct-message channel between the bot and `uid` (type 1, no guild), made once."""
        for cid, channel in self.channels.items():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == str(uid):
                return cid
        cid = snowflake()
        self.channels[cid] = {"id": str(cid), "type": 1, "last_message_id": None, "recipients": [self.users[uid]],
                              "flags": 0}
        self.messages[cid] = []
        return cid

    def _with_member(self, msg: dict, uid: int) -> dict:
        """A gateway MESSAGE_CREATE/UPDATE: guild messages carry the author's member, DMs do not."""
        return {**msg, "member": self.member(uid)} if "guild_id" in msg else dict(msg)

    async def user_message(self, cid: int, uid: int, content: str, **extra: Any) -> dict:
        """A user posts in a channel, thread or DM; the bot receives MESSAGE_CREATE."""
        author = extra.pop("author", self.users[uid])
        msg = self._message(cid, author, content, **extra)
        await self.dispatch("MESSAGE_CREATE", self._with_member(msg, uid))
        return msg

    async def user_reply(self, cid: int, uid: int, content: str, to: dict, **extra: Any) -> dict:
        """A user answers `to` with Discord's reply (type 19, message_reference, referenced_message)."""
        ref = {"type": 0, "message_id": to["id"], "channel_id": str(cid), "fail_if_not_exists": False}
        if "guild_id" in to:
            ref["guild_id"] = to["guild_id"]
        return await self.user_message(cid, uid, content, type=19, message_reference=ref,
                                       referenced_message=dict(to), **extra)

    async def user_edit(self, msg: dict, content: str) -> None:
        msg["content"] = content
        msg["edited_timestamp"] = now_iso()
        await self.dispatch("MESSAGE_UPDATE", self._with_member(msg, int(msg["author"]["id"])))

    async def user_delete(self, msg: dict) -> None:
        """The author deletes a message: it leaves the channel's history; the bot gets MESSAGE_DELETE."""
        await self._delete(int(msg["channel_id"]), msg)

    async def typing(self, cid: int, uid: int) -> None:
        data = {"channel_id": str(cid), "user_id": str(uid), "timestamp": int(time.time())}
        if self.channels[cid].get("guild_id"):
            data.update(guild_id=self.channels[cid]["guild_id"], member=self.member(uid))
        await self.dispatch("TYPING_START", data)

    def _interaction(self, uid: int, cid: int, itype: int, data: dict, message: dict | None = None) -> dict:
        iid = snowflake()
        token = f"itok{iid}"
        channel = self.public(self.channels[cid])
        payload = {
            "id": str(iid), "application_id": str(APP_ID), "type": itype, "data": data,
            "channel": channel, "channel_id": str(cid),
            "token": token, "version": 1, "app_permissions": "2248473465835073", "locale": "en-US",
            "entitlements": [], "attachment_size_limit": 10485760,
        }
        if channel["type"] == 1:  # a DM: the user, not a member; context BOT_DM
            payload.update(user=self.users[uid], context=1, authorizing_integration_owners={"0": str(uid)})
        else:
            payload.update(guild_id=channel["guild_id"], guild_locale="en-US", context=0,
                           member={**self.member(uid), "permissions": str(self.permissions.get(uid, MEMBER_PERMISSIONS))},
                           authorizing_integration_owners={"0": channel["guild_id"]})
        if message is not None:
            payload["message"] = message
        self.interactions[iid] = payload
        self.tokens[token] = iid
        self.callbacks[iid] = []
        return payload

    async def slash(self, uid: int, cid: int, sub: str, **options: Any) -> dict:
        """A user runs /stranger <sub> in a channel or thread; returns the INTERACTION_CREATE payload."""
        cmd = next((c for c in self.commands if c["name"] == "stranger"), None)
        opts = [{"name": k, "type": 3, "value": v} for k, v in options.items()]
        data = {"id": cmd["id"] if cmd else str(snowflake()), "name": "stranger", "type": 1,
                "options": [{"name": sub, "type": 1, "options": opts}]}
        payload = self._interaction(uid, cid, 2, data)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def admin(self, uid: int, cid: int, *path: str, **options: Any) -> dict:
        """A user runs /stranger-admin <path...> (e.g. "policy", "add-word"); an int option is a user
        (sent with its resolved user, as Discord does), a bool a boolean, anything else a string."""
        cmd = next((c for c in self.commands if c["name"] == "stranger-admin"), None)
        resolved: dict = {}
        opts = []
        for name, value in options.items():
            if isinstance(value, bool):
                opts.append({"name": name, "type": 5, "value": value})
            elif isinstance(value, int):
                opts.append({"name": name, "type": 6, "value": str(value)})
                resolved.setdefault("users", {})[str(value)] = self.users[value]
            else:
                opts.append({"name": name, "type": 3, "value": value})
        tree: list[dict] = opts
        for depth, name in enumerate(reversed(path)):
            tree = [{"name": name, "type": 1 if depth == 0 else 2, "options": tree}]
        data = {"id": cmd["id"] if cmd else str(snowflake()), "name": "stranger-admin", "type": 1, "options": tree}
        if resolved:
            data["resolved"] = resolved
        payload = self._interaction(uid, cid, 2, data)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def click(self, uid: int, message: dict, custom_id: str) -> dict:
        """A user clicks a button of `message`."""
        payload = self._interaction(uid, int(message["channel_id"]), 3, {"custom_id": custom_id, "component_type": 2},
                                    message=message)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def replay(self, payload: dict) -> None:
        """The gateway delivers the same interaction again."""
        await self.dispatch("INTERACTION_CREATE", payload)

    async def archive_thread(self, tid: int) -> None:
        self.channels[tid]["thread_metadata"]["archived"] = True
        await self.dispatch("THREAD_UPDATE", self.public(self.channels[tid]))

    async def delete_thread(self, tid: int) -> None:
        thread = self.channels.pop(tid)
        await self.dispatch("THREAD_DELETE", {"id": str(tid), "guild_id": thread["guild_id"], "parent_id": thread["parent_id"],
                                              "type": thread["type"]})

    async def leave_thread(self, tid: int, uid: int) -> None:
        self.channels[tid]["members"].discard(uid)
        await self.dispatch("THREAD_MEMBERS_UPDATE", {"id": str(tid), "guild_id": self.channels[tid]["guild_id"], "member_count": 1,
                                                      "removed_member_ids": [str(uid)]})

    # ---- reading what happened -----------------------------------------------------------------

    def threads(self) -> list[dict]:
        return [c for c in self.channels.values() if c["type"] in (11, 12)]

    def bot_messages(self, cid: int) -> list[dict]:
        """Messages the bridge made visible in a channel (bot or webhook authored)."""
        return [m for m in self.messages.get(cid, []) if m["author"].get("bot")]

    def writes(self, method: str | None = None, pattern: str = "") -> list[Recorded]:
        return [r for r in self.requests if (method is None or r.method == method) and re.search(pattern, r.path)]

    def replies(self, payload: dict) -> list[dict]:
        """Interaction responses and follow-ups given to one interaction."""
        return self.callbacks.get(int(payload["id"]), [])
