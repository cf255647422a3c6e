"""The Redis pairing script (plugins/hub/redis_pool.py) against a real redis-server: 10,000 arrivals over
two clients (pairing latency, nobody paired twice), arrival cost with 100 and with 10,000 waiting, and
Redis memory per waiting user."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

from bench.common import emit, median, percentile
from plugins.hub.redis_pool import RedisPool
from tests.redisproc import RedisServer

PREFIX = "bench:"
ARRIVALS = 10_000
IN_FLIGHT = 2  # arrivals in flight per client: latency, not queueing behind a flood


async def two_clients_race(port: int) -> None:
    clients = [aioredis.Redis(port=port, decode_responses=True, max_connections=IN_FLIGHT) for _ in range(2)]
    pools = [RedisPool(c, prefix=PREFIX, owner=f"i{n}") for n, c in enumerate(clients)]
    rng = random.Random(1)
    plan = [(f"u{i}", rng.choice(["en", "de", "fr"]), frozenset(rng.sample(["a", "b", "c", "d", "e"], 2)) if i % 3 == 0 else frozenset()) for i in range(ARRIVALS)]
    latencies: list[float] = []
    results = []

    async def instance(n: int) -> None:
        queue = [i for i in range(ARRIVALS) if i % 2 == n]

        async def worker() -> None:
            while queue:
                user, lang, interests = plan[queue.pop()]
                started = time.perf_counter()
                pairing = await pools[n].arrive(user, language=lang, interests=interests)
                latencies.append(time.perf_counter() - started)
                results.append(pairing)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))

    started = time.perf_counter()
    await asyncio.gather(instance(0), instance(1))
    elapsed = time.perf_counter() - started
    taken = Counter()
    for pairing in results:
        for member in pairing.members:
            taken[member.id] += 1
    twice = sum(1 for n in taken.values() if n > 1)
    emit("redis_pool.pairing_latency_median_two_clients", median(latencies) * 1000, "ms", "<= 1", arrivals=ARRIVALS, in_flight=2 * IN_FLIGHT)
    emit("redis_pool.pairing_latency_p99_two_clients", percentile(latencies, 99) * 1000, "ms", arrivals=ARRIVALS)
    emit("redis_pool.arrivals_per_second_two_clients", ARRIVALS / elapsed, "arrivals/s")
    emit("redis_pool.entries_paired_twice", twice, "entries", "== 0", paired=len(taken))
    for c in clients:
        await c.aclose()


async def bounded_cost_and_memory(port: int) -> None:
    client = aioredis.Redis(port=port, decode_responses=True)
    await client.flushdb()
    pool = RedisPool(client, prefix=PREFIX, owner="i0")
    before = (await client.info("memory"))["used_memory"]
    figures = {}
    waiting = 0
    for size in (100, 10_000):
        while waiting < size:  # one person in many tabs: nobody can be paired with them
            await pool.arrive("w")
            waiting += 1
        times = []
        for _ in range(300):
            started = time.perf_counter()
            pairing = await pool.arrive("w")
            times.append(time.perf_counter() - started)
            await pool.leave(pairing.entry)
        figures[size] = median(times) * 1000
        if size == 10_000:
            used = (await client.info("memory"))["used_memory"] - before
            emit("redis_pool.memory_per_waiting_user", used / size, "bytes", waiting=size)
    emit("redis_pool.unpairable_arrival_median_100_waiting", figures[100], "ms", scan_limit=pool.scan_limit)
    emit("redis_pool.unpairable_arrival_median_10000_waiting", figures[10_000], "ms", "about the 100-waiting figure", scan_limit=pool.scan_limit)
    await client.aclose()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            await two_clients_race(server.port)
            await bounded_cost_and_memory(server.port)
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
