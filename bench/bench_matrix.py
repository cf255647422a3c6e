"""Matrix platform figures with 200 live rooms: latency the bridge adds (sync batch handed in → delivered
through the hub; hub → send request) and memory per room; then a churn of short sessions in rooms the
bot leaves (heap and state stay flat), against a minimal homeserver in its own process, on cores of its own."""

from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
import time
import tracemalloc
import types

from aiohttp import web
from nio import SyncResponse

from bench.common import cores_apart, emit, percentile, rss_bytes, server_process
from bridge.abc import Platform, PluginConfig
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Connected, Message, Room, Start
from bridge.store import MemoryStore

ROOMS = 200
CHURN = 6000  # short sessions (start, stop, the bot leaves the room), each in a room of its own
CHURN_REMEMBER = 1000  # remember_rooms for the churn: the bounded structures are full before the first sample
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
    proc, url = server_process("bench.bench_matrix")
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
            await asyncio.sleep(5)  # a long poll that ends before the client's request timeout
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


def config(url: str, **matrix):
    return parse_config(
        {
            "bridge": {"user_rate": 1e9, "user_burst": 10**9, "stranger_rate": 1e9, "stranger_burst": 10**9},
            "platforms": {
                "mx": {"plugin": "matrix", "homeserver": url, "user_id": BOT, "access_token": "bench-token", "encryption": False, **matrix},
                "sink": {"plugin": "bench.bench_matrix:Sink"},
            },
            "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0}},
        },
        env=False,
    )


_event_ids = iter(range(10**9))


def batch(events: list[tuple[str, str, str]], left: tuple[str, ...] = ()) -> SyncResponse:
    """A sync batch: (room id, sender, body) message events; `left`: rooms the bot was removed from."""
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
    leave = {rid: {"timeline": {"events": []}, "state": {"events": []}} for rid in left}
    return SyncResponse.from_dict({"next_batch": "b1", "rooms": {"join": join, "leave": leave}})


async def run() -> None:
    proc, url = homeserver()
    with cores_apart(proc.pid):  # the homeserver's work never preempts the bridge's loop
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


def deep_size(*roots: object) -> int:
    """Bytes of everything reachable from `roots` (each object once; classes, modules and functions not counted)."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType, types.MethodType)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def platform_state(mx) -> int:
    """What the Matrix platform itself keeps between events: room state, seen ids, outboxes, lost-message counts."""
    return deep_size(mx.rooms, mx.sync.seen, mx.outboxes._boxes, mx.ghost_typing._boxes, mx.delivery.undelivered)


async def churn() -> None:
    """Short sessions in rooms the bot then leaves: what the platform keeps after all of them equals a third in."""
    proc, url = homeserver()
    with cores_apart(proc.pid):  # the homeserver's work never preempts the bridge's loop
        store = MemoryStore()
        try:
            async with Bridge(config(url, remember_rooms=CHURN_REMEMBER), store=store) as bridge:
                mx = bridge.platforms["mx"]
                samples: dict[int, tuple[int, int]] = {}
                began = time.perf_counter()
                for n in range(1, CHURN + 1):
                    rid = f"!churn{n}:bench"
                    user = f"@churner{n}:bench"
                    await mx.handle_sync(batch([(rid, user, "!stranger start cats"), (rid, user, "!stranger stop")]))
                    await asyncio.sleep(0)
                    if n % 200 == 0:  # let the notices go out before the bot leaves those rooms
                        await mx.flush()
                        await mx.handle_sync(batch([], left=tuple(f"!churn{k}:bench" for k in range(n - 199, n + 1))))
                    if n in (CHURN // 3, CHURN):
                        await mx.flush()
                        for _ in range(3):
                            await asyncio.sleep(0.05)
                        gc.collect()
                        samples[n] = (platform_state(mx), rss_bytes())
                elapsed = time.perf_counter() - began
                (kept, rss), (kept_end, rss_end) = samples[CHURN // 3], samples[CHURN]
                emit("matrix.churn_platform_state_growth", (kept_end - kept) / 1024, "KB", "flat (<= 64)", sessions=CHURN,
                     from_session=CHURN // 3, remember_rooms=CHURN_REMEMBER, state_kb=round(kept_end / 1024, 1),
                     note="what the platform keeps (room state, seen ids, outboxes) after all sessions minus after a third")
                emit("matrix.churn_rss_growth", (rss_end - rss) / 2**20, "MB", sessions=CHURN,
                     lingering_core_sessions=len(bridge.router.sessions),
                     note="whole process; includes the core's ended sessions kept for reports (issue 9 item 1, not the platform)")
                state = sum(len(k) + len(v) for (space, k), v in store._kv.items() if space == "platform:mx")
                emit("matrix.churn_state_bytes", float(state), "bytes", sessions=CHURN, note="the platform's persisted keys")
                emit("matrix.churn_sessions_per_s", CHURN / elapsed, "sessions/s", sessions=CHURN)
                rooms = mx.rooms
                most = max(len(rooms.gone), len(rooms.last_start), len(rooms.plaintext), len(rooms.members))
                emit("matrix.churn_room_state_entries", float(most), "entries", f"<= {CHURN_REMEMBER}", sessions=CHURN)
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        asyncio.run(serve())
        return
    asyncio.run(run())
    asyncio.run(churn())


if __name__ == "__main__":
    main()

