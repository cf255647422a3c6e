"""Matrix platform figures with 200 live rooms: latency the bridge adds (sync batch handed in → delivered
through the hub; hub → send request) and memory per room, against a minimal in-process homeserver."""

from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
import time
import tracemalloc

from aiohttp import web
from nio import SyncResponse

from bench.common import emit, percentile
from bridge.abc import Platform, PluginConfig
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Connected, Message, Room, Start
from bridge.store import MemoryStore

ROOMS = 200
ROUNDS = 10
ROUND = 0.5  # seconds in which every room sends one message: 400 messages/s each way
BOT = "@bot:bench"
TOKEN = re.compile(r"tok(\d+)")


class Sink(Platform):
    """The other side of every chat: records when each tokenised message is delivered."""

    Config = PluginConfig

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.arrived: dict[int, float] = {}
        self.connected: set[str] = set()
        self.changed = asyncio.Event()

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def deliver(self, room: Room, event) -> None:
        if isinstance(event, Message):
            for tok in TOKEN.findall(event.text):
                self.arrived[int(tok)] = time.perf_counter()
        elif isinstance(event, Connected):
            self.connected.add(room.id)
        self.changed.set()


def homeserver() -> tuple[subprocess.Popen, str]:
    """A minimal homeserver in its own process (so its work does not load the bridge's event loop)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_matrix", "serve"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError("the bench homeserver did not start")
    return proc, url


async def serve() -> None:
    """Answers what the bot asks: an empty first sync (then long-polls), sends, typing, no encryption."""
    synced = False

    async def sync(request: web.Request) -> web.Response:
        nonlocal synced
        if synced:
            await asyncio.sleep(30)
        synced = True
        return web.json_response({"next_batch": "b0"})

    async def send(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"event_id": "$" + request.match_info["txn"]})

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({})

    async def no_encryption(request: web.Request) -> web.Response:
        return web.json_response({"errcode": "M_NOT_FOUND", "error": "none"}, status=404)

    app = web.Application()
    app.router.add_get("/_matrix/client/v3/sync", sync)
    app.router.add_put("/_matrix/client/v3/rooms/{rid}/send/{type}/{txn}", send)
    app.router.add_put("/_matrix/client/v3/rooms/{rid}/typing/{user}", ok)
    app.router.add_get("/_matrix/client/v3/rooms/{rid}/state/m.room.encryption/", no_encryption)
    app.router.add_get("/_matrix/client/v3/rooms/{rid}/state/m.room.encryption", no_encryption)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


def config(url: str):
    return parse_config(
        {
            "bridge": {"user_rate": 1e9, "user_burst": 10**9, "stranger_rate": 1e9, "stranger_burst": 10**9},
            "platforms": {
                "mx": {"plugin": "matrix", "homeserver": url, "user_id": BOT, "access_token": "bench-token"},
                "sink": {"plugin": "bench.bench_matrix:Sink"},
            },
            "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0}},
        },
        env=False,
    )


_event_ids = iter(range(10**9))


def batch(events: list[tuple[str, str, str]]) -> SyncResponse:
    """A sync batch: (room id, sender, body) message events."""
    join: dict = {}
    for rid, sender, body in events:
        ev = {
            "type": "m.room.message",
            "event_id": f"$e{next(_event_ids)}",
            "sender": sender,
            "origin_server_ts": 0,
            "content": {"msgtype": "m.text", "body": body},
        }
        room = join.setdefault(
            rid,
            {"timeline": {"events": [], "limited": False, "prev_batch": "p"}, "state": {"events": []}, "ephemeral": {"events": []}},
        )
        room["timeline"]["events"].append(ev)
    return SyncResponse.from_dict({"next_batch": "b1", "rooms": {"join": join}})


async def run() -> None:
    proc, url = homeserver()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    try:
        async with Bridge(config(url), store=MemoryStore()) as bridge:
            mx = bridge.platforms["mx"]
            sink: Sink = bridge.platforms["sink"]  # type: ignore[assignment]
            rooms = [f"!room{i}:bench" for i in range(ROOMS)]
            for i, rid in enumerate(rooms):
                await mx.handle_sync(batch([(rid, f"@user{i}:bench", "!stranger start")]))
                await asyncio.sleep(0)
                sink.submit(Room("sink", f"s{i}"), Start())
                while f"s{i}" not in sink.connected:
                    sink.changed.clear()
                    await asyncio.wait_for(sink.changed.wait(), 10)
            await mx.flush()
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            emit(
                "matrix.memory_per_room",
                used / ROOMS / 1024,
                "KB",
                rooms=ROOMS,
                note="Python heap per live Matrix room incl. its core session and the paired peer session",
            )

            # ---- hub → send request -------------------------------------------------------------
            delivered: dict[int, float] = {}
            requested: dict[int, float] = {}
            submitted: dict[int, float] = {}
            deliver = mx.deliver

            async def timed_deliver(room, event):
                if isinstance(event, Message):
                    now = time.perf_counter()
                    for tok in TOKEN.findall(event.text):
                        delivered[int(tok)] = now
                await deliver(room, event)

            mx.deliver = timed_deliver
            send = mx.client.send

            async def timed_send(method, path, data=None, *a, **kw):
                if data and "/send/" in path:
                    now = time.perf_counter()
                    for tok in TOKEN.findall(data):
                        requested.setdefault(int(tok), now)
                return await send(method, path, data, *a, **kw)

            mx.client.send = timed_send
            n = 0
            for _ in range(ROUNDS):
                for i in range(ROOMS):  # 200 busy chats: each says something every 0.5 s
                    submitted[n] = time.perf_counter()
                    sink.submit(Room("sink", f"s{i}"), Message(f"tok{n}"))
                    n += 1
                    await asyncio.sleep(ROUND / ROOMS)
            deadline = time.monotonic() + 60
            while len(requested) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            out = [requested[k] - delivered[k] for k in requested if k in delivered]
            whole = [requested[k] - submitted[k] for k in requested]
            emit("matrix.outbound_deliver_to_send_request_p99", percentile(out, 99) * 1000, "ms", "<= 5", rooms=ROOMS, samples=len(out))
            emit("matrix.outbound_deliver_to_send_request_p50", percentile(out, 50) * 1000, "ms", rooms=ROOMS)
            emit("matrix.outbound_core_and_platform_p99", percentile(whole, 99) * 1000, "ms", rooms=ROOMS,
                 note="peer submit → core → hub → Matrix outbox → send request")

            # ---- sync event handed in → hub → paired room ---------------------------------------
            handed: dict[int, float] = {}
            base = n
            for _ in range(ROUNDS):
                for chunk in range(0, ROOMS, 10):  # sync batches of 10 events from 10 rooms
                    events = []
                    for i in range(chunk, chunk + 10):
                        events.append((rooms[i], f"@user{i}:bench", f"tok{n}"))
                        n += 1
                    parsed = batch(events)  # nio's JSON parsing is not the bridge's cost
                    now = time.perf_counter()
                    for k in range(n - 10, n):
                        handed[k] = now
                    await mx.handle_sync(parsed)
                    await asyncio.sleep(ROUND / 20)
            deadline = time.monotonic() + 60
            while len([k for k in sink.arrived if k >= base]) < n - base and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            inbound = [sink.arrived[k] - handed[k] for k in handed if k in sink.arrived]
            emit("matrix.inbound_sync_to_hub_peer_p99", percentile(inbound, 99) * 1000, "ms", "<= 5", rooms=ROOMS,
                 samples=len(inbound), note="batch handed in → core → hub → peer platform deliver (upper bound)")
            emit("matrix.inbound_sync_to_hub_peer_p50", percentile(inbound, 50) * 1000, "ms", rooms=ROOMS)
            emit("matrix.send_requests", float(sum(mx.stats.values())), "requests", rooms=ROOMS)
            mx.client.send = send
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        asyncio.run(serve())
        return
    asyncio.run(run())


if __name__ == "__main__":
    main()

