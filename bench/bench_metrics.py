"""Issue 14, `/metrics` scrape time with 20,000 sessions: the sessions are made through the router
(a recording platform and the hub, 10,000 paired chats); the web platform's /metrics and the core's
own listener (`metrics_bind`) are scraped alternately over loopback, in the same process."""

from __future__ import annotations

import asyncio
import time

from bench.bench_web import Conn
from bench.common import Sink, emit, median, percentile
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Room, Start
from bridge.store import MemoryStore

__all__ = ["main"]

SESSIONS = 20_000
SCRAPES = 60


def config():
    return parse_config(
        {
            "bridge": {"log_level": "WARNING", "metrics_bind": "127.0.0.1:0"},
            "platforms": {
                "web": {"plugin": "web", "bind": "127.0.0.1:0", "address_keys": False},  # load clients: own persons
                "sink": {"plugin": "bench.common:Sink"},
            },
            "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0}},
        },
        env=False,
    )


async def run() -> None:
    async with Bridge(config(), store=MemoryStore()) as bridge:
        sink: Sink = bridge.platforms["sink"]  # type: ignore[assignment]
        for n in range(SESSIONS):
            sink.submit(Room("sink", str(n)), Start())
            if n % 500 == 0:
                await asyncio.sleep(0)
        async with asyncio.timeout(120):
            while len(sink.connected) < SESSIONS:
                await asyncio.sleep(0.1)
        assert bridge.router is not None
        sessions = len(bridge.router.sessions)
        assert bridge.health is not None
        urls = {"web": bridge.platforms["web"].url, "core": f"http://127.0.0.1:{bridge.health.port}"}
        conns = {name: Conn(url, "127.0.0.1") for name, url in urls.items()}
        times: dict[str, list[float]] = {name: [] for name in conns}
        size = {name: 0 for name in conns}
        for _ in range(SCRAPES):
            for name, conn in conns.items():  # side by side: one of each per round
                began = time.perf_counter()
                status, body = await conn.request("GET", "/metrics")
                times[name].append(time.perf_counter() - began)
                assert status == 200, status
                size[name] = len(body)
            await asyncio.sleep(0.02)
        for conn in conns.values():
            conn.close()
    ms = 1000.0
    for name, figures in times.items():
        prefix = "metrics_scrape_20k_sessions" if name == "web" else "metrics_scrape_core_listener_20k_sessions"
        emit(f"{prefix}_p50", median(figures) * ms, "ms", "<= 50", sessions=sessions, scrapes=SCRAPES,
             body_bytes=size[name])
        emit(f"{prefix}_p99", percentile(figures, 99) * ms, "ms", "<= 50", sessions=sessions, scrapes=SCRAPES)


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
