"""Matrix users with encryption: real matrix-nio clients (vodozemac) with their own key store, and the raw room as Synapse stores it."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from typing import Any

from nio import AsyncClient, AsyncClientConfig, LoginResponse, RoomSendResponse, SyncResponse
from nio.store import SqliteStore
from tests.scratch import scratch_dir

from .conftest import Matrix, MxUser, unique

__all__ = ["CryptoUser", "crypto_user", "raw_events", "second_device"]


class CryptoUser(MxUser):
    """A person on Matrix whose client encrypts: it uploads its keys, fetches others', and decrypts its timeline."""

    def __init__(self, url: str, user_id: str, token: str, device_id: str) -> None:
        super().__init__(url, user_id, token)
        self.url = url
        self.token = token
        self.store = scratch_dir("sb-user-keys-")
        self.client = AsyncClient(
            url,
            user_id,
            device_id=device_id,
            store_path=self.store,
            config=AsyncClientConfig(max_limit_exceeded=None, max_timeouts=None, encryption_enabled=True, store=SqliteStore),
        )
        self.client.restore_login(user_id, device_id, token)

    async def start(self) -> None:
        resp = await self.client.sync(timeout=0, full_state=True)
        assert isinstance(resp, SyncResponse), resp
        self.since = resp.next_batch
        await self.housekeeping()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def housekeeping(self) -> None:
        client = self.client
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        await client.send_to_device_messages()

    async def synced(self, resp: SyncResponse) -> None:
        try:
            await self.housekeeping()
        except Exception:  # noqa: BLE001 - Synapse may be restarting in a test; the next sync retries
            pass

    async def create_room(self, invite: list[str] = (), *, encrypted: bool = True, name: str | None = None) -> str:
        return await super().create_room(invite, encrypted=encrypted, name=name)

    async def send(self, rid: str, content: dict[str, Any] | str, kind: str = "m.room.message") -> str:
        if isinstance(content, str):
            content = {"msgtype": "m.text", "body": content}
        if rid not in self.client.rooms:  # a room created this very moment: wait until our sync shows it
            await self.wait_for(lambda: rid in self.client.rooms)
        resp = await self.client.room_send(rid, kind, content, ignore_unverified_devices=True)
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id


async def crypto_user(matrix: Matrix, prefix: str = "e") -> CryptoUser:
    """A new account whose client encrypts (its own key store in a temp directory)."""
    data = await asyncio.to_thread(matrix.server.register, unique(prefix))
    user = CryptoUser(matrix.server.url, data["user_id"], data["access_token"], data["device_id"])
    await user.start()
    matrix.users.append(user)
    return user


async def second_device(matrix: Matrix, user: CryptoUser) -> CryptoUser:
    """The same account logged in again (password "pw"): a second device with its own keys."""
    login = AsyncClient(matrix.server.url, user.user_id)
    resp = await login.login("pw", device_name="second")
    await login.close()
    assert isinstance(resp, LoginResponse), resp
    other = CryptoUser(matrix.server.url, user.user_id, resp.access_token, resp.device_id)
    await other.start()
    matrix.users.append(other)
    return other


def _get(url: str, token: str) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


async def raw_events(url: str, token: str, rid: str) -> list[dict[str, Any]]:
    """Every event of the room as Synapse stores it (the ciphertext, not what a client decrypted), oldest first."""
    events: list[dict[str, Any]] = []
    start = None
    for _ in range(50):
        query = {"dir": "b", "limit": "500"}
        if start:
            query["from"] = start
        page = await asyncio.to_thread(
            _get, f"{url}/_matrix/client/v3/rooms/{urllib.parse.quote(rid)}/messages?{urllib.parse.urlencode(query)}", token
        )
        events.extend(page.get("chunk", []))
        start = page.get("end")
        if not start or not page.get("chunk"):
            break
    events.reverse()
    return events
