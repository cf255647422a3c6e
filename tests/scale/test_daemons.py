"""Daemon processes sharing one real redis-server: web clients on different instances meet and talk."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.web.client import RawClient

from .daemon import PREFIX, Daemon, pair_web


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


@contextlib.asynccontextmanager
async def daemons(tmp_path, redis_server, *names: str, **kw):
    started = [Daemon(tmp_path, redis_server.url, name, **kw) for name in names]
    try:
        await asyncio.gather(*(d.start() for d in started))
        yield started
    finally:
        for d in started:
            await d.stop()


async def receive(client: RawClient, n: int) -> list[str]:
    got: list[str] = []
    while len(got) < n:
        got.append((await client.until("gotMessage", timeout=30))[1])
    return got


async def test_web_clients_on_two_instances_lose_nothing(tmp_path, redis_server, http):
    async with daemons(tmp_path, redis_server, "a", "b") as (a, b):
        x, y = await pair_web(http, a, b)
        tokens = {c: [f"{c.url[-5:]}-{secrets.token_hex(6)}-{i}" for i in range(150)] for c in (x, y)}

        async def send_all(client: RawClient) -> None:
            for token in tokens[client]:
                assert await client.post("/send", msg=token) == (200, "win")

        got_y, got_x, *_ = await asyncio.gather(receive(y, 150), receive(x, 150), send_all(x), send_all(y))
        assert got_y == tokens[x]  # delivered == sent, in order, nothing twice
        assert got_x == tokens[y]
        assert await x.post("/disconnect") == (200, "win")
        await y.until("strangerDisconnected")
        assert y.names().count("strangerDisconnected") == 1
        # both daemons' web pages say they are healthy
        for d in (a, b):
            async with http.get(d.url + "/healthz") as response:
                assert response.status == 200, await response.text()


async def test_sigkilled_instance_is_noticed_by_its_partner_once_and_leaves_no_ghost_waiter(tmp_path, redis_server, http):
    # lease 6 s: the three sends below reach a's stream well before a's lease runs out, even on a loaded machine
    async with daemons(tmp_path, redis_server, "a", "b", lease=6.0) as (a, b):
        x, y = await pair_web(http, a, b)
        assert await x.post("/send", msg="before the crash") == (200, "win")
        assert (await y.until("gotMessage"))[1] == "before the crash"
        ghost = RawClient(http, a.url)  # waits on a, which is killed with it
        await ghost.start()
        await ghost.until("waiting")
        await a.kill()
        lost = [f"into-the-void-{i}" for i in range(3)]  # a can no longer read them
        for token in lost:
            assert await y.post("/send", msg=token) == (200, "win")
        redis = aioredis.Redis(port=redis_server.port, decode_responses=True)
        try:
            async with asyncio.timeout(30):  # written to a's stream, where nobody reads them now
                while await redis.xlen(f"{PREFIX}hub:stream:a") < len(lost) and not y.names().count("strangerDisconnected"):
                    await y.poll()
        finally:
            await redis.aclose()
        await y.until("strangerDisconnected", timeout=30)  # once a's lease expired
        assert y.names().count("strangerDisconnected") == 1
        told = [e for e in y.events if e[0] == "serverMessage" and "not delivered" in e[1]]
        assert len(told) == 1 and "Your last 3 messages were not delivered" in told[0][1] and lost[0] in told[0][1]
        assert (await y.post("/events"))[0] == 400  # the chat ended: the id is gone, nothing more can come
        redis = aioredis.Redis(port=redis_server.port, decode_responses=True)
        try:
            async with asyncio.timeout(30):  # the ghost's pool entry runs out with its lease
                while [k async for k in redis.scan_iter(f"{PREFIX}pool:entry:*")]:
                    await asyncio.sleep(0.1)
        finally:
            await redis.aclose()
        one, two = RawClient(http, b.url), RawClient(http, b.url)
        await one.start()
        await one.until("waiting")
        await two.start()
        await one.until("connected")  # with two, not with the dead instance's ghost
        await two.until("connected")
        assert await two.post("/send", msg="no ghost") == (200, "win")
        assert (await one.until("gotMessage"))[1] == "no ghost"


async def test_a_second_instance_with_a_live_name_refuses_to_start(tmp_path, redis_server):
    async with daemons(tmp_path, redis_server, "a") as (a,):
        twin = Daemon(tmp_path, redis_server.url, "a")  # the same configuration, a second process
        await twin.start(wait_listening=False)
        assert await twin.wait() == 2
        assert any("bridge.instance: another live instance named 'a'" in line for line in twin.log), "".join(twin.log)
        assert a.proc is not None and a.proc.returncode is None  # the first one runs on
