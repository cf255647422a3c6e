"""Issue 9, many long polls: 10,000 concurrent /events long polls from 100 addresses (127.0.0.2 …
127.0.0.101, 100 clients each, waiting askers that never pair) against the daemon
(`python -m bridge run`) with a raised descriptor limit; the daemon's RSS with every poll open, and
the p99 latency of a probe pair from 127.0.0.1 chatting meanwhile."""

from __future__ import annotations

import asyncio
import os
import time

from bench.bench_web import Client
from bench.common import emit, percentile
from bench.daemon import Daemon, raise_own_fd_limit
from bench.probe import REQUEST_TIMEOUT, planned, probe

__all__ = ["main"]

ADDRESSES = 100
PER_ADDRESS = 100
POLLS = ADDRESSES * PER_ADDRESS
CHAT_SECONDS = float(os.environ.get("BENCH_LONGPOLLS_SECONDS", "10"))
# 100 clients per address is above the default per-address caps (32 ids, 64 polls): raised, since
# the figure is about many polls, not about one address. Message rates are raised out of the way.
WEB = {"max_sessions_per_address": 128, "max_polls_per_address": 128}
BRIDGE = {"user_rate": 1000.0, "user_burst": 1000, "stranger_rate": 1000.0, "stranger_burst": 1000}
MB = 1e6
SETTLE = 40.0  # seconds at most to wait, after the starts, for the daemon to hold every poll open


def address(n: int) -> str:
    return f"127.0.0.{2 + n}"


async def run(daemon: Daemon) -> dict:
    crowd = [Client(daemon.url, address(n % ADDRESSES), one_connection=True) for n in range(POLLS)]
    sem = asyncio.Semaphore(200)
    began = time.monotonic()

    failed_starts = 0

    async def enter(c: Client) -> bool:
        nonlocal failed_starts
        async with sem:
            try:
                await asyncio.wait_for(c.start(ask="Will anyone answer this question?"), REQUEST_TIMEOUT)
                return True
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, KeyError):
                failed_starts += 1  # refused (a cap) or cut: the figure then says how many polls were open
                c.close()
                return False

    entered = await asyncio.gather(*(enter(c) for c in crowd))

    async def hold(c: Client) -> None:
        while True:
            await c.events()

    holders = [asyncio.create_task(hold(c)) for c, ok in zip(crowd, entered) if ok]
    open_polls = 0.0
    deadline = time.monotonic() + SETTLE
    while open_polls < len(holders) and time.monotonic() < deadline:  # until the daemon holds every poll
        await asyncio.sleep(0.5)
        open_polls = await asyncio.to_thread(daemon.metric, "stranger_bridge_web_polls_open")
    setup = time.monotonic() - began
    rss = daemon.rss()
    result = await probe(daemon.url, CHAT_SECONDS, "127.0.0.1")
    rss_after = daemon.rss()
    open_after = await asyncio.to_thread(daemon.metric, "stranger_bridge_web_polls_open")
    broken = sum(1 for t in holders if t.done())
    for task in holders:
        task.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    for c in crowd:
        c.close()
    return {**result, "rss": rss, "rss_after": rss_after, "open_polls": open_polls, "open_after": open_after,
            "setup": setup, "broken_holders": broken, "failed_starts": failed_starts}


def main() -> None:
    own = raise_own_fd_limit()
    daemon = Daemon(web=WEB, bridge=BRIDGE)
    try:
        limit = daemon.nofile()
        r = asyncio.run(run(daemon))
    finally:
        daemon.stop()
    common = {"polls": POLLS, "addresses": ADDRESSES, "bench_nofile_soft": own,
              "daemon_nofile_soft": limit[0], "daemon_nofile_hard": limit[1]}
    emit("longpolls_10k_daemon_rss", r["rss"] / MB, "MB", "<= 300", open_polls=int(r["open_polls"]),
         failed_starts=r["failed_starts"],
         rss_after_probe_mb=round(r["rss_after"] / MB, 1), setup_seconds=round(r["setup"], 1), **common)
    lat = r["latencies"]
    lost = r["sent"] - r["received"] if r["paired"] else planned(CHAT_SECONDS)
    if lat:
        emit("longpolls_10k_probe_latency_p99", percentile(lat, 99) * 1000, "ms", "<= 20",
             p50=round(percentile(lat, 50) * 1000, 3), samples=len(lat), **common)
    else:
        emit("longpolls_10k_probe_latency_p99", REQUEST_TIMEOUT * 1000, "ms", "<= 20",
             note="no probe message arrived (value is the request timeout, a lower bound)", **common)
    emit("longpolls_10k_probe_messages_lost", float(lost), "messages", "== 0", sent=r["sent"], received=r["received"],
         duplicates=r["duplicates"], out_of_order=r["out_of_order"], failed_requests=r["failed_requests"],
         paired=r["paired"], paired_after_seconds=r["paired_after_seconds"], open_polls_after=int(r["open_after"]), crowd_polls_broken=r["broken_holders"])


if __name__ == "__main__":
    main()
