"""Issue 9 item 15, the Discord soak over real sockets, at a smaller count: sessions churned through
discord.py against the Discord-compatible test server (tests/discord/fakediscord.py), each paired
by the hub with a recording platform's room, saying one line, then ended (the stranger leaves,
the user runs /stranger stop, or deletes the thread). Reported at 10 %, 50 % and 100 %: the
Discord platform's bookkeeping sizes and the SQLite state file (the fake server runs in this
process and keeps every thread and message, so this process's RSS is not the bridge's: for RSS
see bench_soak, which churns 100,000 sessions with the network edge replaced).

BENCH_SOAK_DISCORD_SESSIONS (default 3,000) sets the count; a 50 s budget bounds it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import tempfile
import time
from pathlib import Path

from bench.bench_soak import kv_rows, state_size
from bench.common import emit
from bridge.events import Connected, Disconnected, Message, Room, Start
from bridge.session import State
from bridge.store import SQLiteStore
from tests.discord.conftest import bridge
from tests.discord.fakediscord import FakeDiscord

__all__ = ["main"]

SESSIONS = int(os.environ.get("BENCH_SOAK_DISCORD_SESSIONS", "3000"))
BUDGET = float(os.environ.get("BENCH_SOAK_DISCORD_SECONDS", "50"))
WORKERS = 20  # sessions under way at once
CHECKPOINTS = (0.1, 0.5, 1.0)
NAMES = ("threads", "threads.by_user", "outboxes", "threads.gone", "threads.parents", "sender.newest",
         "commands.cooldowns", "inbound.seen_messages", "commands.seen_interactions")
# bounded by design (the platform's `remember`, 4,096 ids): listed, not summed
BOUNDED = ("threads.gone", "inbound.seen_messages", "commands.seen_interactions")
MB = 1e6


def _attr(obj: object, dotted: str) -> object:
    """`obj.a.b` for "a.b" (None when a part is missing)."""
    return functools.reduce(lambda o, part: getattr(o, part, None), dotted.split("."), obj)


async def run(state: Path) -> list[dict]:
    server = FakeDiscord()
    await server.start()
    marks: list[dict] = []
    began = time.monotonic()
    try:
        async with bridge(server, store=SQLiteStore(state), max_sessions_per_guild=10**6) as b:
            dc, rec, router = b.platforms["dc"], b.platforms["rec"], b.router
            done = 0
            next_mark = [round(SESSIONS * c) for c in CHECKPOINTS]
            counter = iter(range(SESSIONS))
            lock = asyncio.Lock()
            gate = asyncio.Event()  # cleared at a mark: no new session starts until it is taken
            gate.set()
            inflight = 0

            async def session(i: int) -> None:
                uid = server.add_user(f"user{i}")
                room = f"r{i}"
                # One pairing at a time: the new thread is known to be this one, and the recording
                # room starts only once that thread's session waits in the hub, so the hub pairs
                # the two (with several searches under way it may pair any two, even two
                # recording rooms: the starts' moderation checks take turns on the store's thread,
                # so starts need not reach the hub in the order they were sent).
                async with lock:
                    known = set(server.channels)
                    await server.slash(uid, server.text_channels[i % 2], "start")
                    [thread] = await server.wait_until(
                        lambda: [t for cid, t in server.channels.items() if cid not in known and t["type"] in (11, 12)]
                    )
                    tid = int(thread["id"])
                    dc_room = Room(dc.name, str(tid))
                    async with asyncio.timeout(15):
                        while router.state_of(dc_room) is not State.SEARCHING:
                            await asyncio.sleep(0.002)
                    rec.send(room, Start())
                    await rec.wait_for(room, Connected, timeout=15)
                await server.user_message(tid, uid, f"line {i}")
                await rec.wait_for(room, lambda e: isinstance(e, Message) and e.text == f"line {i}", timeout=15)
                match i % 3:
                    case 0:
                        rec.send(room, Disconnected())  # the stranger leaves: the thread is archived
                    case 1:
                        await server.slash(uid, tid, "stop")
                    case _:
                        await server.delete_thread(tid)
                await rec.wait_for(room, lambda e: isinstance(e, Disconnected) and e.final, timeout=15)

            async def worker() -> None:
                nonlocal done, inflight
                for i in counter:
                    await gate.wait()
                    if time.monotonic() - began > BUDGET:
                        return
                    inflight += 1
                    try:
                        await session(i)
                    finally:
                        inflight -= 1
                    done += 1

            async def watcher() -> None:
                while next_mark:
                    out_of_time = time.monotonic() - began > BUDGET or done >= SESSIONS
                    if done >= next_mark[0] or (out_of_time and not workers_running()):
                        target = next_mark.pop(0)
                        gate.clear()
                        while inflight:
                            await asyncio.sleep(0.01)
                        await asyncio.sleep(0.3)  # let outboxes and the state flusher finish
                        sizes = {f"dc.{n}": len(found) for n in NAMES if hasattr(found := _attr(dc, n), "__len__")}
                        marks.append({"sessions": done, "planned": target, "complete": done >= target,
                                      "seconds": time.monotonic() - began, "state": state_size(state),
                                      "rows": kv_rows(state), "structures": sizes})
                        gate.set()
                    else:
                        await asyncio.sleep(0.05)

            tasks = [asyncio.create_task(worker()) for _ in range(WORKERS)]

            def workers_running() -> bool:
                return any(not t.done() for t in tasks)

            await asyncio.gather(*tasks, watcher())
    finally:
        await server.stop()
    return marks


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("discord").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="sb-soak-dc-") as tmp:
        state = Path(tmp) / "state.sqlite3"
        marks = asyncio.run(run(state))
    for mark, share in zip(marks, CHECKPOINTS):
        emit(f"soak_discord_state_file_at_{round(share * 100)}pct", mark["state"]["used"] / MB, "MB",
             sessions=mark["sessions"], planned=mark["planned"], complete=mark["complete"],
             seconds=round(mark["seconds"], 1), rows=mark["rows"], structures=mark["structures"])
    first, last = marks[0], marks[-1]
    caveat = {} if last["complete"] else {"note": f"incomplete: the {BUDGET:.0f} s budget ran out at {last['sessions']} "
                                                  f"of {SESSIONS} sessions"}
    emit("soak_discord_state_file_growth_10_to_100pct", (last["state"]["used"] / first["state"]["used"] - 1) * 100, "%",
         "<= 10", sessions=last["sessions"], planned=SESSIONS, seconds=round(last["seconds"], 1), **caveat)
    grown = {k: last["structures"][k] - first["structures"].get(k, 0) for k in last["structures"]}
    unbounded = {k: v for k, v in grown.items() if k.removeprefix("dc.") not in BOUNDED}
    emit("soak_discord_bookkeeping_growth_10_to_100pct", float(sum(unbounded.values())), "entries", "flat (0)",
         sessions=last["sessions"], by_structure=unbounded,
         bounded_by_design={k: v for k, v in grown.items() if k not in unbounded}, **caveat)


if __name__ == "__main__":
    main()
