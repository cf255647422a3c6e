"""Issue 9 item 2, connection exhaustion: 2,000 half-open requests (a request line and part of the
headers, never finished; re-opened a second after the server closes one, as a slowloris does)
from 127.0.0.1 while a probe pair from 127.0.0.2 chats through the hub. The daemon
(`python -m bridge run`) starts with systemd's default soft descriptor limit, 1,024, and keeps
whatever it raises itself; the figures are the probe's p99 latency and the messages it lost."""

from __future__ import annotations

import asyncio
import os
import re
import time

from bench.common import emit, percentile
from bench.daemon import SYSTEMD_DEFAULT_NOFILE, Daemon, raise_own_fd_limit
from bench.probe import REQUEST_TIMEOUT, planned, probe

__all__ = ["main"]

HALF_OPEN = 2000
CHAT_SECONDS = float(os.environ.get("BENCH_HALFOPEN_SECONDS", "20"))
REOPEN_AFTER = 1.0  # seconds an attacker slot waits before re-opening a connection the server closed
PARTIAL = (b"POST /send HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n"
           b"Content-Type: application/x-www-form-urlencoded\r\nContent-Le")
# Messages are not what this measures: the core's per-user rate limit is raised out of the way.
BRIDGE = {"user_rate": 1000.0, "user_burst": 1000, "stranger_rate": 1000.0, "stranger_burst": 1000}


class Attack:
    """HALF_OPEN slots, each holding one unfinished request open and re-opening it when closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open = 0  # connections currently held (connected, partial request written)
        self.connects = 0
        self.closed_by_server = 0
        self.connect_failures = 0
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._slot()) for _ in range(HALF_OPEN)]

    async def _slot(self) -> None:
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port, local_addr=("127.0.0.1", 0)), REQUEST_TIMEOUT
                )
            except (OSError, TimeoutError):
                self.connect_failures += 1
                await asyncio.sleep(REOPEN_AFTER)
                continue
            self.connects += 1
            self.open += 1
            try:
                writer.write(PARTIAL)
                stopped = asyncio.create_task(self.stop.wait())
                eof = asyncio.create_task(reader.read(65536))
                await asyncio.wait({stopped, eof}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if eof.done():
                    self.closed_by_server += 1
                else:
                    eof.cancel()
            except OSError:
                self.closed_by_server += 1
            finally:
                self.open -= 1
                writer.close()
            if not self.stop.is_set():
                await asyncio.sleep(REOPEN_AFTER)

    async def wait_open(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.connects + self.connect_failures < HALF_OPEN and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def run(daemon: Daemon) -> tuple[Attack, dict, tuple[int, int], int]:
    attack = Attack(daemon.port)
    attack.start()
    await attack.wait_open(30.0)
    await asyncio.sleep(1.0)
    limit_under_attack = daemon.nofile()
    fds = daemon.open_fds()
    result = await probe(daemon.url, CHAT_SECONDS, "127.0.0.2")
    await attack.close()
    return attack, result, limit_under_attack, fds


def main() -> None:
    own = raise_own_fd_limit()
    daemon = Daemon(bridge=BRIDGE, nofile_soft=SYSTEMD_DEFAULT_NOFILE)
    try:
        limit_at_start = daemon.nofile()
        log_before = daemon.log_bytes()
        attack, result, limit, fds = asyncio.run(run(daemon))
        log_growth = daemon.log_bytes() - log_before
        accept_errors = len(re.findall(r"accept\(\) out of system resource", daemon.log_tail(10**8)))
    finally:
        daemon.stop()
    lat = result["latencies"]
    lost = result["sent"] - result["received"]
    if not result["paired"]:
        lost = planned(CHAT_SECONDS)  # the pair never met: every message it came to send is lost
    common = {"half_open": HALF_OPEN, "bench_nofile_soft": own,
              "daemon_nofile_started_with": SYSTEMD_DEFAULT_NOFILE,
              "daemon_nofile_soft_after_start": limit_at_start[0], "daemon_nofile_hard": limit_at_start[1],
              "daemon_nofile_soft_under_attack": limit[0], "daemon_open_fds_under_attack": fds}
    if lat:
        emit("halfopen_probe_latency_p99", percentile(lat, 99) * 1000, "ms", "<= 50",
             p50=round(percentile(lat, 50) * 1000, 3), samples=len(lat), **common)
    else:
        emit("halfopen_probe_latency_p99", REQUEST_TIMEOUT * 1000, "ms", "<= 50",
             note="no probe message arrived (value is the request timeout, a lower bound)",
             paired=result["paired"], **common)
    emit("halfopen_probe_messages_lost", float(lost), "messages", "== 0", sent=result["sent"],
         received=result["received"], duplicates=result["duplicates"], out_of_order=result["out_of_order"],
         failed_requests=result["failed_requests"], paired=result["paired"], paired_after_seconds=result["paired_after_seconds"],
         start_attempts=result["start_attempts"], chat_seconds=CHAT_SECONDS,
         note="sent - received (unique tokens); if the pair never met: the messages it planned to send")
    emit("halfopen_attacker_connections", float(attack.connects), "connections",
         closed_by_server=attack.closed_by_server, connect_failures=attack.connect_failures,
         daemon_log_bytes=log_growth, accept_error_lines=accept_errors)


if __name__ == "__main__":
    main()
