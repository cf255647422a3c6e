"""Bench of the remandzana backend: latency it adds over the server's own, and what an idle session costs."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import statistics
import subprocess
import sys
import time

import aiohttp

from bridge.events import Connected, Message, Mode, Start
from plugins.remandzana.backend import RemandzanaBackend, RemandzanaConfig
from tests.remandzana.server import RemandzanaServer

MESSAGES = 400
OUTBOUND = 1500
IDLE_SESSIONS = 50
IDLE_SECONDS = 5.0


def emit(name: str, value: float, unit: str, target: str) -> None:
    print(json.dumps({"name": name, "value": round(value, 4), "unit": unit, "target": target}), flush=True)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


class Raw:
    """A bare aiohttp client of the chat page: what "the server's own latency" is measured with."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base
        self.page = ""
        self.fields: dict[str, str] = {}
        self.seen: dict[str, float] = {}
        self.arrived = asyncio.Event()

    async def open(self, path: str) -> None:
        self.response = await self.http.get(self.base + path)
        self.task = asyncio.get_running_loop().create_task(self._read())
        while '<article id="lines">' not in self.page:
            await self.arrived.wait()
            self.arrived.clear()
        srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', self.page).group(1))
        self.fields = dict(re.findall(r'<input [^>]*name="(\w+)"[^>]*value="([^"]*)"', srcdoc))

    async def _read(self) -> None:
        try:
            async for data in self.response.content.iter_any():
                now = time.perf_counter()
                text = data.decode()
                self.page += text
                for tag in re.findall(r"tok(\d+)x", text):
                    self.seen.setdefault(tag, now)
                self.arrived.set()
        except aiohttp.ClientError:
            pass  # closed at the end of the run

    async def say(self, text: str) -> None:
        async with self.http.post(self.base + "/send", data={**self.fields, "message": text}) as resp:
            await resp.read()

    async def wait(self, tag: str) -> float:
        while tag not in self.seen:
            await self.arrived.wait()
            self.arrived.clear()
        return self.seen[tag]


async def latency() -> None:
    server = RemandzanaServer(event_driven=True)  # no 0.5 s poll: leaves the client's own cost visible
    url = await server.start()
    backend = RemandzanaBackend("rz", RemandzanaConfig(plugin="remandzana", url=url))
    await backend.start()
    async with aiohttp.ClientSession() as http:
        chat = await backend.connect(Start(mode=Mode.GROUP))
        events = chat.events()
        await server.wait_people(1)
        sender, observer = Raw(http, url), Raw(http, url)
        await sender.open("/three")
        await observer.open("/three")
        while not isinstance(await anext(events), Connected):
            pass
        # A three-person room: each line of the sender reaches the backend and a bare client at once.
        inbound: list[float] = []
        for i in range(MESSAGES):
            tag = f"{i}"
            await sender.say(f"tok{tag}x")
            while True:
                event = await anext(events)
                if isinstance(event, Message) and event.text == f"tok{tag}x":
                    got = time.perf_counter()
                    break
            inbound.append((got - await observer.wait(tag)) * 1000)
        emit("remandzana_inbound_added_p99", p99(inbound), "ms", "<= 1 ms over a bare client of the same stream")
        # Outbound: the backend's send() against a bare POST of the same room, interleaved, both
        # timed until the server answered (the line is then in every member's feed).
        ours: list[float] = []
        bare: list[float] = []
        for i in range(OUTBOUND):
            t0 = time.perf_counter()
            await chat.send(Message(f"ours {i}"))
            t1 = time.perf_counter()
            await sender.say(f"bare {i}")
            t2 = time.perf_counter()
            ours.append((t1 - t0) * 1000)
            bare.append((t2 - t1) * 1000)
        emit("remandzana_outbound_p99_server_own", p99(bare), "ms", "reference: a bare POST /send")
        emit("remandzana_outbound_added_p99", p99(ours) - p99(bare), "ms", "<= 1 ms over a bare POST /send")
        emit("remandzana_outbound_added_median", statistics.median(ours) - statistics.median(bare), "ms", "info")
        await chat.aclose()
        sender.response.close()
        observer.response.close()
    await backend.stop()
    await server.stop()


def established_to(port: int) -> int:
    count = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(name):
            continue
        with open(name) as f:
            next(f)
            for row in f:
                parts = row.split()
                if int(parts[2].split(":")[1], 16) == port and parts[3] == "01" and _mine(parts[9]):
                    count += 1
    return count


_INODES: set[str] = set()


def _mine(inode: str) -> bool:
    # Only sockets of this process (the server runs in another one).
    if not _INODES:
        for fd in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                _INODES.add(link[8:-1])
    return inode in _INODES


async def idle() -> None:
    # The real server's quirks (0.5 s poll, filler) in another process, so only our CPU is counted.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.remandzana.server", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1])
        backend = RemandzanaBackend("rz", RemandzanaConfig(plugin="remandzana", url=url))
        await backend.start()
        chats = [await backend.connect(Start()) for _ in range(IDLE_SESSIONS)]
        iterators = [c.events() for c in chats]

        async def until_connected(it) -> None:
            while not isinstance(await anext(it), Connected):
                pass

        await asyncio.wait_for(asyncio.gather(*(until_connected(it) for it in iterators)), 30)
        drains = [asyncio.ensure_future(_drain(it)) for it in iterators]  # as a session would
        await asyncio.sleep(1.0)
        _INODES.clear()
        conns = established_to(port)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(IDLE_SECONDS)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        emit("remandzana_connections_per_session", conns / IDLE_SESSIONS, "connections", "== 1")
        emit("remandzana_idle_cpu_per_session", 100 * cpu / wall / IDLE_SESSIONS, "% of one core", "<= 0.1 (no busy loop)")
        for chat in chats:
            await chat.aclose()
        for task in drains:
            task.cancel()
        await backend.stop()
    finally:
        proc.terminate()
        proc.wait(10)


async def _drain(it) -> None:
    async for _ in it:
        pass


def main() -> None:
    asyncio.run(latency())
    asyncio.run(idle())


if __name__ == "__main__":
    main()
