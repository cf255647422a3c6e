"""Issue 9 item 15, the soak: 100,000 sessions churned through Discord threads and Matrix threads,
paired with each other by the hub, each saying one line and then ended by one side; RSS and the
state file's size at 10 %, 50 % and 100 % of the churn, and the growth from 10 % to 100 %.

Real Discord and Synapse cannot hold 100,000 rooms in a benchmark's time, so both platforms run
in this process with only their network edge replaced (the platforms' own bookkeeping, the
router, the sessions, the hub and the SQLite state file are the real ones):

- Discord: `DiscordPlatform` with `run()` replaced by one that installs a stand-in for discord.py's
  REST client (`client.http.request(route, json=..., params=...)`, answering thread creation,
  posts, typing and archiving with fresh snowflakes), loads its state and runs its state flusher.
  Native activity enters where discord.py hands it over: `cmd_start` / `cmd_stop` with a
  duck-typed interaction, `on_message` with a duck-typed message, `on_thread_gone`. Webhooks are
  off (strangers speak as the bot), so every post goes through `client.http.request`.
- Matrix: `MatrixPlatform` in thread mode (every start opens a thread in one of a few shared
  rooms) with `run()` replaced by one that loads its state and installs a stand-in for nio's
  `AsyncClient` (`joined_members`, `room_get_state_event`, `_send` for room sends, `room_typing`, `join`).
  Room events enter through `handle_push` (the same `_on_timeline` path the sync loop takes,
  without nio's JSON parsing).
- Both subclasses' `deliver` notes each event for the driver, then calls the real `deliver`.

BENCH_SOAK_SESSIONS (default 100,000) sets the number of sessions (half Discord, half Matrix).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import logging
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import discord
from nio import JoinedMembersResponse, JoinResponse, RoomGetStateEventError, RoomMember, RoomSendResponse, RoomTypingResponse

from bench.common import emit, rss_bytes
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Connected, Disconnected, Event, Message, Room
from plugins.discord.platform import DiscordPlatform
from plugins.matrix.appservice import Pushed
from plugins.matrix.platform import MatrixPlatform

__all__ = ["SoakDiscord", "SoakMatrix", "main"]

SESSIONS = int(os.environ.get("BENCH_SOAK_SESSIONS", "100000"))
# Wall-clock bound: a churn still short of SESSIONS then takes its remaining marks where it stopped
# (flagged "complete": false), so a slow or loaded machine cannot make the bench run unbounded.
# 240 s keeps the whole bench under five minutes; 100,000 sessions take about 150 s on 2 vCPUs.
BUDGET = float(os.environ.get("BENCH_SOAK_SECONDS", "240"))
PAIRS_PER_ROUND = 500  # chats started, talked in and ended together
SHARED_ROOMS = 20  # Matrix rooms the threads are opened in
GUILD, CHANNELS = 7001, (7002, 7003)
BOT = "@bot:bench"
# The bounded memories (4,096 Discord entries and 10,000 Matrix entries of each kind) fill during the
# first 30 % of the churn; after that, memory and the state file must stay flat.
CHECKPOINTS = (0.1, 0.3, 0.5, 1.0)
MB = 1e6
_snowflakes = itertools.count(10**15)


class Tracker:
    """What the platforms were asked to show, for the driver to wait on."""

    def __init__(self) -> None:
        self.connected = 0
        self.ended = 0
        self.messages: dict[Room, str] = {}  # room → the text of the last Message shown there
        self.changed = asyncio.Event()

    def saw(self, room: Room, event: Event) -> None:
        if isinstance(event, Connected):
            self.connected += 1
        elif isinstance(event, Message):
            self.messages[room] = event.text
        elif isinstance(event, Disconnected) and event.final:
            self.ended += 1
        else:
            return
        self.changed.set()

    async def until(self, done, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self.changed.clear()
                await self.changed.wait()


TRACKER: Tracker | None = None


# ---- Discord ------------------------------------------------------------------------------------


class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class FakeDiscordHTTP:
    """Answers the REST calls the platform makes, as Discord would, and counts them."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def request(self, route, **kwargs: Any) -> Any:
        key = f"{route.method} {route.path}"
        self.calls[key] = self.calls.get(key, 0) + 1
        if route.method == "POST" and route.path.endswith(("/threads", "/messages")):
            return {"id": str(next(_snowflakes))}
        if route.method == "GET":
            return []
        return {}


