"""Issue 9 item 1, session churn: one address starts and disconnects in a loop, never holding more
than 8 live ids, against the daemon (`python -m bridge run`, web platform and hub, default caps);
the daemon's RSS growth after the churn.

Duration: BENCH_CHURN_SECONDS (default 60, as `make bench` runs it) or `--seconds N`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from bench.bench_web import Client
from bench.common import emit
from bench.daemon import Daemon

__all__ = ["main"]

LIVE = 8  # ids held at once: well under the default per-address cap of 32
WARMUP = 400  # sessions churned before the baseline, so lazily built code paths are not counted
MB = 1e6


async def churn(url: str, seconds: float) -> tuple[int, int, int]:
    """LIVE workers on 127.0.0.1, each: /start, /disconnect, again. Returns (churned, refused, errors)."""
    churned = refused = errors = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal churned, refused, errors
        client = Client(url, "127.0.0.1", one_connection=True)
        try:
            while time.monotonic() < deadline:
                try:
                    status, body = await client.action.request("GET", "/start?firstevents=0")
                    if status != 200:
                        refused += 1
                        await asyncio.sleep(0.01)  # a refusal answers at once: do not spin on it
                        continue
                    client.id = body.decode().strip('"')
                    await client.post("/disconnect")
                    churned += 1
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    client.close()
                    client = Client(url, "127.0.0.1", one_connection=True)
                    await asyncio.sleep(0.05)
        finally:
            client.close()

    await asyncio.gather(*(worker() for _ in range(LIVE)))
    return churned, refused, errors


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.bench_churn")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_CHURN_SECONDS", "60")))
    args = parser.parse_args()
    daemon = Daemon()
    try:
        rss_start = daemon.rss()
        asyncio.run(churn_until(daemon.url, WARMUP))
        time.sleep(1.0)
        baseline = daemon.rss()
        began = time.monotonic()
        churned, refused, errors = asyncio.run(churn(daemon.url, args.seconds))
        elapsed = time.monotonic() - began
        after = daemon.rss()
        time.sleep(3.0)
        settled = daemon.rss()
        sessions = daemon.metric("stranger_bridge_sessions")
        clients = daemon.metric("stranger_bridge_web_clients")
        emit("churn_rss_growth", (after - baseline) / MB, "MB", "<= 20",
             seconds=round(elapsed, 1), sessions_churned=churned, live_ids_max=LIVE,
             rss_baseline_mb=round(baseline / MB, 1), rss_after_mb=round(after / MB, 1),
             rss_3s_later_mb=round(settled / MB, 1), rss_at_start_mb=round(rss_start / MB, 1),
             core_sessions_after=int(sessions), web_clients_after=int(clients),
             refused=refused, errors=errors)
        emit("churn_sessions_per_second", churned / elapsed, "sessions/s", sessions_churned=churned)
    finally:
        daemon.stop()


async def churn_until(url: str, count: int) -> None:
    """The warm-up: `count` start/disconnect rounds on one worker."""
    client = Client(url, "127.0.0.1", one_connection=True)
    try:
        for _ in range(count):
            _, body = await client.action.request("GET", "/start?firstevents=0")
            client.id = body.decode().strip('"')
            await client.post("/disconnect")
    finally:
        client.close()


if __name__ == "__main__":
    main()
