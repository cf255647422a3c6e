"""Pychat backend latency: a message through a local pychat room, raw clients vs our backend (chat objects
alone, and through the router between two rooms); the backend should add at most 1 ms p99."""

from __future__ import annotations

import asyncio
import time

from bench.common import Path, Sink, emit_added_latency, interleaved_latencies
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Connected, Message, Room, Start
from bridge.store import MemoryStore
from plugins.pychat.backend import PychatBackend, PychatConfig
from tests.pychat.server import PychatServer

SAMPLES = 300
GAP = 0.03  # the three paths take turns; each message travels alone (no merged chunks)


async def _join(server: PychatServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    port = int(await reader.read(5))
    writer.close()
    pair = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.1)  # let the room count us before the next join (the real matchmaking needs it)
    return pair


async def _raw(server: PychatServer) -> Path:
    """Two bare members of one room: the server's own latency."""
    path = Path()
    _, a = await _join(server)
    rb, b = await _join(server)

    async def read() -> None:
        while chunk := await rb.read(4096):
            path.arrived[chunk.decode().removeprefix("raw: ")] = time.perf_counter()

    task = asyncio.create_task(read())

    async def send(token: str) -> None:
        a.write(f"raw: {token}".encode())

    path.send, path.cleanup = send, [task.cancel, a.close, b.close]
    return path


async def _chats(server: PychatServer) -> Path:
    """Two PychatChat objects, no router."""
    backend = PychatBackend("p", PychatConfig(plugin="pychat", host="127.0.0.1", port=server.port, join_gap=0.05))
    path = Path()
    a = await backend.connect(Start())
    b = await backend.connect(Start())
    connected = asyncio.Event()

    async def read(chat, mark: bool) -> None:
        async for event in chat.events():
            if type(event) is Connected and mark:
                connected.set()
            elif type(event) is Message:
                path.arrived[event.text] = time.perf_counter()

    tasks = [asyncio.create_task(read(a, True)), asyncio.create_task(read(b, False))]
    await asyncio.wait_for(connected.wait(), 10)
    await a.send(Message("hello"))  # b learns a is there

    async def send(token: str) -> None:
        await a.send(Message(token))

    path.send, path.cleanup = send, [t.cancel for t in tasks]
    return path


async def _router(bridge: Bridge) -> Path:
    sink: Sink = bridge.platforms["sink"]  # type: ignore[assignment]
    path = Path(sink.arrived)
    a, b = Room("sink", "a"), Room("sink", "b")
    sink.submit(a, Start())
    sink.submit(b, Start())
    async with asyncio.timeout(10):
        while a not in sink.connected:
            await asyncio.sleep(0.01)
    sink.submit(a, Message("hello"))

    async def send(token: str) -> None:
        sink.submit(a, Message(token))

    path.send = send
    return path


async def _main() -> None:
    server = PychatServer()
    await server.start()
    config = parse_config(
        {
            "bridge": {"default_backend": "p", "user_rate": 100.0, "user_burst": 100, "stranger_rate": 100.0, "stranger_burst": 100},
            "platforms": {"sink": {"plugin": "bench.common:Sink"}},
            "backends": {"p": {"plugin": "pychat", "host": "127.0.0.1", "port": server.port, "join_gap": 0.05}},
        },
        env=False,
    )
    try:
        async with Bridge(config, store=MemoryStore()) as bridge:
            paths = {"raw": await _raw(server), "chat": await _chats(server), "room": await _router(bridge)}
            lat = await interleaved_latencies(paths, SAMPLES, GAP, settle=0.3)
    finally:
        await server.stop()
    emit_added_latency("pychat", lat, SAMPLES)


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
