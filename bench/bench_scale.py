"""Scale-out on Redis, side by side in one run against a real redis-server: relay latency and throughput
(with CPU per message) across two instances against the same pair on one, 10,000 arrivals over two instances' hubs, Redis memory per
waiting user and per live chat, and the time from SIGKILL of an instance to its partner's notice."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from bench.common import Path as Route
from bench.common import emit, interleaved_latencies, median, percentile
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Message, Room, Start
from bridge.store import open_store, parse_store_url
from plugins.hub.backend import HubBackend
from plugins.hub.config import HubConfig
from tests.redisproc import RedisServer
from tests.scale.daemon import Daemon, pair_web
from tests.scale.hubs import shared_hubs

PREFIX = "bench:"
SAMPLES = 400
ARRIVALS = 10_000
IN_FLIGHT = 2  # arrivals in flight per instance: latency, not queueing behind a flood
MESSAGES = 5_000  # one way, for the throughput figures
CHATS = 2_000  # live chats for the memory figure


def instance_config(url: str, name: str) -> dict:
    return parse_config(
        {
            "bridge": {
                "store": url, "store_prefix": PREFIX, "instance": name, "user_rate": 100_000.0, "user_burst": 100_000,
                "stranger_rate": 100_000.0, "stranger_burst": 100_000, "inbox_size": 100_000,
            },
            "platforms": {"sink": {"plugin": "bench.common:Sink"}},
            "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0.0}},
        },
        env=False,
    )


async def server_flush(port: int) -> None:
    """Forget the last figure's keys, so the next one starts on an empty pool."""
    client = aioredis.Redis(port=port)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def until(test, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not test():
            await asyncio.sleep(0.01)


async def relay_latency(url: str) -> None:
    """p99 of room to room: both rooms on instance A, against one room on A and one on B."""
    async with Bridge(instance_config(url, "a")) as a, Bridge(instance_config(url, "b")) as b:
        sa, sb = a.platforms["sink"], b.platforms["sink"]
        routes = {}
        for name, (x, y) in {"one": (sa, sa), "two": (sa, sb)}.items():
            rx, ry = Room("sink", f"{name}-x"), Room("sink", f"{name}-y")
            x.submit(rx, Start(user=f"{name}-x"))
            y.submit(ry, Start(user=f"{name}-y"))
            await until(lambda rx=rx, ry=ry, x=x, y=y: rx in x.connected and ry in y.connected)
            route = Route(y.arrived)

            async def send(token: str, x=x, rx=rx) -> None:
                x.submit(rx, Message(token))

            route.send = send
            routes[name] = route
        lat = await interleaved_latencies(routes, SAMPLES, gap=0.002, settle=1.0)
    ms = 1000.0
    for name in ("one", "two"):
        emit(f"scale.relay_latency_p99_{name}_instance{'s' if name == 'two' else ''}", percentile(lat[name], 99) * ms, "ms",
             median=round(median(lat[name]) * ms, 3), samples=len(lat[name]), lost=SAMPLES - len(lat[name]))
    emit("scale.relay_cross_instance_added_p99", (percentile(lat["two"], 99) - percentile(lat["one"], 99)) * ms, "ms", "<= 2",
         note="two Bridge objects in one process sharing one redis-server: the Redis stream hop, not a second process's scheduling")


async def throughput(url: str, port: int) -> None:
    """Messages per second one way through a pair on one instance and across two, with CPU per message
    (this process, which runs both instances, and redis-server's own)."""
    client = aioredis.Redis(port=port, decode_responses=True)

    async def redis_cpu() -> float:
        info = await client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    try:
        async with Bridge(instance_config(url, "ta")) as a, Bridge(instance_config(url, "tb")) as b:
            sa, sb = a.platforms["sink"], b.platforms["sink"]
            for name, (x, y) in {"one": (sa, sa), "two": (sa, sb)}.items():
                rx, ry = Room("sink", f"t{name}-x"), Room("sink", f"t{name}-y")
                x.submit(rx, Start(user=f"t{name}-x"))
                y.submit(ry, Start(user=f"t{name}-y"))
                await until(lambda rx=rx, ry=ry, x=x, y=y: rx in x.connected and ry in y.connected)
                tokens = [f"t{name}-{i}" for i in range(MESSAGES)]
                cpu, rcpu, started = time.process_time(), await redis_cpu(), time.perf_counter()
                for i in range(0, MESSAGES, 500):  # in bursts the room's inbox takes
                    for token in tokens[i : i + 500]:
                        x.submit(rx, Message(token))
                    await until(lambda t=tokens[min(i + 499, MESSAGES - 1)], y=y: t in y.arrived)
                elapsed = time.perf_counter() - started
                cpu, rcpu = time.process_time() - cpu, await redis_cpu() - rcpu
                label = "one_instance" if name == "one" else "two_instances"
                emit(f"scale.relay_throughput_{label}", MESSAGES / elapsed, "messages/s", messages=MESSAGES)
                emit(f"scale.relay_cpu_per_message_{label}", cpu / MESSAGES * 1e6, "us", redis_us=round(rcpu / MESSAGES * 1e6, 2),
                     note="this process's CPU (it runs both instances) and redis-server's, per message")
    finally:
        await client.aclose()


def _arrivals_in_process(url: str, name: str, parity: int, ready, done, results) -> None:
    """One instance in its own process (as deployed): its half of the arrivals, IN_FLIGHT at a time."""

    async def run() -> None:
        chats: list = []
        latencies: list[float] = []
        async with shared_hubs(url, name, prefix=PREFIX, lease=10.0, chats=chats, repair_cooldown=0.0) as (hub,):
            todo = [i for i in range(ARRIVALS) if i % 2 == parity]

            async def worker() -> None:
                while todo:
                    i = todo.pop()
                    started = time.perf_counter()
                    chats.append(await hub.connect(Start(user=f"u{i}", scope="sink", language=("en", "de", "fr")[i % 3])))
                    latencies.append(time.perf_counter() - started)

            await asyncio.to_thread(ready.wait)  # both instances start arriving together
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
            elapsed = time.perf_counter() - started
            # Every chat paired (the other instance's envelopes arrived), a few waiting at the end.
            await until(lambda: sum(c.conversation is None for c in chats) <= 3)
            await asyncio.to_thread(done.wait)  # the other instance's chats are formed too: then close
            results.put((latencies, elapsed, [c.conversation.cid if c.conversation else None for c in chats]))

    asyncio.run(run())


async def arrivals_two_processes(url: str) -> None:
    """The same 10,000 arrivals with each instance in its own process, as two instances run (one core each here)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready, done, results = ctx.Barrier(2), ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_arrivals_in_process, args=(url, name, n, ready, done, results)) for n, name in enumerate("pq")]
    for proc in procs:
        proc.start()
    got = [await asyncio.to_thread(results.get, True, 300) for _ in procs]
    for proc in procs:
        await asyncio.to_thread(proc.join, 60)
    latencies = [t for lat, _, _ in got for t in lat]
    cids = Counter(cid for _, _, ids in got for cid in ids if cid is not None)
    twice = sum(1 for count in cids.values() if count != 2)
    emit("scale.pairing_latency_median_two_processes", median(latencies) * 1000, "ms", "<= 1", arrivals=ARRIVALS, in_flight=2 * IN_FLIGHT)
    emit("scale.pairing_latency_p99_two_processes", percentile(latencies, 99) * 1000, "ms", arrivals=ARRIVALS)
    emit("scale.arrivals_per_second_two_processes", ARRIVALS / max(e for _, e, _ in got), "arrivals/s")
    emit("scale.paired_twice_two_processes", twice, "conversations", "== 0", paired=sum(cids.values()))


async def arrivals(url: str) -> None:
    """10,000 arrivals through two instances' hub backends in this one process (one loop, one core
    for both): connect latency and nobody paired twice."""
    chats: list = []
    latencies: list[float] = []
    async with shared_hubs(url, "p", "q", prefix=PREFIX, lease=10.0, chats=chats, repair_cooldown=0.0) as hubs:
        queues = [[i for i in range(ARRIVALS) if i % 2 == n] for n in range(2)]

        async def worker(n: int) -> None:
            while queues[n]:
                i = queues[n].pop()
                started = time.perf_counter()
                chats.append(await hubs[n].connect(Start(user=f"u{i}", scope="sink", language=("en", "de", "fr")[i % 3])))
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(2) for _ in range(IN_FLIGHT)))
        elapsed = time.perf_counter() - started
        # Every chat paired (the envelopes of the other instance handled), a few left waiting.
        await until(lambda: sum(c.conversation is None for c in chats) <= 3)
        ids = Counter(m for c in chats if c.conversation is not None for m in [c.conversation.cid])
        twice = sum(1 for c in chats if c.conversation is not None and ids[c.conversation.cid] != 2)
        emit("scale.pairing_latency_median_two_instances", median(latencies) * 1000, "ms", arrivals=ARRIVALS, in_flight=2 * IN_FLIGHT,
             note="both instances in this one process: each connect waits behind the other instance's work on the one loop")
        emit("scale.pairing_latency_p99_two_instances", percentile(latencies, 99) * 1000, "ms", arrivals=ARRIVALS)
        emit("scale.arrivals_per_second_two_instances", ARRIVALS / elapsed, "arrivals/s")
        emit("scale.paired_twice", twice, "people", "== 0", paired=sum(1 for c in chats if c.conversation is not None))


async def key_bytes(client: aioredis.Redis) -> int:
    """MEMORY USAGE of every key under the prefix: the data kept, without the connections' buffers."""
    total = 0
    async for key in client.scan_iter(match=PREFIX + "*", count=1000):
        total += int(await client.memory_usage(key, samples=0) or 0)
    return total


