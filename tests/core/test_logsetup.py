"""Log storms cut down to a few records per interval with a count; the error ring keeps no text or ids."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.logsetup import ErrorRing, RepeatFilter

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg="socket.accept() out of system resource\nsocket: %r", args=("<sock>",), level=logging.ERROR, line=1, name="asyncio"):
    return logging.LogRecord(name, level, "/x/base_events.py", line, msg, args, None)


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res


def test_storm_passes_burst_then_once_per_interval_with_count():
    clock = Clock()
    flt = RepeatFilter(interval=10.0, burst=2, clock=clock)
    passed = []
    for i in range(1000):
        clock.now = i * 0.01  # 1,000 records in 10 s
        rec = record()
        if flt.filter(rec):
            passed.append(rec)
    assert len(passed) == 2 and not hasattr(passed[0], "suppressed") and not hasattr(passed[1], "suppressed")
    assert flt.suppressed_total == 998
    clock.now = 10.0  # next interval: the first record through says how many were left out
    rec = record()
    assert flt.filter(rec) and rec.suppressed == 998
    rec = record()
    assert flt.filter(rec) and not hasattr(rec, "suppressed")
    assert not flt.filter(record())


@pytest.mark.parametrize(
    ("other", "counted_apart"),
    [
        (dict(args=("<another sock>",)), False),  # same call site, other arguments: the same storm
        (dict(line=2), True),  # another line of code
        (dict(level=logging.WARNING), True),
        (dict(name="aiohttp.server"), True),
        (dict(level=logging.INFO), True),  # below WARNING: never counted, always passes
    ],
)
def test_what_counts_as_the_same_record(other, counted_apart):
    flt = RepeatFilter(interval=10.0, burst=1, clock=Clock())
    assert flt.filter(record())
    assert flt.filter(record(**other)) is counted_apart


def test_info_and_debug_are_never_thinned():
    flt = RepeatFilter(interval=10.0, burst=1, clock=Clock())
    assert all(flt.filter(record(level=logging.INFO)) for _ in range(100))


def test_tracked_call_sites_are_bounded():
    flt = RepeatFilter(interval=10.0, burst=1, clock=Clock(), sites=4)
    for line in range(100):
        flt.filter(record(line=line))
    assert len(flt._seen) == 4


def test_setup_logging_cuts_a_real_storm_on_stderr():
    # Through the real logging tree in a fresh interpreter: asyncio's own logger, JSON on stderr.
    code = (
        "import logging; from bridge.logsetup import setup_logging; setup_logging('json', 'INFO');"
        "log = logging.getLogger('asyncio');"
        "[log.error('socket.accept() out of system resource\\nsocket: %r', i) for i in range(10000)];"
        "logging.getLogger('bridge.x').info('after the storm')"
    )
    res = run_python(code)
    lines = [json.loads(line) for line in res.stderr.splitlines()]
    storm = [line for line in lines if line["logger"] == "asyncio"]
    assert 1 <= len(storm) <= 5, len(storm)
    assert lines[-1]["message"] == "after the storm"


def test_text_format_shows_the_suppressed_count():
    code = (
        "import logging, time; import bridge.logsetup as ls; ls.setup_logging('text', 'INFO');"
        "flt = logging.getLogger().handlers[0].filters[0]; now = [0.0]; flt.clock = lambda: now[0];"
        "log = logging.getLogger('asyncio');"
        "[log.error('accept failed %s', i) for i in range(50)]; now[0] = 100.0; log.error('accept failed %s', 'last')"
    )
    res = run_python(code)
    last = res.stderr.splitlines()[-1]
    assert "accept failed last" in last and "[45 more like this suppressed]" in last


def test_error_ring_keeps_templates_not_text_and_merges_repeats():
    ring = ErrorRing(size=3, level=logging.ERROR)
    logger = logging.getLogger("bridge.test_ring")
    logger.addHandler(ring)
    logger.propagate = False
    try:
        logger.error("room %s: %s not delivered", "web:secret-client-id", "Message")
        logger.error("room %s: %s not delivered", "web:other-id", "Message")
        logger.error(f"formatted before logging: {'hello stranger'}")
        logger.warning("below the ring's level %s", 1)
        try:
            raise ConnectionResetError("peer said something private")
        except ConnectionResetError:
            logger.exception("send failed for %s", "user-42")
        entries = ring.recent()
    finally:
        logger.removeHandler(ring)
        logger.propagate = True
    assert [(e["template"], e["exception"], e["count"]) for e in entries] == [
        ("room %s: %s not delivered", None, 2),
        (None, None, 1),
        ("send failed for %s", "ConnectionResetError", 1),
    ]
    text = json.dumps(entries)
    for secret in ("secret-client-id", "other-id", "hello stranger", "private", "user-42"):
        assert secret not in text


def test_error_ring_is_bounded_and_keeps_warnings_by_default():
    ring = ErrorRing(size=2)
    for n in range(5):
        ring.handle(record(msg=f"site {n} %s", level=logging.WARNING, line=n))
    assert [e["template"] for e in ring.recent()] == ["site 3 %s", "site 4 %s"]
