"""Redis faults under two daemon processes: restarted with AOF (nothing lost or doubled), a reply lost
after its write (nothing doubled), restarted empty (one notice per side), stopped for 30 s (starts refused
plainly, chats ended once, /healthz, recovery)."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import pytest

import redis.asyncio as aioredis

from tests.redisproc import RedisServer
from tests.redisproxy import ReplyLosingProxy
from tests.web.client import RawClient

from .daemon import PREFIX, Daemon, pair_web


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
        try:
            while len(got) < len(sent):
                got.append((await y.until("gotMessage", timeout=30))[1])
        except TimeoutError:
            raise AssertionError(f"{len(got)} of {len(sent)}: {got!r} {y.events[-5:]!r}\n" + "".join(a.log)[-3000:] + "\n=====B\n" + "".join(b.log)[-5000:]) from None
        assert got == sent  # delivered == sent, in order, none twice
        assert await y.post("/send", msg="and back") == (200, "win")
        assert (await x.until("gotMessage"))[1] == "and back"
        assert "strangerDisconnected" not in x.names() + y.names()
    finally:
        await asyncio.gather(a.stop(), b.stop())
        server.stop()


async def queued_anywhere(redis_url: str, token: str) -> bool:
    """Whether some web client's event queue in Redis holds `token`."""
    r = aioredis.from_url(redis_url, decode_responses=True)
    try:
        async for key in r.scan_iter(f"{PREFIX}web:*q:*"):
            if any(token in item for item in await r.lrange(key, 0, -1)):
                return True
        return False
    finally:
        await r.aclose()


async def test_events_written_to_redis_whose_reply_was_lost_are_shown_once(tmp_path, redis_server, http):
    # b reaches Redis through a proxy that loses the reply to the push of `lost` (written all the same)
    # and then cuts b off: b keeps the event in memory and shows it from there; once Redis is back, the
    # copy in Redis must not be shown again.
    proxy = await ReplyLosingProxy(redis_server.port).start()
    a = Daemon(tmp_path, redis_server.url, "a", lease=6.0)
    b = Daemon(tmp_path, proxy.url, "b", lease=6.0)
    try:
        await asyncio.gather(a.start(), b.start())
        x, y = await pair_web(http, a, b)
        before, lost, after = (f"{name}-{secrets.token_hex(4)}" for name in ("before", "lost", "after"))
        assert await x.post("/send", msg=before) == (200, "win")
        assert (await y.until("gotMessage", timeout=30))[1] == before
        proxy.arm(lost.encode())
        assert await x.post("/send", msg=lost) == (200, "win")
        async with asyncio.timeout(30):
            await proxy.cut.wait()
        assert await queued_anywhere(redis_server.url, lost)  # the push did take effect in Redis
        assert (await y.until("gotMessage", timeout=30))[1] == lost  # shown from b's memory
        proxy.heal()
        await until_healthy(http, b)
        assert await x.post("/send", msg=after) == (200, "win")
        await y.until(lambda e: e == ["gotMessage", after], timeout=30)
        assert [e[1] for e in y.events if e[0] == "gotMessage"] == [before, lost, after]  # once each, in order
        assert not await queued_anywhere(redis_server.url, lost)
        assert "strangerDisconnected" not in x.names() + y.names()
    finally:
        await asyncio.gather(a.stop(), b.stop())
        await proxy.stop()


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


OUTAGE = 30.0  # seconds Redis stays stopped (issue 10): three times the hub's default outage_grace (10 s)


def kinds(events: list[dict], *names: str) -> list[dict]:
    return [e for e in events if e["type"] in names]


async def refused_start(http, d: Daemon) -> str:
    """A web client starting on `d` now: the notice it is told (and it ends at once)."""
    late = RawClient(http, d.url)
    await late.start()
    notice = await late.until("serverMessage")
    await late.until("strangerDisconnected")
    assert "connected" not in late.names()
    return notice[1]


async def test_redis_stopped_for_30_s_refuses_starts_ends_chats_once_and_recovers(tmp_path, http):
    # The hub's default outage_grace: running chats end after it, and the outage lasts well beyond.
    # AOF on: Redis comes back with its data, so this is the outage alone (restarted empty is above).
    redis_server = RedisServer(tmp_path / "redis", persistent=True).start()
    a, b = Daemon(tmp_path, redis_server.url, "a", lease=3.0), Daemon(tmp_path, redis_server.url, "b", lease=3.0)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.gather(a.start(), b.start())
        x, y = await pair_web(http, a, b)  # a web chat across the two instances
        a.user("r", "Start")  # and a chat of the file platform's room "r" on a with b's room "r"
        await a.until("r", lambda e: kinds(e, "Waiting"))
        b.user("r", "Start")
        for d in (a, b):
            await d.until("r", lambda e: kinds(e, "Connected"))
        redis_server.stop()
        stopped = loop.time()
        async with asyncio.timeout(30):  # /healthz says why
            while (status := await healthz(http, a))[0] == 200:
                await asyncio.sleep(0.1)
        assert "unreachable" in status[1]
        assert "cannot reach its database right now" in await refused_start(http, a)
        for client in (x, y):  # after the grace, one notice each
            notice = await client.until("serverMessage", timeout=30)
            assert "could not be reached for too long" in notice[1]
            await client.until("strangerDisconnected")
        for d in (a, b):
            await d.until("r", lambda e: kinds(e, "Disconnected"))
        # Redis stays stopped for OUTAGE seconds in all (the fault under test, not a wait for an event).
        await asyncio.sleep(max(0.0, stopped + OUTAGE - loop.time()))
        for d in (a, b):  # still refused plainly at the end of the outage, and /healthz still says why
            status = await healthz(http, d)
            assert status[0] != 200 and "unreachable" in status[1]
            assert "cannot reach its database right now" in await refused_start(http, d)
        redis_server.start()
        for d in (a, b):
            await until_healthy(http, d)  # reconnected by itself
        a.user("r", "Start")  # the marker: both rooms chat again, with each other
        await a.until("r", lambda e: len(kinds(e, "Waiting")) == 2)
        b.user("r", "Start")
        for d in (a, b):
            events = await d.until("r", lambda e: len(kinds(e, "Connected")) == 2)
            marker = [i for i, e in enumerate(events) if e["type"] == "Connected"][1]
            before = events[:marker]
            ended = kinds(before, "ServerNotice", "Disconnected")  # over the whole outage: one notice, one end
            assert [e["type"] for e in ended] == ["ServerNotice", "Disconnected"], ended
            assert "could not be reached for too long" in ended[0]["text"]
        token = f"after-{secrets.token_hex(4)}"
        a.user("r", "Message", text=token)
        await b.until("r", lambda e: any(m.get("text") == token for m in kinds(e, "Message")))
        for client in (x, y):  # the web clients too: one notice, one end
            assert client.names().count("strangerDisconnected") == 1
            assert sum("too long" in str(e) for e in client.events) == 1
        one, two = await pair_web(http, a, b)
        assert await two.post("/send", msg="after the outage") == (200, "win")
        assert (await one.until("gotMessage"))[1] == "after the outage"
    finally:
        await asyncio.gather(a.stop(), b.stop())
        redis_server.stop()
