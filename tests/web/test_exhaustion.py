"""Connection exhaustion: per-address and total caps, header and body timeouts, under a low descriptor limit."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import secrets
import signal
import sys
from pathlib import Path

import aiohttp

from tests.helpers import running

from .client import RawClient
from .conftest import web_config
from .test_security import source

ROOT = Path(__file__).resolve().parents[2]
HALF = b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Le"  # a request head that never ends


async def closed_by_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Wait until the server closes (or resets) the connection; what it wrote before."""
    try:
        return await reader.read()
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def half_open(address: str, port: int) -> asyncio.Task:
    """A connection from `address` that sends a half request head; the task ends when the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    try:
        writer.write(HALF)
        await writer.drain()
    except ConnectionError:
        pass
    return asyncio.create_task(closed_by_server(reader, writer))


def low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))  # hard too: nothing can raise it again


class Daemon:
    """`python -m bridge run` (web platform and hub) under a 256-descriptor limit; its log collected."""

    def __init__(self, tmp_path: Path, web: str) -> None:
        self.config = tmp_path / "bridge.toml"
        self.config.write_text(f"""
[bridge]
state = "{tmp_path / 'state.sqlite3'}"
user_rate = 1000.0
user_burst = 1000
stranger_rate = 1000.0
stranger_burst = 1000
[platforms.web]
plugin = "web"
bind = "127.0.0.1:0"
{web}
[backends.hub]
plugin = "hub"
repair_cooldown = 0.0
""")
        self.log: list[str] = []

    async def __aenter__(self) -> Daemon:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", "-c", str(self.config), cwd=ROOT, env=env,
            stderr=asyncio.subprocess.PIPE, preexec_fn=low_limit,
        )
        listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def read_log() -> None:
            assert self.proc.stderr is not None
            async for raw in self.proc.stderr:
                line = raw.decode(errors="replace")
                self.log.append(line)
                found = re.search(r"web: listening on http://127\.0\.0\.1:(\d+)", line)
                if found and not listening.done():
                    listening.set_result(int(found.group(1)))

        self.reader = asyncio.create_task(read_log())
        self.port = await asyncio.wait_for(listening, 30)
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        self.code = await asyncio.wait_for(self.proc.wait(), 20)
        await asyncio.wait_for(self.reader, 10)

    def lines(self, text: str) -> list[str]:
        return [line for line in self.log if text in line]


async def chat_through(url: str, address: str) -> None:
    """A probe pair from `address` meets through the hub and exchanges 20 unique tokens each way."""
    async with source(address) as probe_http:
        a, b = RawClient(probe_http, url), RawClient(probe_http, url)
        await a.start()
        await b.start()
        await a.until("connected")
        await b.until("connected")
        for sender, receiver in ((a, b), (b, a)):
            sent = [f"probe-{secrets.token_hex(4)}-{i}" for i in range(20)]
            for token in sent:
                assert await sender.post("/send", msg=token) == (200, "win")
            got: list[str] = []
            while len(got) < len(sent):
                got.append((await receiver.until("gotMessage"))[1])
            assert got == sent
        async with probe_http.get(url + "/healthz") as response:
            assert response.status == 200 and await response.text() == "ok"


async def metric(url: str, pattern: str) -> int:
    async with source("127.0.0.3") as http, http.get(url + "/metrics") as response:
        found = re.search(pattern + r" (\d+)", await response.text())
    return int(found.group(1)) if found else 0


async def test_half_sent_requests_from_one_address_under_a_low_descriptor_limit(tmp_path):
    flood: list[asyncio.Task] = []
    async with Daemon(tmp_path, "header_timeout = 120.0\nmax_connections_per_address = 64") as daemon:
        try:
            for _ in range(300):
                flood.append(await half_open("127.0.0.1", daemon.port))
            # every connection beyond the per-address cap is closed at once
            async with asyncio.timeout(20):
                while sum(task.done() for task in flood) < 300 - 64:
                    await asyncio.sleep(0.05)
            await chat_through(daemon.url, "127.0.0.2")  # meanwhile a probe pair loses nothing
            refused = await metric(daemon.url, r'web_refused_total\{platform="web",reason="connections_per_address"\}')
            assert refused >= 300 - 64
            assert sum(task.done() for task in flood) <= 300 - 64 + 2  # the others are still held open
        finally:
            for task in flood:
                task.cancel()
    assert daemon.code == 0, "".join(daemon.log)
    assert not daemon.lines("out of system resource"), "".join(daemon.log[-20:])  # descriptors never ran out


async def test_running_out_of_descriptors_pauses_accepting_with_one_log_line(tmp_path):
    # caps above the descriptor limit: this time descriptors do run out
    flood: list[asyncio.Task] = []
    web = "header_timeout = 120.0\nmax_connections_per_address = 1000\nmax_connections = 1000"
    async with Daemon(tmp_path, web) as daemon:
        try:
            for _ in range(300):
                flood.append(await half_open("127.0.0.1", daemon.port))
            async with asyncio.timeout(20):
                while not daemon.lines("cannot accept connections"):
                    await asyncio.sleep(0.05)
            for task in flood:  # the flood ends; the server serves again
                task.cancel()
            await asyncio.gather(*flood, return_exceptions=True)
            await chat_through(daemon.url, "127.0.0.2")
            assert await metric(daemon.url, r'http_errors_total\{platform="web",reason="accept_EMFILE"\}') >= 1
        finally:
            for task in flood:
                task.cancel()
    assert daemon.code == 0, "".join(daemon.log)
    assert len(daemon.lines("cannot accept connections")) == 1, "".join(daemon.log[-20:])
    assert not daemon.lines("out of system resource")  # asyncio's own accept loop never ran


async def test_half_sent_heads_and_bodies_are_cut_after_their_timeouts(http):
    async with running(web_config(header_timeout=1.0, body_timeout=1.0)) as bridge:
        web = bridge.platforms["web"]
        head = await half_open("127.0.0.1", web.port)
        assert await asyncio.wait_for(head, 15) == b""  # closed, nothing answered
        assert web.counted("refused", "slow_head") == 1
        reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
        writer.write(b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 100\r\n\r\nid=abc")
        await writer.drain()
        answer = await asyncio.wait_for(closed_by_server(reader, writer), 15)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:60]
        assert web.counted("refused", "slow_body") == 1
        async with http.get(web.url + "/healthz") as response:  # and the server serves on
            assert response.status == 200


async def test_a_kept_alive_connection_may_idle_longer_than_the_head_timeout():
    async with running(web_config(header_timeout=0.5, keepalive_timeout=60.0)) as bridge:
        web = bridge.platforms["web"]
        reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
        try:
            for _ in range(2):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                await writer.drain()
                async with asyncio.timeout(10):
                    head = await reader.readuntil(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(2) == b"ok"
                await asyncio.sleep(1.5)  # idle three head timeouts: the connection is not closed for it
        finally:
            writer.close()
        assert web.counted("refused", "slow_head") == 0


async def test_total_connections_are_capped_across_addresses(http):
    async with running(web_config(max_connections=5, header_timeout=60.0)) as bridge:
        web = bridge.platforms["web"]
        held = [await half_open(f"127.0.0.{3 + i}", web.port) for i in range(10)]
        async with asyncio.timeout(15):
            while sum(task.done() for task in held) < 5:
                await asyncio.sleep(0.05)
        assert web.counted("refused", "connections") == 5 and web.gate.count == 5
        for task in held:
            task.cancel()
        async with asyncio.timeout(15):  # released connections make room again
            while web.gate.count:
                await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as fresh, fresh.get(web.url + "/healthz") as response:
            assert response.status == 200
