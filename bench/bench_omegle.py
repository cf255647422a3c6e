"""Omegle client figures: latency the backend adds over its server's own, and 1,000 concurrent
client sessions (against the test server and the bridge's own web platform) in ≤100 MB RSS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import emit, percentile, rss_bytes
from bridge.abc import Platform, PluginConfig
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Connected, Message, Room, Start
from bridge.store import MemoryStore
from plugins.omegle.backend import OmegleBackend, OmegleConfig

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 2000
SESSIONS = 1000


# ---- servers in their own processes ------------------------------------------------------------


@contextlib.contextmanager
def test_server(poll_window: float = 20.0):
    """The tests' Omegle-protocol server in a child process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.omegle.server", str(poll_window)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        if not url.startswith("http"):
            raise RuntimeError("the test server did not start")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def web_bridge():
    """A stranger-bridge with the web platform and the hub in a child process; yields its URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp, "bridge.toml")
        cfg.write_text(
            f"""
[bridge]
state = "{tmp}/state.sqlite3"
log_level = "WARNING"
user_rate = 1000.0
stranger_rate = 1000.0
[platforms.web]
plugin = "web"
bind = "127.0.0.1:{port}"
max_sessions_per_address = 10000
max_polls_per_address = 10000
max_connections_per_address = 10000
address_keys = false
[backends.hub]
plugin = "hub"
repair_cooldown = 0
"""
        )
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "-c", str(cfg)], cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the web bridge did not start")
                time.sleep(0.1)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---- latency -----------------------------------------------------------------------------------


class RawClient:
    """The least a client can do: /start, then POST /events in a loop, JSON-decoded into a queue."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.id = ""
        self.task: asyncio.Task | None = None

    async def start(self) -> RawClient:
        async with self.http.get(self.url + "/start", params={"firstevents": "1", "randid": "BENCH234", "lang": "en"}) as r:
            data = json.loads(await r.text())
        self.id = data["clientID"]
        for event in data["events"]:
            self.inbox.put_nowait(event)
        self.task = asyncio.get_running_loop().create_task(self._poll())
        return self

    async def _poll(self) -> None:
        while True:
            async with self.http.post(self.url + "/events", data={"id": self.id}) as r:
                batch = json.loads(await r.text())
            for event in batch or ():
                self.inbox.put_nowait(event)

    async def next(self, name: str) -> list:
        while True:
            event = await self.inbox.get()
            if event[0] == name:
                return event

    async def send(self, text: str) -> None:
        async with self.http.post(self.url + "/send", data={"id": self.id, "msg": text}) as r:
            await r.read()

    def stop(self) -> None:
        if self.task:
            self.task.cancel()


async def next_message(queue: asyncio.Queue) -> Message:
    while True:
        event = await queue.get()
        if type(event) is Message:
            return event


async def latency(url: str, label: str) -> None:
    backend = OmegleBackend("omegle", OmegleConfig(plugin="omegle", servers=[url], poll_timeout=90))
    async with backend, aiohttp.ClientSession() as http:
        chat = await backend.connect(Start())
        events: asyncio.Queue = asyncio.Queue()

        async def pump() -> None:
            async for event in chat.events():
                events.put_nowait(event)

        pumping = asyncio.get_running_loop().create_task(pump())
        while chat.handle is None:  # /start answered: we are queued
            await asyncio.sleep(0.01)
        partner = await RawClient(http, url).start()  # pairs with our chat
        while type(await events.get()) is not Connected:
            pass
        raw_a = await RawClient(http, url).start()
        raw_b = await RawClient(http, url).start()
        await raw_a.next("connected")
        await raw_b.next("connected")
        recv_backend, recv_raw, send_backend, send_raw = [], [], [], []
        for n in range(SAMPLES):
            # stranger → us: through the backend, then through a bare client, interleaved
            t0 = time.perf_counter()
            await partner.send(f"m{n}")
            await next_message(events)
            recv_backend.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await raw_b.send(f"m{n}")
            await raw_a.next("gotMessage")
            recv_raw.append(time.perf_counter() - t0)
            # us → stranger: chat.send against a bare POST /send
            t0 = time.perf_counter()
            await chat.send(Message(f"r{n}"))
            send_backend.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await raw_a.send(f"r{n}")
            send_raw.append(time.perf_counter() - t0)
        for c in (partner, raw_a, raw_b):
            c.stop()
        pumping.cancel()
        await chat.aclose()
    ms = 1000.0
    for name, ours, base in (("receive", recv_backend, recv_raw), ("send", send_backend, send_raw)):
        p99_ours, p99_base = percentile(ours, 99) * ms, percentile(base, 99) * ms
        emit(f"omegle.{label}.{name}_added_latency_p99", p99_ours - p99_base, "ms", "<= 1",
             backend_p99_ms=round(p99_ours, 3), server_p99_ms=round(p99_base, 3),
             backend_p50_ms=round(percentile(ours, 50) * ms, 3), server_p50_ms=round(percentile(base, 50) * ms, 3),
             samples=SAMPLES)


