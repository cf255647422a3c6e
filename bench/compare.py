"""Side by side: run one bench function on this tree and on another checkout, alternating, and compare.

    python -m bench.compare --against /tmp/orig --rounds 6 bench_core:throughput bench_core:latency_under_load

Each round runs every function once per tree, each in a fresh process (PYTHONPATH and working
directory set to that tree), the trees taking turns, so a change in machine load falls on both
alike. Every JSON figure line a function emits is collected per tree; the result is one JSON line
per figure with both medians and their ratio, plus the CPU seconds each function used (process
time, less disturbed by other load on the machine than wall-clock figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

__all__ = ["main"]

HERE = Path(__file__).resolve().parent.parent

# Runs in the child: call one bench function, print its figures and the CPU time it took.
_CHILD = r"""
import asyncio, importlib, inspect, json, sys, time
spec = sys.argv[1]
del sys.argv[1:]  # a bench's main may read its own arguments (bench_web's scenario filter): it gets none
module_name, function_name = spec.split(":")
module = importlib.import_module("bench." + module_name)
function = getattr(module, function_name)
started = time.process_time()
result = function()
if inspect.iscoroutine(result):
    asyncio.run(result)
print(json.dumps({"name": spec + ".cpu_seconds", "value": time.process_time() - started, "unit": "s"}), flush=True)
"""


def _run(tree: Path, spec: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, spec], cwd=tree, env=env, capture_output=True, text=True, timeout=600
    )
    if out.returncode != 0:
        raise RuntimeError(f"{spec} failed in {tree}: {out.stderr[-2000:]}")
    figures = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            figure = json.loads(line)
            figures[figure["name"]] = float(figure["value"])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, type=Path, help="the other checkout (e.g. a git worktree of the old commit)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("specs", nargs="+", help="module:function in bench/, e.g. bench_core:throughput")
    args = parser.parse_args(argv)
    trees = {"this": HERE, "other": args.against.resolve()}
    samples: dict[str, dict[str, list[float]]] = {"this": {}, "other": {}}
    for n in range(args.rounds):
        order = list(trees) if n % 2 == 0 else list(reversed(trees))
        for spec in args.specs:
            for which in order:
                for name, value in _run(trees[which], spec).items():
                    samples[which].setdefault(name, []).append(value)
    for name in sorted(samples["this"]):
        mine, theirs = samples["this"][name], samples["other"].get(name, [])
        if not theirs:
            continue
        a, b = statistics.median(mine), statistics.median(theirs)
        line = {
            "name": name, "this": round(a, 4), "other": round(b, 4), "ratio": round(a / b, 4) if b else None,
            "this_all": [round(v, 4) for v in mine], "other_all": [round(v, 4) for v in theirs],
        }  # fmt: skip
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
