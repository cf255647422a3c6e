"""Scrape cost of the core's /metrics over a real socket with 20,000 live sessions (10,000 pairs on the hub)."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.bench_core import pair_up
from bench.common import emit, median, percentile
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.store import MemoryStore

PAIRS = 10_000
SCRAPES = 50


async def scrape_time() -> None:
    config = parse_config(
        {
            "bridge": {"inbox_size": 100000, "metrics_bind": "127.0.0.1:0"},
            "platforms": {"sink": {"plugin": "bench.bench_core:SinkPlatform"}},
            "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0}},
        },
        env=False,
    )
    async with Bridge(config, store=MemoryStore()) as bridge:
        await pair_up(bridge, PAIRS)
        assert bridge.health is not None
        url = f"http://127.0.0.1:{bridge.health.port}/metrics"
        times = []
        async with aiohttp.ClientSession() as http:
            for _ in range(SCRAPES):
                started = time.perf_counter()
                async with http.get(url) as response:
                    body = await response.text()
                times.append(time.perf_counter() - started)
        assert f'stranger_bridge_sessions{{platform="sink",state="chatting"}} {2 * PAIRS}.0' in body
    emit("metrics_scrape_20k_sessions_median", median(times) * 1000, "ms", target="<= 50", sessions=2 * PAIRS)
    emit("metrics_scrape_20k_sessions_p99", percentile(times, 99) * 1000, "ms", target="<= 50", sessions=2 * PAIRS)


def main() -> None:
    asyncio.run(scrape_time())


if __name__ == "__main__":
    main()
