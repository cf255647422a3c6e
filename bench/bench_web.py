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

import aiohttp

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
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


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


class Client:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url, self.id = http, url, None

    async def start(self, **params: str) -> list:
        async with self.http.get(self.url + "/start", params={"firstevents": "1", **params}) as r:
            data = json.loads(await r.text())
        self.id = data["clientID"]
        return data["events"]

    async def post(self, path: str, **fields: str) -> str:
        async with self.http.post(self.url + path, data={"id": self.id, **fields}) as r:
            return await r.text()

    async def events(self) -> list:
        return json.loads(await self.post("/events")) or []

    async def until_connected(self, first: list) -> None:
        events = first
        while not any(e[0] == "connected" for e in events):
            events = await self.events()


def session(local: str = "127.0.0.1") -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, local_addr=(local, 0), force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))


# ---- scenarios -----------------------------------------------------------------------------------


async def one_pair(url: str, n: int = 1000) -> None:
    """A and B each send n/2 messages to the other at once; latency = send start to receipt."""
    async with session() as http:
        a, b = Client(http, url), Client(http, url)
        first_a, first_b = await a.start(), await b.start()
        await asyncio.gather(a.until_connected(first_a), b.until_connected(first_b))
        half = n // 2
        sent: dict[str, float] = {}
        latencies: list[float] = []

        async def talk(me: Client, tag: str) -> None:
            for i in range(half):
                text = f"{tag}{i}"
                sent[text] = time.perf_counter()
                await me.post("/send", msg=text)

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
    emit("web_pair_messages_per_second", n / elapsed, "msg/s", ">= 3000", messages=n)
    emit("web_pair_latency_p50", percentile(latencies, 50) * 1000, "ms")
    emit("web_pair_latency_p99", percentile(latencies, 99) * 1000, "ms", "<= 20")


async def many_pairs(server: Server, pairs: int = 1000) -> None:
    """2×pairs clients start at once and long-poll until paired; then they idle in long polls."""
    url = server.url
    async with session() as http:
        clients = [Client(http, url) for _ in range(2 * pairs)]
        began = time.perf_counter()

        async def join(c: Client) -> None:
            await c.until_connected(await c.start())

        await asyncio.gather(*(join(c) for c in clients))
        elapsed = time.perf_counter() - began
        emit("web_pairs_all_paired_seconds", elapsed, "s", "<= 3", pairs=pairs)
        # every client now holds one idle long poll
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


async def flood(server: Server, idle: int = 10_000, messages: int = 300) -> None:
    """`idle` clients from 127.0.0.1 each hold a long poll (askers: they wait and never pair);
    a healthy pair from 127.0.0.2 chats; its /send round trips are measured."""
    url = server.url
    async with session("127.0.0.1") as crowd_http, session("127.0.0.2") as healthy_http:
        crowd = [Client(crowd_http, url) for _ in range(idle)]
        sem = asyncio.Semaphore(500)

        async def enter(c: Client) -> None:
            async with sem:
                await c.start(ask="Will anyone answer this question?")

        await asyncio.gather(*(enter(c) for c in crowd))

        async def hold(c: Client) -> None:
            while True:
                await c.events()

        holders = [asyncio.create_task(hold(c)) for c in crowd]
        async with asyncio.timeout(120):
            while True:  # wait until the server holds every poll open
                async with healthy_http.get(url + "/metrics") as r:
                    text = await r.text()
                line = next(ln for ln in text.splitlines() if ln.startswith("stranger_bridge_web_polls_open"))
                if int(line.split()[-1]) >= idle:
                    break
                await asyncio.sleep(0.5)
        a, b = Client(healthy_http, url), Client(healthy_http, url)
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
        emit("web_flood_healthy_send_p99", percentile(times, 99) * 1000, "ms", "< 500", idle_polls=idle,
             delivered=received)
        emit("web_flood_server_rss", server.rss() / 2**20, "MiB", idle_polls=idle)
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)


def main() -> None:
    raise_fd_limit()
    os.environ.setdefault("NO_PROXY", "*")
    for scenario in (one_pair, many_pairs, flood):
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
