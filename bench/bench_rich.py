"""Rich relay figures: end-to-end latency of an edit and of a reaction through the hub (beside a plain
message's), memory of one session's reference map at its bound, re-encode time of a 2 MB JPEG."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import time
import tracemalloc

from bench.common import emit, median, percentile
from bridge.abc import Platform, PluginConfig
from bridge.app import Bridge
from bridge.config import ImageLimits, parse_config
from bridge.events import Connected, Edit, Message, Posted, Reaction, Room, Start
from bridge.images import reencode
from bridge.refs import RefMap
from bridge.store import MemoryStore

PAIRS = 100
ROUNDS = 20


class RichSink(Platform):
    """Answers every stranger line with Posted (as Discord and Matrix do) and stamps arrivals."""

    Config = PluginConfig

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.connected = 0
        self.target = 0
        self.done = asyncio.Event()
        self.sent: dict[str, float] = {}  # token -> when it was submitted
        self.latency: dict[str, list[float]] = {"message": [], "edit": [], "reaction": []}
        self.ids: dict[tuple[Room, str], str] = {}  # (room, text of the line) -> this platform's id
        self.count = 0

    async def run(self) -> None:
        await asyncio.Event().wait()

    def _arrived(self, kind: str, token: str) -> None:
        sent = self.sent.pop(token, None)
        if sent is not None:
            self.latency[kind].append(time.perf_counter() - sent)
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    async def deliver(self, room: Room, event) -> None:
        kind = type(event)
        if kind is Message:
            pid = f"p{len(self.ids)}"
            self.ids[(room, event.text)] = pid
            self.submit(room, Posted(event.ref, pid))
            self._arrived("message", event.text)
        elif kind is Edit:
            self._arrived("edit", event.text)
        elif kind is Reaction:
            self._arrived("reaction", event.emoji)
        elif kind is Connected:
            self.connected += 1
            if self.connected >= self.target:
                self.done.set()


def bridge_config():
    fast = {"user_rate": 1e9, "user_burst": 10**9, "stranger_rate": 1e9, "stranger_burst": 10**9,
            "reaction_rate": 1e9, "reaction_burst": 10**9, "max_edits": 1000, "max_reactions": 1000, "inbox_size": 100000}  # fmt: skip
    return parse_config(
        {"bridge": fast, "platforms": {"sink": {"plugin": "bench.bench_rich:RichSink"}},
         "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0}}},
        env=False,
    )  # fmt: skip


def _arm(sink: RichSink, target: int) -> None:
    sink.count, sink.target = 0, target
    sink.done.clear()


async def latency() -> None:
    """Each of 100 pairs sends one line, then edits it and the partner reacts to it, round after round,
    spread over time like live chats; each kind's latency is from submit to the partner's deliver."""
    async with Bridge(bridge_config(), store=MemoryStore()) as bridge:
        sink: RichSink = bridge.platforms["sink"]  # type: ignore[assignment]
        sink.target = PAIRS * 2
        for n in range(PAIRS * 2):
            sink.submit(Room("sink", str(n)), Start())
        await asyncio.wait_for(sink.done.wait(), 120)
        pairs = [(Room("sink", str(2 * n)), Room("sink", str(2 * n + 1))) for n in range(PAIRS)]
        for r in range(ROUNDS):
            _arm(sink, PAIRS)
            for a, _ in pairs:
                token = f"m{r}-{a.id}"
                sink.sent[token] = time.perf_counter()
                sink.submit(a, Message(token, ref=f"own-{token}"))
                await asyncio.sleep(0)
            await asyncio.wait_for(sink.done.wait(), 120)
            _arm(sink, PAIRS)
            for a, _ in pairs:
                token = f"e{r}-{a.id}"
                sink.sent[token] = time.perf_counter()
                sink.submit(a, Edit(f"own-m{r}-{a.id}", token))
                await asyncio.sleep(0)
            await asyncio.wait_for(sink.done.wait(), 120)
            _arm(sink, PAIRS)
            for a, b in pairs:
                token = f"r{r}-{a.id}"
                sink.sent[token] = time.perf_counter()
                sink.submit(b, Reaction(sink.ids[(b, f"m{r}-{a.id}")], token))
                await asyncio.sleep(0)
            await asyncio.wait_for(sink.done.wait(), 120)
    for kind in ("edit", "reaction", "message"):
        values = sink.latency[kind]
        target = "<= 5" if kind != "message" else None
        emit(f"rich.{kind}_latency_p99_{PAIRS}_pairs", percentile(values, 99) * 1000, "ms", target, samples=len(values))
        emit(f"rich.{kind}_latency_p50_{PAIRS}_pairs", percentile(values, 50) * 1000, "ms", samples=len(values))


def map_memory() -> None:
    """One session's map full on both sides: Discord-sized ids, lines of 200 characters."""
    bound, maps = 256, 50
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = []
    for m in range(maps):
        refs = RefMap(bound)
        for n in range(bound):
            refs.add_mine(f"{1_100_000_000_000_000_000 + m * 1000 + n}", f"line {n} " + "x" * 200)
            ref = refs.add_theirs(f"{m:08x}.{n:x}", f"their line {n} " + "y" * 200)
            refs.posted(ref, f"$event{m}-{n}-" + "z" * 30)
        kept.append(refs)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    emit("rich.refmap_memory_per_session_at_bound", used / maps / 1024, "KB", bound_per_side=bound)
    emit("rich.refmap_encoded_size_at_bound", len(kept[0].encode()) / 1024, "KB", bound_per_side=bound)


def jpeg_of(size: int) -> bytes:
    """A photo-like JPEG of about `size` bytes (noise does not compress)."""
    from PIL import Image as PILImage

    side = 900
    while True:
        picture = PILImage.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=90)
        if out.tell() >= size:
            return out.getvalue()
        side += 100


def reencode_time() -> None:
    data = jpeg_of(2_000_000)
    limits = ImageLimits()
    timings = []
    for _ in range(7):
        started = time.perf_counter()
        reencode(data, limits)
        timings.append(time.perf_counter() - started)
    emit("rich.reencode_2mb_jpeg_median", median(timings) * 1000, "ms", bytes=len(data))


def main() -> None:
    asyncio.run(latency())
    map_memory()
    reencode_time()


if __name__ == "__main__":
    main()
