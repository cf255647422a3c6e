"""Redis faults against real redis-server processes: typed fail-fast errors, /healthz says why, reconnects by itself."""

from __future__ import annotations

import asyncio
import inspect
import json

import aiohttp
import pytest
import redis.asyncio as aioredis

from bridge.events import Room
from bridge.store import SessionRecord, StoreUnavailable, open_store, parse_store_url
from tests.helpers import RECORDING, config
from tests.redisproc import RedisServer

LEASE = 0.6


async def open_redis(url: str, instance: str = "a"):
    return await open_store(parse_store_url(url), prefix="sbtest:", instance=instance, lease=LEASE, environ={})


async def until(predicate, timeout: float = 15.0) -> None:
    """Wait for a condition that the code under test makes true by itself."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if await result if inspect.isawaitable(result) else result:
                return
            await asyncio.sleep(0.05)


async def test_calls_fail_fast_with_a_typed_error_while_redis_is_down_and_work_again_after(tmp_path):
    server = RedisServer(tmp_path / "r", persistent=True).start()
    store = await open_redis(server.url)
    try:
        await store.save_session(SessionRecord(Room("web", "kept"), "chatting", "hub", "h", {}))
        await store.set("platform:web", "k", "v")
        server.stop()
        with pytest.raises(StoreUnavailable, match=r"store: Redis at redis://127\.0\.0\.1:\d+/0 unreachable"):
            await store.get("platform:web", "k")
        assert "unreachable" in (store.problem() or "")
        for call in (store.sessions(), store.save_session(SessionRecord(Room("web", "x"), "searching", "hub")), store.set("n", "k", "v")):
            with pytest.raises(StoreUnavailable):  # refused at once: nothing is sent while Redis is known down
                await call
        server.start()  # same port, its AOF replayed
        await until(lambda: store.problem() is None)  # nobody called the store: it reconnected by itself
        assert [(r.room.id, r.handle) for r in await store.sessions()] == [("kept", "h")]
        assert await store.get("platform:web", "k") == "v"
        assert (await store.instances())["a"] is True  # its lease (expired meanwhile) is held again
    finally:
        await store.close()
        server.stop()


async def test_redis_restarted_empty_is_noticed_and_the_prefix_marked_again(redis_server):
    store = await open_redis(redis_server.url)
    lost = asyncio.Event()

    async def data_lost() -> None:
        lost.set()

    store.on_data_lost = data_lost
    try:
        await store.save_session(SessionRecord(Room("web", "gone"), "chatting", "hub", "h", {}))
        redis_server.restart()  # no persistence: it comes back empty
        async with asyncio.timeout(15):
            await lost.wait()  # noticed by the heartbeat, without any store call
        await until(lambda: store.problem() is None)
        assert await store.sessions() == []
        raw = aioredis.Redis(port=redis_server.port, decode_responses=True)
        try:
            meta = await raw.hgetall("sbtest:meta")
            assert (meta["app"], meta["schema"]) == ("stranger-bridge", "1") and meta["epoch"] == store.epoch
            assert await raw.exists("sbtest:instance:a") == 1
        finally:
            await raw.aclose()
    finally:
        await store.close()


async def test_a_lease_taken_by_another_process_refuses_store_calls_until_the_name_is_free(redis_server):
    first = await open_redis(redis_server.url, "web-1")
    raw = aioredis.Redis(port=redis_server.port, decode_responses=True)
    key = "sbtest:instance:web-1"
    intruder = json.dumps({"token": "intruder", "host": "elsewhere", "pid": 1, "since": 0})
    try:
        # As if web-1 had been cut off for longer than its lease and another process took the name.
        await raw.set(key, intruder, px=60_000)
        await until(lambda: first.problem() is not None)  # its next heartbeat finds the lease taken
        assert first.problem() == "store: another process took the lease of instance 'web-1'"
        with pytest.raises(StoreUnavailable, match="another process took the lease"):
            await first.save_session(SessionRecord(Room("web", "stale"), "chatting", "hub"))  # not into theirs
        assert await raw.get(key) == intruder  # the first did not take it back while it was held
        assert await raw.hlen("sbtest:sessions:web-1") == 0
        await raw.delete(key)  # the other process let the name go
        await until(lambda: first.problem() is None)  # the heartbeat takes it back
        assert json.loads(await raw.get(key))["token"] == json.loads(first.lease.holder)["token"]
        await first.save_session(SessionRecord(Room("web", "fresh"), "chatting", "hub"))
        assert [r.room.id for r in await first.sessions()] == ["fresh"]
    finally:
        await raw.aclose()
        await first.close()


async def test_healthz_says_why_while_redis_is_down_and_recovers(redis_server):
    from bridge.app import Bridge

    cfg = config({"platforms": {"rec": {"plugin": RECORDING}}}, store=redis_server.url, metrics_bind="127.0.0.1:0",
                 instance="web-1", instance_lease=LEASE, store_prefix="sbtest:")
    async with Bridge(cfg) as bridge, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{bridge.health.port}/healthz"

        async def healthz() -> tuple[int, str]:
            async with http.get(url) as response:
                return response.status, await response.text()

        assert await healthz() == (200, "healthy")
        redis_server.stop()

        async def degraded() -> bool:
            return (await healthz())[0] == 503

        await until(degraded)  # the heartbeat finds Redis gone
        status, body = await healthz()
        verdict, why = body.split("\n")
        assert verdict == "degraded" and why.startswith(f"store: Redis at redis://127.0.0.1:{redis_server.port}/0 unreachable")
        redis_server.start()

        async def back() -> bool:
            return await healthz() == (200, "healthy")

        await until(back)


async def test_a_daemon_on_redis_takes_up_only_the_sessions_its_instance_owns(redis_server):
    from bridge.app import Bridge
    from bridge.events import Disconnected, Reason

    for owner, room in (("web-1", "r1"), ("web-2", "r2")):
        store = await open_redis(redis_server.url, owner)
        await store.save_session(SessionRecord(Room("rec", room), "chatting", "hub", "gone-chat", {"mode": "random"}))
        await store.close()
    cfg = config({"platforms": {"rec": {"plugin": RECORDING}}}, store=redis_server.url, instance="web-1",
                 instance_lease=LEASE, store_prefix="sbtest:")
    async with Bridge(cfg) as bridge:  # start() returns after resume has gone through every owned record
        rec = bridge.platforms["rec"]
        ended = await rec.wait_for("r1", Disconnected)
        assert ended.reason == Reason.RESTART and len(rec.events("r1", Disconnected)) == 1
        assert rec.events("r2") == []  # web-2's session is not this instance's to end
        assert await bridge.store.sessions() == []
        assert [r.room.id for r in await bridge.store.sessions_of("web-2")] == ["r2"]


async def test_after_redis_restarted_no_connection_from_before_fails_a_call(tmp_path):
    # A busy instance holds many idle pooled connections; each is dead after Redis restarted. Once the
    # store says it is back, no call may fail on one of them (and mark Redis down again).
    server = RedisServer(tmp_path / "r", persistent=True).start()
    store = await open_redis(server.url)
    try:
        await store.set("ns", "k", "v")
        await asyncio.gather(*(store.get("ns", "k") for _ in range(40)))  # 40 connections, idle after
        server.restart()
        with pytest.raises(StoreUnavailable):
            await store.get("ns", "k")  # the first one found dead marks Redis down
        await until(lambda: store.problem() is None)
        assert await asyncio.gather(*(store.get("ns", "k") for _ in range(40))) == ["v"] * 40
        assert store.problem() is None
    finally:
        await store.close()
        server.stop()


async def test_a_session_forgotten_while_redis_is_down_is_forgotten_once_it_is_back(tmp_path):
    # A chat that ended during the outage: its record must not stay for the next start to take up.
    server = RedisServer(tmp_path / "r", persistent=True).start()
    store = await open_redis(server.url)
    try:
        for room in ("ended", "kept", "saved-again"):
            await store.save_session(SessionRecord(Room("web", room), "chatting", "hub", room, {}))
        server.stop()
        with pytest.raises(StoreUnavailable):
            await store.get("ns", "k")  # Redis is known down now
        await store.delete_session(Room("web", "ended"))  # kept for later, not an error
        await store.delete_session(Room("web", "saved-again"))
        server.start()
        await until(lambda: store.problem() is None)
        await store.save_session(SessionRecord(Room("web", "saved-again"), "searching", "hub", None, {}))
        assert [(r.room.id, r.state) for r in await store.sessions()] == [("kept", "chatting"), ("saved-again", "searching")]
    finally:
        await store.close()
        server.stop()
