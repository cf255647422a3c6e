"""Pychat backend latency: a message through a local pychat room, raw clients vs our backend (chat objects
alone, and through the router between two rooms); the backend should add at most 1 ms p99."""

from __future__ import annotations

import asyncio
import time

from bench.common import emit, median, percentile
from bridge.abc import Platform, PluginConfig
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Connected, Message, Room, Start
from bridge.store import MemoryStore
from plugins.pychat.backend import PychatBackend, PychatConfig
from tests.pychat.server import PychatServer

SAMPLES = 300
GAP = 0.03  # the three paths take turns; each message travels alone (no merged chunks)


class _Sink(Platform):
    """Stamps the arrival of every message."""

    Config = PluginConfig

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.arrived: dict[str, float] = {}
        self.connected: set[Room] = set()

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def deliver(self, room: Room, event) -> None:
        if type(event) is Message:
            self.arrived[event.text] = time.perf_counter()
        elif type(event) is Connected:
            self.connected.add(room)


async def _join(server: PychatServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    port = int(await reader.read(5))
    writer.close()
    pair = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.1)  # let the room count us before the next join (the real matchmaking needs it)
    return pair


async def _raw(server: PychatServer):
    """Two bare members of one room: the server's own latency."""
    arrived: dict[str, float] = {}
    _, a = await _join(server)
    rb, b = await _join(server)

    async def read() -> None:
        while chunk := await rb.read(4096):
            arrived[chunk.decode().removeprefix("raw: ")] = time.perf_counter()

    task = asyncio.create_task(read())

    async def send(token: str) -> None:
        a.write(f"raw: {token}".encode())

    return send, arrived, [task.cancel, a.close, b.close]


async def _chats(server: PychatServer):
    """Two PychatChat objects, no router."""
    backend = PychatBackend("p", PychatConfig(plugin="pychat", host="127.0.0.1", port=server.port, join_gap=0.05))
    arrived: dict[str, float] = {}
    a = await backend.connect(Start())
    b = await backend.connect(Start())
    connected = asyncio.Event()

    async def read(chat, mark: bool) -> None:
        async for event in chat.events():
            if type(event) is Connected and mark:
                connected.set()
            elif type(event) is Message:
                arrived[event.text] = time.perf_counter()

    tasks = [asyncio.create_task(read(a, True)), asyncio.create_task(read(b, False))]
    await asyncio.wait_for(connected.wait(), 10)
    await a.send(Message("hello"))  # b learns a is there

    async def send(token: str) -> None:
        await a.send(Message(token))

    return send, arrived, [t.cancel for t in tasks]


async def _router(bridge: Bridge):
    sink: _Sink = bridge.platforms["sink"]  # type: ignore[assignment]
    a, b = Room("sink", "a"), Room("sink", "b")
    sink.submit(a, Start())
    sink.submit(b, Start())
    async with asyncio.timeout(10):
        while a not in sink.connected:
            await asyncio.sleep(0.01)
    sink.submit(a, Message("hello"))

    async def send(token: str) -> None:
        sink.submit(a, Message(token))

    return send, sink.arrived, []


async def _main() -> None:
    server = PychatServer()
    await server.start()
    config = parse_config(
        {
            "bridge": {"default_backend": "p", "user_rate": 100.0, "user_burst": 100, "stranger_rate": 100.0, "stranger_burst": 100},
            "platforms": {"sink": {"plugin": "bench.bench_pychat:_Sink"}},
            "backends": {"p": {"plugin": "pychat", "host": "127.0.0.1", "port": server.port, "join_gap": 0.05}},
        },
        env=False,
    )
    try:
        async with Bridge(config, store=MemoryStore()) as bridge:
            paths = {"raw": await _raw(server), "chat": await _chats(server), "room": await _router(bridge)}
            await asyncio.sleep(0.3)
            sent: dict[str, dict[str, float]] = {name: {} for name in paths}
            for n in range(SAMPLES):  # the paths take turns, so machine noise falls on all alike
                for name, (send, _, _) in paths.items():
                    token = f"{name}{n}"
                    sent[name][token] = time.perf_counter()
                    await send(token)
                    await asyncio.sleep(GAP)
            await asyncio.sleep(0.3)
            lat = {
                name: [arrived[t] - at for t, at in sent[name].items() if t in arrived]
                for name, (_, arrived, _) in paths.items()
            }
            for _, _, cleanup in paths.values():
                for undo in cleanup:
                    undo()
    finally:
        await server.stop()
    ms = 1000.0
    raw, chats, routed = lat["raw"], lat["chat"], lat["room"]
    for name, values in (("server", raw), ("backend", chats), ("routed", routed)):
        emit(
            f"pychat_{name}_latency_p99",
            percentile(values, 99) * ms,
            "ms",
            median=round(median(values) * ms, 3),
            samples=len(values),
            lost=SAMPLES - len(values),
        )
    emit("pychat_backend_added_p99", (percentile(chats, 99) - percentile(raw, 99)) * ms, "ms", target="<= 1 ms")
    emit(
        "pychat_routed_added_p99",
        (percentile(routed, 99) - percentile(raw, 99)) * ms,
        "ms",
        target="<= 1 ms",
        note="room to room through the router: the core sessions on both ends included",
    )


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
