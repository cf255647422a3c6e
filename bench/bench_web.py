"""Web platform figures over real HTTP on loopback, server in its own process: one pair's message
rate and latency, 1,000 pairs pairing at once (time, RSS, idle CPU), a healthy pair's /send latency
while 10,000 long polls from one address are open."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time

from urllib.parse import urlencode

from bench.common import emit, percentile

# Per-address caps are raised: every scenario runs from loopback addresses on purpose.
SERVER_CONFIG = {
    "bridge": {
        "user_rate": 1e9, "user_burst": 1_000_000, "stranger_rate": 1e9, "stranger_burst": 1_000_000,
        "inbox_size": 100_000, "log_level": "WARNING",
    },
    "platforms": {"web": {
        "plugin": "web", "bind": "127.0.0.1:0", "poll_window": 20.0, "client_timeout": 120.0,
        "max_sessions_per_address": 50_000, "max_polls_per_address": 50_000, "max_queue": 100_000,
        "max_connections_per_address": 50_000, "listen_backlog": 4096,
        "address_keys": False,  # every load client its own person: no start throttle on one address
    }},
    "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0.0}},
}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---- the server process --------------------------------------------------------------------------


async def serve() -> None:
    """Run a bridge with the web platform; print its port; stop when stdin closes."""
    from bridge.app import Bridge
    from bridge.config import parse_config
    from bridge.logsetup import setup_logging
    from bridge.store import MemoryStore

    setup_logging("text", "WARNING")
    async with Bridge(parse_config(SERVER_CONFIG, env=False), store=MemoryStore()) as bridge:
        print(f"PORT {bridge.platforms['web'].port}", flush=True)
        closed = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), lambda: os.read(sys.stdin.fileno(), 4096) or closed.set())
        await closed.wait()


class Server:
    """The server subprocess, with its RSS and CPU time from /proc."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_web", "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- a minimal protocol client -------------------------------------------------------------------


class Conn:
    """One keep-alive HTTP/1.1 connection written by hand: the bench measures the server, and
    aiohttp's client costs more CPU per request than the server does."""

    def __init__(self, url: str, local: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port, self.local = host, int(port), local
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, local_addr=(self.local, 0))
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if method == "POST":
            head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Client:
    """One protocol client id; polls on its own connection, acts on another."""

    def __init__(self, url: str, local: str = "127.0.0.1", *, one_connection: bool = False) -> None:
        self.action = Conn(url, local)
        # A client that never acts while it polls (an idle one) needs a single connection.
        self.poll = self.action if one_connection else Conn(url, local)
        self.id = ""

    async def start(self, **params: str) -> list:
        query = urlencode({"firstevents": "1", **params})
        _, body = await self.action.request("GET", "/start?" + query)
        data = json.loads(body)
        self.id = data["clientID"]
        return data["events"]

    async def post(self, path: str, conn: Conn | None = None, **fields: str) -> str:
        body = urlencode({"id": self.id, **fields}).encode()
        _, answer = await (conn or self.action).request("POST", path, body)
        return answer.decode()

    async def events(self) -> list:
        _, answer = await self.poll.request("POST", "/events", urlencode({"id": self.id}).encode())
        return json.loads(answer) or []

    async def until_connected(self, first: list) -> None:
        events = first
        while not any(e[0] == "connected" for e in events):
            events = await self.events()

    def close(self) -> None:
        self.action.close()
        self.poll.close()


# ---- scenarios -----------------------------------------------------------------------------------

SENDERS = 4  # connections per side sending at once (a browser also keeps several open)


async def one_pair(url: str, n: int = 1000) -> None:
    """A and B each send n/2 messages to the other at once; latency = send start to receipt."""
    a, b = Client(url), Client(url)
    first_a, first_b = await a.start(), await b.start()
    await asyncio.gather(a.until_connected(first_a), b.until_connected(first_b))
    half = n // 2
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def talk(me: Client, tag: str) -> None:
        conns = [Conn(url, "127.0.0.1") for _ in range(SENDERS)]

        async def sender(k: int) -> None:
            for i in range(k, half, SENDERS):
                text = f"{tag}{i}"
                sent[text] = time.perf_counter()
                assert await me.post("/send", conns[k], msg=text) == "win"

        await asyncio.gather(*(sender(k) for k in range(SENDERS)))
        for conn in conns:
            conn.close()

    async def listen(me: Client) -> None:
        got = 0
        while got < half:
            for event in await me.events():
                if event[0] == "gotMessage":
                    latencies.append(time.perf_counter() - sent[event[1]])
                    got += 1

    began = time.perf_counter()
    await asyncio.gather(talk(a, "a"), talk(b, "b"), listen(a), listen(b))
    elapsed = time.perf_counter() - began
    a.close()
    b.close()
    emit("web_pair_messages_per_second", n / elapsed, "msg/s", ">= 3000", messages=n, senders_per_side=SENDERS)
    emit("web_pair_latency_p50", percentile(latencies, 50) * 1000, "ms")
    emit("web_pair_latency_p99", percentile(latencies, 99) * 1000, "ms", "<= 20")


