"""Helpers shared by the benchmarks: JSON figure lines, percentiles, interleaved latency runs, cores apart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

from bridge.abc import Platform, PluginConfig
from bridge.events import Connected, Message, Room


def emit(name: str, value: float, unit: str, target: str | None = None, **extra: object) -> None:
    """Print one figure as a JSON line."""
    line = {"name": name, "value": round(value, 4), "unit": unit}
    if target is not None:
        line["target"] = target
    line.update(extra)
    print(json.dumps(line), flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values)


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize()


def server_process(module: str) -> tuple[subprocess.Popen, str]:
    """Start `python -m MODULE serve` (a stand-in peer in a process of its own): the process, and the
    first line it prints (where it listens)."""
    proc = subprocess.Popen([sys.executable, "-m", module, "serve"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise RuntimeError(f"{module} serve did not start")
    return proc, line


@contextlib.contextmanager
def cores_apart(pid: int) -> Iterator[None]:
    """This process on one core and the stand-in server `pid` on the others, while inside.

    A stand-in peer in its own process keeps its work off the bridge's event loop; on a shared
    core the scheduler still preempts the bridge to run it (hundreds of times a second under
    load), which adds the peer's CPU time to the bridge's latency figures at random. Nothing
    changes on a single core. The affinity this process had is restored on exit.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield
        return
    os.sched_setaffinity(0, {cpus[0]})
    try:
        os.sched_setaffinity(pid, set(cpus[1:]))
    except ProcessLookupError:
        pass  # it already ended: the caller's wait for it says so
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(cpus))


class Sink(Platform):
    """A platform that stamps the arrival of every message (plugin "bench.common:Sink")."""

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


class Path:
    """One way of carrying a message from A to B: `send(token)`, the arrival times, and what undoes it."""

    def __init__(self, arrived: dict[str, float] | None = None) -> None:
        self.arrived: dict[str, float] = {} if arrived is None else arrived
        self.send: Callable[[str], Awaitable[None]] | None = None
        self.cleanup: list[Callable[[], object]] = []


async def interleaved_latencies(paths: dict[str, Path], samples: int, gap: float, settle: float) -> dict[str, list[float]]:
    """Send `samples` tokens along every path, the paths taking turns `gap` seconds apart (so machine
    noise falls on all of them alike); wait `settle` s, undo the paths, and return per path the
    seconds each token that arrived took."""
    await asyncio.sleep(0.3)
    sent: dict[str, dict[str, float]] = {name: {} for name in paths}
    for n in range(samples):
        for name, path in paths.items():
            assert path.send is not None
            token = f"{name}{n}"
            sent[name][token] = time.perf_counter()
            await path.send(token)
            await asyncio.sleep(gap)
    await asyncio.sleep(settle)
    lat = {name: [path.arrived[t] - at for t, at in sent[name].items() if t in path.arrived] for name, path in paths.items()}
    for path in paths.values():
        for undo in path.cleanup:
            undo()
    return lat


def emit_added_latency(prefix: str, lat: dict[str, list[float]], samples: int) -> None:
    """The figures of a "raw" / "chat" / "room" run: p99 of each path, and what backend and router add."""
    ms = 1000.0
    raw, chats, routed = lat["raw"], lat["chat"], lat["room"]
    for name, values in (("server", raw), ("backend", chats), ("routed", routed)):
        emit(
            f"{prefix}_{name}_latency_p99",
            percentile(values, 99) * ms,
            "ms",
            median=round(median(values) * ms, 3),
            samples=len(values),
            lost=samples - len(values),
        )
    emit(f"{prefix}_backend_added_p99", (percentile(chats, 99) - percentile(raw, 99)) * ms, "ms", target="<= 1 ms")
    emit(
        f"{prefix}_routed_added_p99",
        (percentile(routed, 99) - percentile(raw, 99)) * ms,
        "ms",
        target="<= 1 ms",
        note="room to room through the router: the core sessions on both ends included",
    )
