"""Fixtures: one real Synapse per test session, users that are real matrix-nio clients, a bridge bot."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, AsyncClientConfig, RoomCreateResponse, RoomSendResponse, SyncResponse, TypingNoticeEvent

from tests.helpers import RECORDING
from tests.scratch import scratch_dir

from .synapse import Synapse

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


@pytest.fixture(scope="session")
def synapse():
    """A real Synapse with relaxed rate limits. If it cannot start, every test using it fails."""
    with tempfile.TemporaryDirectory(prefix="sb-synapse-") as tmp:
        server = Synapse(Path(tmp))
        server.start()  # raises (the test errors) when Synapse is missing or broken
        try:
            yield server
        finally:
            server.kill()


class MxUser:
    """A person on Matrix: a real matrix-nio client whose sync loop records every event it sees."""

    def __init__(self, url: str, user_id: str, token: str) -> None:
        self.user_id = user_id
        self.client = AsyncClient(url, user_id, config=AsyncClientConfig(max_limit_exceeded=None, max_timeouts=None))
        self.client.access_token = token
        self.client.user_id = user_id
        self.timeline: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.typing: dict[str, list[str]] = defaultdict(list)  # room -> typing users now
        self.typing_log: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        self.invites: list[str] = []
        self.undecrypted: list[dict[str, Any]] = []
        self.changed = asyncio.Condition()
        self.task: asyncio.Task | None = None
        self.since: str | None = None

    async def start(self) -> None:
        resp = await self.client.sync(timeout=0)
        assert isinstance(resp, SyncResponse), resp
        self.since = resp.next_batch
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                resp = await self.client.sync(timeout=1000, since=self.since)
            except Exception:  # noqa: BLE001 - Synapse may be restarting in a test
                await asyncio.sleep(0.2)
                continue
            if not isinstance(resp, SyncResponse):
                await asyncio.sleep(0.2)
                continue
            self.since = resp.next_batch
            await self.synced(resp)
            async with self.changed:
                for rid, info in resp.rooms.join.items():
                    for e in info.timeline.events:
                        self.timeline[rid].append(e.source)
                        if e.source.get("type") == "m.room.encrypted":
                            self.undecrypted.append(e.source)  # what this client could not decrypt
                    for e in info.ephemeral:
                        if isinstance(e, TypingNoticeEvent):
                            self.typing[rid] = list(e.users)
                            self.typing_log[rid].append(tuple(e.users))
                for rid in resp.rooms.invite:
                    self.invites.append(rid)
                for rid, info in resp.rooms.leave.items():
                    for e in info.timeline.events:
                        self.timeline[rid].append(e.source)
                self.changed.notify_all()

    async def synced(self, resp: SyncResponse) -> None:
        """After each sync, before its events are recorded (an encrypting client sends its keys here)."""

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
            with __import__("contextlib").suppress(asyncio.CancelledError):
                await self.task
        await self.client.close()

    # ---- acting ------------------------------------------------------------------------------

    async def create_room(self, invite: list[str] = (), *, encrypted: bool = False, name: str | None = None) -> str:
        initial = []
        if encrypted:
            initial.append({"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}})
        resp = await self.client.room_create(invite=list(invite), initial_state=initial, name=name)
        assert isinstance(resp, RoomCreateResponse), resp
        return resp.room_id

    async def send(self, rid: str, content: dict[str, Any] | str, kind: str = "m.room.message") -> str:
        if isinstance(content, str):
            content = {"msgtype": "m.text", "body": content}
        resp = await self.client.room_send(rid, kind, content)
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id

    async def set_typing(self, rid: str, on: bool = True) -> None:
        await self.client.room_typing(rid, on, timeout=30000)

    # ---- observing ---------------------------------------------------------------------------

    def messages(self, rid: str, sender: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.timeline[rid]
            if e.get("type") == "m.room.message" and (sender is None or e.get("sender") == sender)
        ]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        async with asyncio.timeout(timeout):
            async with self.changed:
                while True:
                    found = predicate()
                    if found:
                        return found
                    await self.changed.wait()

    async def wait_message(
        self, rid: str, sender: str, test: Callable[[dict[str, Any]], bool] | str, timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first m.room.message from `sender` whose content matches (a body substring or a test)."""
        check = (lambda c: test in c.get("body", "")) if isinstance(test, str) else test

        def find():
            for e in self.messages(rid, sender):
                if check(e.get("content", {})):
                    return e
            return None

        return await self.wait_for(find, timeout)

    async def wait_member(self, rid: str, user: str, membership: str, timeout: float = 20.0) -> dict[str, Any]:
        def find():
            for e in self.timeline[rid]:
                if (
                    e.get("type") == "m.room.member"
                    and e.get("state_key") == user
                    and e.get("content", {}).get("membership") == membership
                ):
                    return e
            return None

        return await self.wait_for(find, timeout)


class Matrix:
    """Makes users on the session's Synapse and closes them after the test."""

    def __init__(self, server: Synapse) -> None:
        self.server = server
        self.users: list[MxUser] = []

    async def user(self, prefix: str = "u") -> MxUser:
        data = await asyncio.to_thread(self.server.register, unique(prefix))
        user = MxUser(self.server.url, data["user_id"], data["access_token"])
        await user.start()
        self.users.append(user)
        return user

    async def account(self, prefix: str = "bot") -> dict[str, Any]:
        """A registered account that no test client syncs (for the bridge's bot)."""
        return await asyncio.to_thread(self.server.register, unique(prefix))

    async def close(self) -> None:
        for user in self.users:
            await user.close()


@pytest.fixture
async def matrix(synapse):
    m = Matrix(synapse)
    try:
        yield m
    finally:
        await m.close()


def bridge_config(url: str, bot: dict[str, Any], **matrix: Any) -> dict[str, Any]:
    """A config dict with the Matrix platform (as `mx`), a recording platform (`rec`) and the hub."""
    table = {
        "plugin": "matrix",
        "homeserver": url,
        "user_id": bot["user_id"],
        "access_token": bot["access_token"],
        "device_id": bot["device_id"],
        "sync_timeout": 1.0,
        "request_timeout": 10.0,
        "crypto_store": scratch_dir("sb-crypto-"),  # each bridge its own key store
    }
    table.update(matrix)
    return {
        "platforms": {"mx": table, "rec": {"plugin": RECORDING}},
        "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0, "interest_fallback": 0}},
    }


def notice_with(text: str):
    """A content test: an m.notice whose body contains `text`."""
    return lambda c: c.get("msgtype") == "m.notice" and text in c.get("body", "")


async def paired(bridge, user: MxUser, bot_id: str, rec_room: str = "r", start: str = "!stranger start") -> str:
    """A room of `user` with the bot, chatting with the recording platform's room `rec_room`."""
    from bridge.events import Connected, Start

    rec = bridge.platforms["rec"]
    rid = await user.create_room([bot_id])
    await user.wait_message(rid, bot_id, notice_with("!stranger start"))
    await user.send(rid, start)
    await user.wait_message(rid, bot_id, notice_with("Looking for someone"))
    rec.send(rec_room, Start())
    await rec.wait_for(rec_room, Connected, timeout=20)
    await user.wait_message(rid, bot_id, notice_with("You're now chatting"))
    return rid