async def memory(url: str, port: int) -> None:
    """Redis used_memory per waiting user (the pool's entry) and per live chat (both people's session
    records, the pool's traces, the relay's streams after one message each way)."""
    client = aioredis.Redis(port=port, decode_responses=True)
    await client.flushdb()
    try:
        store = await open_store(parse_store_url(url), prefix=PREFIX, instance="m", lease=10.0, environ={})
        hub = HubBackend("hub", HubConfig(plugin="hub"))
        hub.scale_out(store)
        await hub.start()
        before = await key_bytes(client)
        waiters = [await hub.connect(Start(user="one-person", scope="sink")) for _ in range(CHATS)]  # nobody to pair with
        emit("scale.redis_memory_per_waiting_user", (await key_bytes(client) - before) / CHATS, "bytes", waiting=CHATS,
             note="MEMORY USAGE of the keys (pool entry and bucket share); the session record comes on top")
        for chat in waiters:
            await chat.aclose()
        await hub.stop()
        await store.close()
        async with Bridge(instance_config(url, "a")) as a, Bridge(instance_config(url, "b")) as b:
            sa, sb = a.platforms["sink"], b.platforms["sink"]
            before = await key_bytes(client)
            for i in range(CHATS):
                sa.submit(Room("sink", f"w{i}"), Start(user=f"w{i}"))
                sb.submit(Room("sink", f"p{i}"), Start(user=f"p{i}"))
            await until(lambda: len(sa.connected) == CHATS and len(sb.connected) == CHATS)
            for i in range(CHATS):  # one message each way in every chat: the streams' share
                sa.submit(Room("sink", f"w{i}"), Message(f"a{i}"))
                sb.submit(Room("sink", f"p{i}"), Message(f"b{i}"))
            await until(lambda: len(sa.arrived) + len(sb.arrived) == 2 * CHATS)
            await asyncio.sleep(0.5)  # the session records' last writes
            live = await key_bytes(client) - before
            emit("scale.redis_memory_per_live_chat", live / CHATS, "bytes", "<= 2048", chats=CHATS,
                 note="MEMORY USAGE of the keys: two session records, pool and stream traces; rooms on two instances (a few pairs may meet on one)")
    finally:
        await client.aclose()


async def kill_to_notice(tmp: Path, server: RedisServer) -> None:
    """SIGKILL of the instance one person chats on: seconds until their partner on the other instance is told."""
    a = Daemon(tmp, server.url, "ka", lease=10.0)
    b = Daemon(tmp, server.url, "kb", lease=10.0)
    await asyncio.gather(a.start(), b.start())
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            x, y = await pair_web(http, a, b)
            killed = time.perf_counter()
            await a.kill()
            await y.until("strangerDisconnected", timeout=60)
            emit("scale.sigkill_to_partner_notice", time.perf_counter() - killed, "s", "<= lease + lease/3", lease=10.0)
    finally:
        for d in (a, b):
            with contextlib.suppress(Exception):
                await d.stop()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            await relay_latency(server.url)
            await throughput(server.url, server.port)
            await arrivals(server.url)
            await server_flush(server.port)
            await arrivals_two_processes(server.url)
            await memory(server.url, server.port)
            await kill_to_notice(Path(tmp), server)
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
