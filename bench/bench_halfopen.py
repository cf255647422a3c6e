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

from bench.bench_web import Client
from bench.common import emit, percentile
from bench.daemon import SYSTEMD_DEFAULT_NOFILE, Daemon, raise_own_fd_limit

__all__ = ["main"]

HALF_OPEN = 2000
CHAT_SECONDS = float(os.environ.get("BENCH_HALFOPEN_SECONDS", "20"))
GAP = 0.02  # seconds between two probe messages of one side: 50 messages/s each way
REQUEST_TIMEOUT = 5.0  # a probe request that takes longer counts as failed (its message as lost)
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


async def within(coro, timeout: float = REQUEST_TIMEOUT):
    return await asyncio.wait_for(coro, timeout)


async def probe(url: str, seconds: float) -> dict:
    """A pair from 127.0.0.2 starts and chats both ways; latency = /send started → partner's poll got it."""
    a, b = Client(url, "127.0.0.2"), Client(url, "127.0.0.2")
    result = {"paired": False, "sent": 0, "received": 0, "duplicates": 0, "out_of_order": 0,
              "failed_requests": 0, "latencies": []}
    try:
        first_a, first_b = await within(a.start()), await within(b.start())
        await within(asyncio.gather(a.until_connected(first_a), b.until_connected(first_b)), 10.0)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, KeyError):
        a.close()
        b.close()
        return result
    result["paired"] = True
    sent: dict[str, float] = {}
    got: dict[str, list[str]] = {"a": [], "b": []}
    done = asyncio.Event()

    async def talk(me: Client, tag: str) -> None:
        n = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            token = f"{tag}{n}"
            n += 1
            sent[token] = time.perf_counter()
            try:
                if await within(me.post("/send", msg=token)) != "win":
                    result["failed_requests"] += 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                result["failed_requests"] += 1
                me.action.close()
                me.action.writer = None
            await asyncio.sleep(GAP)

    async def listen(me: Client, into: list[str]) -> None:
        while not done.is_set():
            try:
                events = await within(me.events(), 30.0)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                me.poll.close()
                me.poll.writer = None
                continue
            for event in events:
                if event[0] == "gotMessage":
                    into.append(event[1])
                    if event[1] in sent:
                        result["latencies"].append(time.perf_counter() - sent[event[1]])

    listeners = [asyncio.create_task(listen(b, got["b"])), asyncio.create_task(listen(a, got["a"]))]
    await asyncio.gather(talk(a, "a"), talk(b, "b"))
    deadline = time.monotonic() + REQUEST_TIMEOUT
    while len(got["a"]) + len(got["b"]) < len(sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    done.set()
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    a.close()
    b.close()
    for side, tag in (("b", "a"), ("a", "b")):
        tokens = got[side]
        result["duplicates"] += len(tokens) - len(set(tokens))
        numbers = [int(t[1:]) for t in tokens if t.startswith(tag)]
        result["out_of_order"] += sum(1 for x, y in zip(numbers, numbers[1:]) if y < x)
    result["sent"] = len(sent)
    result["received"] = len((set(got["a"]) | set(got["b"])) & set(sent))
    return result


async def run(daemon: Daemon) -> tuple[Attack, dict, tuple[int, int], int]:
    attack = Attack(daemon.port)
    attack.start()
    await attack.wait_open(30.0)
    await asyncio.sleep(1.0)
    limit_under_attack = daemon.nofile()
    fds = daemon.open_fds()
    result = await probe(daemon.url, CHAT_SECONDS)
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
    planned = round(2 * CHAT_SECONDS / GAP)
    if not result["paired"]:
        lost = planned  # the pair never met: every message it came to send is lost
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
         failed_requests=result["failed_requests"], paired=result["paired"], chat_seconds=CHAT_SECONDS,
         note="sent - received (unique tokens); if the pair never met: the messages it planned to send")
    emit("halfopen_attacker_connections", float(attack.connects), "connections",
         closed_by_server=attack.closed_by_server, connect_failures=attack.connect_failures,
         daemon_log_bytes=log_growth, accept_error_lines=accept_errors)


if __name__ == "__main__":
    main()
