"""Helpers shared by the benchmarks: JSON figure lines and percentiles."""

from __future__ import annotations

import json
import resource
import statistics


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