class _Response:
    def __init__(self) -> None:
        self.done = False

    def is_done(self) -> bool:
        return self.done

    async def defer(self, **kwargs: Any) -> None:
        self.done = True

    async def send_message(self, *args: Any, **kwargs: Any) -> None:
        self.done = True


class _Followup:
    async def send(self, *args: Any, **kwargs: Any) -> None:
        return None


def interaction(user: int, channel: int, guild: int | None) -> Any:
    """What `cmd_*` reads of a discord.Interaction."""
    return _Obj(id=next(_snowflakes), user=_Obj(id=user), channel_id=channel, guild_id=guild,
                channel=_Obj(id=channel, type=discord.ChannelType.text), response=_Response(), followup=_Followup(),
                type=discord.InteractionType.application_command, data={})


def message(channel: int, author: int, content: str) -> Any:
    """What `on_message` reads of a discord.Message."""
    return _Obj(id=next(_snowflakes), channel=_Obj(id=channel), author=_Obj(id=author, bot=False),
                webhook_id=None, content=content, attachments=[], stickers=[], type=discord.MessageType.default,
                reference=None)


class SoakDiscord(DiscordPlatform):
    """The Discord platform with discord.py's connection replaced by `FakeDiscordHTTP`."""

    async def run(self) -> None:
        self.client = _Obj(http=FakeDiscordHTTP(), user=_Obj(id=1))  # type: ignore[assignment]
        self.sender.client = self.client  # type: ignore[assignment]
        await self.threads.load()
        flusher = asyncio.get_running_loop().create_task(self.threads.flush_forever())
        self.ready_event.set()
        try:
            await asyncio.Event().wait()
        finally:
            flusher.cancel()
            self.outboxes.close()

    async def deliver(self, room: Room, event: Event) -> None:
        assert TRACKER is not None
        TRACKER.saw(room, event)
        await super().deliver(room, event)


# ---- Matrix -------------------------------------------------------------------------------------