async def many_pairs(server: Server, pairs: int = 1000) -> None:
    """2×pairs clients start at once and long-poll until paired; then they idle in long polls."""
    clients = [Client(server.url, one_connection=True) for _ in range(2 * pairs)]
    began = time.perf_counter()

    async def join(c: Client) -> None:
        await c.until_connected(await c.start())

    await asyncio.gather(*(join(c) for c in clients))
    elapsed = time.perf_counter() - began
    emit("web_pairs_all_paired_seconds", elapsed, "s", "<= 3", pairs=pairs)
    polls = [asyncio.create_task(c.events()) for c in clients]
    await asyncio.sleep(2.0)
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    await asyncio.sleep(5.0)
    cpu = (server.cpu_seconds() - cpu0) / (time.perf_counter() - t0) * 100
    emit("web_pairs_server_rss", server.rss() / 2**20, "MiB", "<= 100", pairs=pairs)
    emit("web_pairs_idle_cpu", cpu, "%", "< 5", open_polls=len(polls))
    for task in polls:
        task.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
    for c in clients:
        c.close()


async def flood(server: Server, idle: int = 10_000, messages: int = 300) -> None:
    """`idle` clients from 127.0.0.1 each hold a long poll (askers: they wait and never pair);
    a healthy pair from 127.0.0.2 chats; its /send round trips are measured."""
    url = server.url
    crowd = [Client(url, "127.0.0.1", one_connection=True) for _ in range(idle)]
    sem = asyncio.Semaphore(200)

    async def enter(c: Client) -> None:
        async with sem:
            await c.start(ask="Will anyone answer this question?")

    await asyncio.gather(*(enter(c) for c in crowd))

    async def hold(c: Client) -> None:
        while True:
            await c.events()

    holders = [asyncio.create_task(hold(c)) for c in crowd]
    probe = Conn(url, "127.0.0.2")
    async with asyncio.timeout(120):
        while True:  # wait until the server holds every poll open
            _, text = await probe.request("GET", "/metrics")
            line = next(ln for ln in text.decode().splitlines() if ln.startswith("stranger_bridge_web_polls_open"))
            if float(line.split()[-1]) >= idle:  # prometheus_client writes gauges as floats
                break
            await asyncio.sleep(0.5)
    probe.close()
    a, b = Client(url, "127.0.0.2"), Client(url, "127.0.0.2")
    first_a, first_b = await a.start(), await b.start()
    await asyncio.gather(a.until_connected(first_a), b.until_connected(first_b))
    received = 0

    async def listen() -> None:
        nonlocal received
        while received < messages:
            received += sum(1 for e in await b.events() if e[0] == "gotMessage")

    listener = asyncio.create_task(listen())
    times = []
    for i in range(messages):
        t = time.perf_counter()
        assert await a.post("/send", msg=f"m{i}") == "win"
        times.append(time.perf_counter() - t)
        await asyncio.sleep(0.005)
    await asyncio.wait_for(listener, 30)
    emit("web_flood_healthy_send_p99", percentile(times, 99) * 1000, "ms", "< 500", idle_polls=idle, delivered=received)
    emit("web_flood_server_rss", server.rss() / 2**20, "MiB", idle_polls=idle)
    for task in holders:
        task.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    for c in (*crowd, a, b):
        c.close()


def main() -> None:
    raise_fd_limit()
    os.environ.setdefault("NO_PROXY", "*")
    only = set(sys.argv[1:])
    for scenario in (one_pair, many_pairs, flood):
        if only and scenario.__name__ not in only:
            continue
        server = Server()
        try:
            asyncio.run(scenario(server.url) if scenario is one_pair else scenario(server))
        finally:
            server.stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        raise_fd_limit()
        asyncio.run(serve())
    else:
        main()
