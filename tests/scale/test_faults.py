"""Redis faults under two daemon processes: restarted with AOF (nothing lost or doubled), restarted
empty (one notice per side), unreachable (starts refused plainly, chats ended once, /healthz, recovery)."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import pytest

from tests.redisproc import RedisServer
from tests.web.client import RawClient

from .daemon import Daemon, pair_web


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


async def healthz(http, d: Daemon) -> tuple[int, str]:
    async with http.get(d.health + "/healthz") as response:
        return response.status, await response.text()


async def until_healthy(http, d: Daemon) -> None:
    async with asyncio.timeout(30):
        while (await healthz(http, d))[0] != 200:
            await asyncio.sleep(0.1)


async def test_redis_restarted_with_aof_loses_and_doubles_nothing(tmp_path, http):
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    a, b = Daemon(tmp_path, server.url, "a", lease=3.0), Daemon(tmp_path, server.url, "b", lease=3.0)
    try:
        await asyncio.gather(a.start(), b.start())
        x, y = await pair_web(http, a, b)
        sent = [f"aof-{secrets.token_hex(4)}-{i}" for i in range(60)]
        for token in sent[:20]:
            assert await x.post("/send", msg=token) == (200, "win")
        server.stop()  # appendfsync always: what was written is on disk
        for token in sent[20:40]:  # taken by a's session; written to Redis once it is back
            assert await x.post("/send", msg=token) == (200, "win")
        server.start()
        for d in (a, b):
            await until_healthy(http, d)
        for token in sent[40:]:
            assert await x.post("/send", msg=token) == (200, "win")
        got = []
        while len(got) < len(sent):
            got.append((await y.until("gotMessage", timeout=30))[1])
        assert got == sent  # delivered == sent, in order, none twice
        assert await y.post("/send", msg="and back") == (200, "win")
        assert (await x.until("gotMessage"))[1] == "and back"
        assert "strangerDisconnected" not in x.names() + y.names()
    finally:
        await asyncio.gather(a.stop(), b.stop())
        server.stop()


async def test_redis_restarted_empty_ends_every_chat_with_one_notice_per_side(tmp_path, redis_server, http):
    a, b = Daemon(tmp_path, redis_server.url, "a", lease=3.0), Daemon(tmp_path, redis_server.url, "b", lease=3.0)
    try:
        await asyncio.gather(a.start(), b.start())
        x, y = await pair_web(http, a, b)
        redis_server.restart()  # no persistence: it comes back empty
        for client in (x, y):
            notice = await client.until("serverMessage", timeout=30)
            assert "lost its shared state" in notice[1]
            await client.until("strangerDisconnected")
            assert client.names().count("strangerDisconnected") == 1
            assert [e for e in client.events if "lost its shared state" in str(e)] == [notice]  # said once
        one, two = await pair_web(http, b, a)  # the pool works again
        assert await one.post("/send", msg="fresh") == (200, "win")
        assert (await two.until("gotMessage"))[1] == "fresh"
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_redis_unreachable_refuses_starts_ends_chats_once_and_recovers(tmp_path, redis_server, http):
    grace = "outage_grace = 1.5"
    a, b = Daemon(tmp_path, redis_server.url, "a", lease=3.0, hub=grace), Daemon(tmp_path, redis_server.url, "b", lease=3.0, hub=grace)
    try:
        await asyncio.gather(a.start(), b.start())
        x, y = await pair_web(http, a, b)
        redis_server.stop()
        async with asyncio.timeout(30):  # /healthz says why
            while (status := await healthz(http, a))[0] == 200:
                await asyncio.sleep(0.1)
        assert "unreachable" in status[1]
        late = RawClient(http, a.url)
        await late.start()
        notice = await late.until("serverMessage")
        assert "cannot reach its database right now" in notice[1]
        await late.until("strangerDisconnected")
        for client in (x, y):  # after the grace, one notice each
            notice = await client.until("serverMessage", timeout=30)
            assert "could not be reached for too long" in notice[1]
            await client.until("strangerDisconnected")
            assert client.names().count("strangerDisconnected") == 1
            assert [e for e in client.events if "too long" in str(e)] == [notice]
        redis_server.start()
        for d in (a, b):
            await until_healthy(http, d)  # reconnected by itself
        one, two = await pair_web(http, a, b)
        assert await two.post("/send", msg="after the outage") == (200, "win")
        assert (await one.until("gotMessage"))[1] == "after the outage"
    finally:
        await asyncio.gather(a.stop(), b.stop())