class FakeNio:
    """Answers the nio calls the platform makes, as a homeserver would, and counts them."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.access_token = "bench"
        self.rooms: dict[str, Any] = {}
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def join(self, rid: str) -> JoinResponse:
        self._count("join")
        return JoinResponse(rid)

    async def joined_members(self, rid: str) -> JoinedMembersResponse:
        self._count("joined_members")
        people = [RoomMember(m, "", "") for m in (self.user_id, "@a:bench", "@b:bench")]
        return JoinedMembersResponse(people, rid)

    async def room_get_state_event(self, rid: str, kind: str, *a: Any) -> RoomGetStateEventError:
        self._count("room_get_state_event")
        return RoomGetStateEventError("not found", "M_NOT_FOUND", room_id=rid)

    async def _send(self, response_class: type, method: str, path: str, data: Any = None,
                    response_data: tuple[Any, ...] | None = None, **kw: Any) -> RoomSendResponse:
        """What plugins.matrix.sender.send_plain calls in a room without encryption (nio's own room_send ends there too)."""
        if response_class is not RoomSendResponse or response_data is None:
            raise RuntimeError(f"the soak's homeserver answers no {response_class.__name__}")
        self._count("room_send")
        return RoomSendResponse(f"$out{next(_snowflakes)}", response_data[0])

    async def room_typing(self, rid: str, typing: bool = True, timeout: int = 30000) -> RoomTypingResponse:
        self._count("room_typing")
        return RoomTypingResponse(rid)

    async def close(self) -> None:
        return None


class SoakMatrix(MatrixPlatform):
    """The Matrix platform with nio's connection replaced by `FakeNio`."""

    async def run(self) -> None:
        await self.txn.load()
        await self.sync.load()
        self.client = self.sender.client = FakeNio(self.cfg.user_id)  # type: ignore[assignment]
        self._ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.outboxes.close()

    async def deliver(self, room: Room, event: Event) -> None:
        assert TRACKER is not None
        TRACKER.saw(room, event)
        await super().deliver(room, event)


def mx_event(rid: str, sender: str, body: str, root: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    if root is not None:
        content["m.relates_to"] = {"rel_type": "m.thread", "event_id": root}
    return {"type": "m.room.message", "room_id": rid, "event_id": f"$in{next(_snowflakes)}", "sender": sender,
            "origin_server_ts": 0, "content": content}


# ---- the churn ----------------------------------------------------------------------------------


def config(state: Path):
    return parse_config(
        {
            "bridge": {"state": str(state), "log_level": "WARNING", "user_rate": 1e9, "user_burst": 10**9,
                       "stranger_rate": 1e9, "stranger_burst": 10**9},
            "platforms": {
                "dc": {"plugin": "bench.bench_soak:SoakDiscord", "token": "bench-bot-token", "webhooks": False,
                       "command_scope": "off", "max_sessions_per_guild": 10**6},
                "mx": {"plugin": "bench.bench_soak:SoakMatrix", "homeserver": "http://127.0.0.1:9", "user_id": BOT,
                       "access_token": "bench-access-token", "mode": "thread",
                       "encryption": False},  # its fake homeserver has no key endpoints (as bench_matrix)
            },
            "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0, "interest_fallback": 0}},
        },
        env=False,
    )


class Churn:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.dc: SoakDiscord = bridge.platforms["dc"]  # type: ignore[assignment]
        self.mx: SoakMatrix = bridge.platforms["mx"]  # type: ignore[assignment]
        self.users = itertools.count(1)
        self.sessions = 0
        self.not_ended = 0

    async def round(self, pairs: int) -> None:
        """`pairs` Discord users and `pairs` Matrix users start; every session says one line to its
        partner; then one side of every chat ends it (Discord: stop or thread deleted; Matrix: stop)."""
        t = TRACKER
        assert t is not None
        dc, mx = self.dc, self.mx
        connected, ended = t.connected + 2 * pairs, t.ended + 2 * pairs
        # The round's interactions run at once, as discord.py dispatches each one as its own task
        # (one after the other, each start's state writes waited for in turn, half the churn's time
        # was the loop idle between them).
        users = [next(self.users) for _ in range(pairs)]
        await asyncio.gather(*(dc.commands.cmd_start(interaction(user, CHANNELS[user % 2], GUILD)) for user in users))
        discord_rooms: dict[Room, tuple[int, int]] = {}  # room → (thread, user)
        for user in users:
            tid = dc.threads.of_user(user)
            assert tid is not None, f"user {user}'s start opened no thread"
            discord_rooms[Room("dc", str(tid))] = (tid, user)
        matrix_rooms: dict[Room, tuple[str, str, str]] = {}  # room → (room id, thread root, sender)
        starts = []
        for _ in range(pairs):
            user = next(self.users)
            rid, sender = f"!shared{user % SHARED_ROOMS}:bench", f"@u{user}:bench"
            event = mx_event(rid, sender, "!stranger start")
            starts.append(event)
            matrix_rooms[Room("mx", f"{rid}|{event['event_id']}")] = (rid, event["event_id"], sender)
        await mx.handle_push(Pushed(tuple(starts), ()))
        await t.until(lambda: t.connected >= connected)

        everyone = [*discord_rooms, *matrix_rooms]
        line = {room: f"line {n}" for n, room in enumerate(everyone)}  # names its sender's room
        for room, (tid, user) in discord_rooms.items():
            dc.inbound.on_message(message(tid, user, line[room]))
        await mx.handle_push(Pushed(tuple(mx_event(rid, sender, line[room], root)
                                          for room, (rid, root, sender) in matrix_rooms.items()), ()))
        await t.until(lambda: all(t.messages.get(r) is not None for r in everyone))

        sender_of = {text: room for room, text in line.items()}
        partner_of = {room: sender_of[t.messages.pop(room)] for room in everyone}
        enders: list[Room] = []
        done: set[Room] = set()
        for room in everyone:
            if room not in done:
                ender = room if len(enders) % 2 else partner_of[room]  # alternate which side ends
                enders.append(ender)
                done.update((room, partner_of[room]))
        stops, commands = [], []
        for n, room in enumerate(enders):
            if room.platform == "dc":
                tid, user = discord_rooms[room]
                if n % 4 == 0:
                    dc.inbound.on_thread_gone(tid, "deleted")
                else:
                    commands.append(dc.commands.cmd_stop(interaction(user, tid, GUILD)))
            else:
                rid, root, sender = matrix_rooms[room]
                stops.append(mx_event(rid, sender, "!stranger stop", root))
        await asyncio.gather(*commands)
        await mx.handle_push(Pushed(tuple(stops), ()))
        try:
            await t.until(lambda: t.ended >= ended)
        except TimeoutError:
            self.not_ended += ended - t.ended
            t.ended = ended
        self.sessions += 2 * pairs


def state_size(path: Path) -> dict[str, int]:
    """The state file's content (pages in use, write-ahead log included), and its two files on disk."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        used = pages * db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    wal = Path(f"{path}-wal")
    return {"used": used, "db_file": path.stat().st_size, "wal_file": wal.stat().st_size if wal.exists() else 0}


def kv_rows(path: Path) -> dict[str, int]:
    """Rows of the state file by namespace and key prefix (the part before ':')."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT namespace, key FROM kv").fetchall()
        sessions = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    finally:
        db.close()
    counts: dict[str, int] = {"sessions": sessions}
    for namespace, key in rows:
        name = f"{namespace.split(':', 1)[-1]}.{key.split(':', 1)[0]}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def structures(bridge: Bridge) -> dict[str, int]:
    """Sizes of the platforms' and core's bookkeeping (attribute names of today's code; absent ones skipped)."""
    out: dict[str, int] = {}
    assert bridge.router is not None
    out["core.sessions"] = len(bridge.router.sessions)
    for platform, names in (("dc", ("threads", "threads.by_user", "outboxes", "threads.gone", "threads.parents",
                                    "sender.newest", "commands.cooldowns", "inbound.seen_messages")),
                            ("mx", ("outboxes", "rooms.active", "rooms.threads", "rooms.gone", "rooms.last_thread", "rooms.last_start", "sync.seen"))):
        obj = bridge.platforms[platform]
        for name in names:
            value = functools.reduce(lambda o, part: getattr(o, part, None), name.split("."), obj)
            if value is not None and hasattr(value, "__len__"):
                out[f"{platform}.{name}"] = len(value)
    out["mx.thread_roots"] = len(bridge.platforms["mx"].rooms.threads)
    return out


def delivery_problems(bridge: Bridge) -> dict[str, int]:
    """Retried and given-up deliveries by platform and reason (a send that fails is retried quietly: count it)."""
    out: dict[str, int] = {}
    for (name, labels), value in bridge.metrics.counters.items():
        if name in ("deliver_retries", "deliver_failures") and value:
            out[f"{name}{{{','.join(f'{k}={v}' for k, v in labels)}}}"] = value
    return out


async def settled(bridge: Bridge) -> None:
    """Wait until what the last round changed is written: each platform's notices sent and its state
    flushed, then one read through the store, which runs after every write issued before it (one
    worker thread, in order). A fixed sleep was too short on a slow machine: thread records of the
    round's last chats were still on their way and counted as rows left behind."""
    for _ in range(2):  # a notice sent by the first flush may change a thread record again
        for name in ("dc", "mx"):
            await bridge.platforms[name].flush()
    await bridge.store.get("bench", "barrier")


async def run(state: Path) -> list[dict[str, Any]]:
    global TRACKER
    TRACKER = Tracker()
    marks: list[dict[str, Any]] = []
    began = time.monotonic()
    async with Bridge(config(state)) as bridge:
        churn = Churn(bridge)
        pending = [round(SESSIONS * c) for c in CHECKPOINTS]
        while pending:
            out_of_time = time.monotonic() - began > BUDGET
            if churn.sessions < SESSIONS and not out_of_time:
                await churn.round(min(PAIRS_PER_ROUND, (SESSIONS - churn.sessions) // 2) or 1)
            if churn.sessions >= pending[0] or out_of_time:
                pending.pop(0)
                await settled(bridge)
                gc.collect()
                marks.append({"sessions": churn.sessions, "rss": rss_bytes(), "state": state_size(state),
                              "seconds": time.monotonic() - began, "rows": kv_rows(state),
                              "structures": structures(bridge), "not_ended": churn.not_ended,
                              "delivery_problems": delivery_problems(bridge),
                              "complete": churn.sessions >= round(SESSIONS * CHECKPOINTS[len(marks)])})
    return marks


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="sb-soak-") as tmp:
        state = Path(tmp) / "state.sqlite3"
        marks = asyncio.run(run(state))
    for mark, share in zip(marks, CHECKPOINTS):
        emit(f"soak_rss_at_{round(share * 100)}pct", mark["rss"] / MB, "MB", sessions=mark["sessions"],
             planned=round(SESSIONS * share), complete=mark["complete"], seconds=round(mark["seconds"], 1),
             structures=mark["structures"])
        size = mark["state"]
        emit(f"soak_state_file_at_{round(share * 100)}pct", size["used"] / MB, "MB", sessions=mark["sessions"],
             db_file_mb=round(size["db_file"] / MB, 3), wal_file_mb=round(size["wal_file"] / MB, 3), rows=mark["rows"],
             note="pages in use (write-ahead log included); the files on disk beside it")
    first, warm, last = marks[0], marks[1], marks[-1]
    caveat = {} if last["complete"] else {"note": f"incomplete: the {BUDGET:.0f} s budget ran out at {last['sessions']} "
                                                  f"of {SESSIONS} sessions; not comparable with the target"}
    emit("soak_rss_growth_10_to_100pct", (last["rss"] - first["rss"]) / MB, "MB", sessions=last["sessions"],
         planned=SESSIONS, complete=last["complete"], seconds=round(last["seconds"], 1),
         chats_not_ended=last["not_ended"], note=caveat.get("note", "includes the bounded memories filling up"))
    emit("soak_rss_growth_30_to_100pct", (last["rss"] - warm["rss"]) / MB, "MB", "<= 5", sessions=last["sessions"],
         planned=SESSIONS, complete=last["complete"], seconds=round(last["seconds"], 1),
         chats_not_ended=last["not_ended"], note=caveat.get("note", "after the bounded memories are full"))
    emit("soak_delivery_retries_and_failures", float(sum(last["delivery_problems"].values())), "deliveries", "== 0",
         by_kind=last["delivery_problems"], sessions=last["sessions"])
    emit("soak_state_file_growth_10_to_100pct", (last["state"]["used"] / first["state"]["used"] - 1) * 100, "%",
         "<= 10", from_mb=round(first["state"]["used"] / MB, 3), to_mb=round(last["state"]["used"] / MB, 3), **caveat)

if __name__ == "__main__":
    # The config names the platforms as bench.bench_soak:…, so run that module's copy, whose
    # TRACKER the platforms see (not this __main__ copy's).
    from bench.bench_soak import main as soak

    soak()
