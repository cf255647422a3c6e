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


async def test_half_sent_requests_from_one_address_under_a_low_descriptor_limit(tmp_path):
    config = tmp_path / "bridge.toml"
    config.write_text(f"""
[bridge]
state = "{tmp_path / 'state.sqlite3'}"
user_rate = 1000.0
user_burst = 1000
stranger_rate = 1000.0
stranger_burst = 1000
[platforms.web]
plugin = "web"
bind = "127.0.0.1:0"
header_timeout = 120.0
max_connections_per_address = 64
[backends.hub]
plugin = "hub"
repair_cooldown = 0.0
""")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "run", "-c", str(config), cwd=ROOT, env=env,
        stderr=asyncio.subprocess.PIPE, preexec_fn=low_limit,
    )
    log: list[str] = []
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def read_log() -> None:
        assert daemon.stderr is not None
        async for raw in daemon.stderr:
            line = raw.decode(errors="replace")
            log.append(line)
            found = re.search(r"web: listening on http://127\.0\.0\.1:(\d+)", line)
            if found and not listening.done():
                listening.set_result(int(found.group(1)))

    reader = asyncio.create_task(read_log())
    flood: list[asyncio.Task] = []
    try:
        port = await asyncio.wait_for(listening, 30)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            flood.append(await half_open("127.0.0.1", port))
        # every connection beyond the per-address cap is closed at once
        async with asyncio.timeout(20):
            while sum(task.done() for task in flood) < 300 - 64:
                await asyncio.sleep(0.05)
        # a probe pair from another address chats through the hub meanwhile: nothing lost
        async with source("127.0.0.2") as probe_http:
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
            async with probe_http.get(url + "/metrics") as response:
                metrics = await response.text()
            refused = re.search(r'refused_total\{platform="web",reason="connections_per_address"\} (\d+)', metrics)
            assert refused and int(refused.group(1)) >= 300 - 64
        assert sum(task.done() for task in flood) <= 300 - 64 + 2  # the others are still held open (no timeout yet)
    finally:
        for task in flood:
            task.cancel()
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(daemon.wait(), 20)
        await asyncio.wait_for(reader, 10)
    assert code == 0, "".join(log)
    # descriptors never ran out (had they, the core's RepeatFilter lets REPEAT_BURST lines through)
    assert not [line for line in log if "out of system resource" in line], "".join(log[-20:])


async def test_half_sent_heads_and_bodies_are_cut_after_their_timeouts(http):
    async with running(web_config(header_timeout=1.0, body_timeout=1.0)) as bridge:
        web = bridge.platforms["web"]
        head = await half_open("127.0.0.1", web.port)
        assert await asyncio.wait_for(head, 15) == b""  # closed, nothing answered
        reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
        writer.write(b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 100\r\n\r\nid=abc")
        await writer.drain()
        answer = await asyncio.wait_for(closed_by_server(reader, writer), 15)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:60]
        assert web.counted("refused", "slow_body") == 1
        async with http.get(web.url + "/healthz") as response:  # and the server serves on
            assert response.status == 200


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