# ---- 1,000 concurrent sessions -----------------------------------------------------------------


class Sink(Platform):
    """Counts Connected and Message deliveries of every room."""

    Config = PluginConfig

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.connected = 0
        self.messages = 0
        self.changed = asyncio.Event()

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def deliver(self, room: Room, event) -> None:
        if type(event) is Connected:
            self.connected += 1
            self.changed.set()
        elif type(event) is Message:
            self.messages += 1
            self.changed.set()

    async def until(self, test, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not test():
                self.changed.clear()
                await self.changed.wait()


async def thousand(url: str, label: str) -> None:
    rss_before = rss_bytes()
    config = parse_config(
        {
            "bridge": {"default_backend": "omegle", "inbox_size": 100},
            "platforms": {"sink": {"plugin": "bench.bench_omegle:Sink"}},
            "backends": {"omegle": {"plugin": "omegle", "servers": [url], "poll_timeout": 90}},
        },
        env=False,
    )
    async with Bridge(config, store=MemoryStore()) as bridge:
        sink: Sink = bridge.platforms["sink"]  # type: ignore[assignment]
        started = time.perf_counter()
        for n in range(SESSIONS):
            sink.submit(Room("sink", str(n)), Start())
            if n % 50 == 49:
                await asyncio.sleep(0.01)
        await sink.until(lambda: sink.connected >= SESSIONS, 120)
        paired = time.perf_counter() - started
        for n in range(SESSIONS):
            sink.submit(Room("sink", str(n)), Message(f"hello {n}"))
        await sink.until(lambda: sink.messages >= SESSIONS, 120)
        await asyncio.sleep(1.0)  # idle long polls held open
        rss = rss_bytes()
        emit(f"omegle.{label}.rss_1000_sessions", rss / 2**20, "MB", "<= 100",
             rss_before_mb=round(rss_before / 2**20, 1), sessions=SESSIONS, seconds_to_pair_all=round(paired, 2))


def _web_available() -> bool:
    return (ROOT / "plugins" / "web" / "platform.py").exists()


def _thousand_in_own_process(target: str) -> None:
    # RSS never shrinks: each 1,000-session figure is measured in a fresh process.
    subprocess.run([sys.executable, "-m", "bench.bench_omegle", "thousand", target], cwd=ROOT, check=True, timeout=300)


def _thousand(target: str) -> None:
    server = test_server if target == "test_server" else web_bridge
    with server() as url:
        asyncio.run(thousand(url, target))


def main() -> None:
    with test_server() as url:
        asyncio.run(latency(url, "test_server"))
    _thousand_in_own_process("test_server")
    if _web_available():
        with web_bridge() as url:
            asyncio.run(latency(url, "web_platform"))
        _thousand_in_own_process("web_platform")
    else:
        emit("omegle.web_platform.missing", 1, "flag", "plugins/web/platform.py must exist")


if __name__ == "__main__":
    if sys.argv[1:2] == ["thousand"]:
        _thousand(sys.argv[2])
    else:
        main()
