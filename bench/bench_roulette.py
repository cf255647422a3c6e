"""Roulette backend latency: a message through the local chat-roulette server, raw clients vs our backend
(chat objects alone, and through the router between two rooms); the backend should add at most 1 ms p99.
The server runs in a process of its own, on cores of its own (`python -m bench.bench_roulette serve`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from bench.common import Path, Sink, cores_apart, emit_added_latency, interleaved_latencies, server_process
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Connected, Message, Room, Start
from bridge.store import MemoryStore
from plugins.roulette.backend import RouletteBackend, RouletteConfig
from tests.roulette.server import RouletteServer

SAMPLES = 300
GAP = 0.05  # the three paths take turns: 6.7 messages/s each, + 1 pong/s, under 8 lines/s: no merging


async def _raw(port: int) -> Path:
    """Two bare clients that pong every ping: the server's own latency."""
    path = Path()
    paired = asyncio.Event()

    async def client(uco: str) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        keys = {"uco": uco, "session": "1", "nonce": "1"}
        writer.write((json.dumps({"cmd": "connect", **keys}) + "\n").encode())

        async def loop() -> None:
            while line := await reader.readline():
                obj = json.loads(line)
                if obj.get("cmd") == "ping":
                    writer.write((json.dumps({"cmd": "pong", **keys}) + "\n").encode())
                elif obj.get("cmd") == "pair":
                    paired.set()
                elif obj.get("cmd") == "comm":
                    path.arrived[obj["data"]] = time.perf_counter()

        path.cleanup.append(asyncio.create_task(loop()).cancel)
        path.cleanup.append(writer.close)
        return writer

    a = await client("rawa")
    await client("rawb")
    await asyncio.wait_for(paired.wait(), 10)
    keys = {"uco": "rawa", "session": "1", "nonce": "1"}

    async def send(token: str) -> None:
        a.write((json.dumps({"cmd": "comm", **keys, "data": token}) + "\n").encode())

    path.send = send
    return path


async def _chats(port: int) -> Path:
    """Two RouletteChat objects, no router: what the backend itself adds."""
    path = Path()
    backend = RouletteBackend("r", RouletteConfig(plugin="roulette", host="127.0.0.1", port=port))
    a = await backend.connect(Start())
    b = await backend.connect(Start())
    connected = asyncio.Event()

    async def read(chat, mark: bool) -> None:
        async for event in chat.events():
            if type(event) is Connected and mark:
                connected.set()
            elif type(event) is Message:
                path.arrived[event.text] = time.perf_counter()

    for chat, mark in ((a, False), (b, True)):
        path.cleanup.append(asyncio.create_task(read(chat, mark)).cancel)
    await asyncio.wait_for(connected.wait(), 10)

    async def send(token: str) -> None:
        await a.send(Message(token))

    path.send = send
    return path


async def _router(bridge: Bridge) -> Path:
    """Two rooms of a bridge, paired by the server: user submit to the other room's deliver."""
    path = Path()
    sink: Sink = bridge.platforms["sink"]  # type: ignore[assignment]
    path.arrived = sink.arrived
    a, b = Room("sink", "a"), Room("sink", "b")
    sink.submit(a, Start())
    sink.submit(b, Start())
    async with asyncio.timeout(10):
        while len(sink.connected) < 2:
            await asyncio.sleep(0.01)

    async def send(token: str) -> None:
        sink.submit(a, Message(token))

    path.send = send
    return path


def _bridge_config(port: int):
    return parse_config(
        {
            # The core's own per-user and per-stranger rates would drop some of 6.7 messages/s.
            "bridge": {"default_backend": "r", "user_rate": 100.0, "user_burst": 100, "stranger_rate": 100.0, "stranger_burst": 100},
            "platforms": {"sink": {"plugin": "bench.common:Sink"}},
            "backends": {"r": {"plugin": "roulette", "host": "127.0.0.1", "port": port}},
        },
        env=False,
    )


def _server() -> tuple[subprocess.Popen, int]:
    """The test server in its own process, so that neither its work nor its share of the heap is the bench's."""
    proc, port = server_process("bench.bench_roulette")
    if not port.isdigit():
        proc.kill()
        raise RuntimeError("the roulette test server did not start")
    return proc, int(port)


async def serve() -> None:
    # read_interval 0: the real server sleeps 0.1 s after every line it reads, so a message that
    # lands during the sleep after a pong waits up to 100 ms at random; that noise would swamp
    # a 1 ms comparison. No 30 s redraw either: a message sent in the gap between two pairings
    # is bounced by design. Pings, pongs, pairing and forwarding are as in the tests.
    server = RouletteServer(read_interval=0.0, repair_interval=3600.0)
    print(await server.start(), flush=True)
    await asyncio.Event().wait()


async def _main() -> None:
    proc, port = _server()
    try:
        with cores_apart(proc.pid):  # the server's work never preempts the bridge's loop
            async with Bridge(_bridge_config(port), store=MemoryStore()) as bridge:
                paths = {"raw": await _raw(port), "chat": await _chats(port), "room": await _router(bridge)}
                lat = await interleaved_latencies(paths, SAMPLES, GAP, settle=0.5)
    finally:
        proc.kill()
        proc.wait()
    emit_added_latency("roulette", lat, SAMPLES)


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        asyncio.run(serve())
    else:
        asyncio.run(_main())


if __name__ == "__main__":
    main()
