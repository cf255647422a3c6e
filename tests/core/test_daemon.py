"""The daemon as a process: SIGKILL mid-chat then restart, SIGTERM, a corrupt state file."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp: Path, state: Path | None = None, bridge: str = "", tables: str = "") -> Path:
    cfg = tmp / "config.toml"
    cfg.write_text(
        f"""
[bridge]
state = "{state or tmp / 'state.sqlite3'}"
log_level = "INFO"
shutdown_timeout = 3
{bridge}
[platforms.f]
plugin = "tests.core.fileplatform:FilePlatform"
inbox = "{tmp / 'in.jsonl'}"
outbox = "{tmp / 'out.jsonl'}"
{tables}
"""
    )
    return cfg


def start_daemon(cfg: Path, tmp: Path, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    log = open(tmp / "daemon.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "-c", str(cfg)],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        **popen,
    )


def user(tmp: Path, room: str, kind: str, **fields) -> None:
    with (tmp / "in.jsonl").open("a") as f:
        f.write(json.dumps({"room": room, "type": kind, **fields}) + "\n")


def shown(tmp: Path) -> list[dict]:
    path = tmp / "out.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kinds(tmp, room, since=0):
    return [(e["type"], e.get("reason")) for e in shown(tmp)[since:] if e["room"] == room]


def pair(tmp):
    mark = len(shown(tmp))
    user(tmp, "a", "Start")
    user(tmp, "b", "Start")
    wait_until(
        lambda: ("Connected", None) in kinds(tmp, "a", mark) and ("Connected", None) in kinds(tmp, "b", mark),
        what="pairing",
    )
    user(tmp, "a", "Message", text="hello over the hub")
    wait_until(
        lambda: any(e.get("text") == "hello over the hub" for e in shown(tmp)[mark:] if e["room"] == "b"), what="relay"
    )


def test_sigkill_mid_chat_then_restart_ends_each_session_once(tmp_path):
    # resume_window 0: the hub never takes a chat up again (tests/scale/test_resume.py: when it does)
    cfg = write_config(tmp_path, tables='[backends.hub]\nplugin = "hub"\nresume_window = 0\n')
    proc = start_daemon(cfg, tmp_path)
    try:
        pair(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    before = len(shown(tmp_path))
    runs = _running_lines(tmp_path)
    proc = start_daemon(cfg, tmp_path)
    try:
        wait_until(
            lambda: all(("Disconnected", "restart") in kinds(tmp_path, r) for r in "ab"), what="restart notices"
        )
        # Once past the resume and a new room served since, no second notice can be on its way.
        wait_until(lambda: _running_lines(tmp_path) > runs, what="the start-up")
        user(tmp_path, "z", "Start")
        wait_until(lambda: ("Waiting", None) in kinds(tmp_path, "z"), what="a room served after the start-up")
        user(tmp_path, "z", "Disconnected")
        wait_until(lambda: ("Disconnected", "user") in kinds(tmp_path, "z"), what="z left")
        after = [e for e in shown(tmp_path)[before:] if e["room"] != "z"]
        assert sorted((e["room"], e["type"], e["reason"]) for e in after) == [
            ("a", "Disconnected", "restart"),
            ("b", "Disconnected", "restart"),
        ]
        # The rooms work again at once.
        pair(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # A second crash-restart cycle ends the new chat once too, and never the old one again.
    proc = start_daemon(cfg, tmp_path)
    try:
        wait_until(lambda: [k for k in kinds(tmp_path, "a") if k == ("Disconnected", "restart")].__len__() == 2)
    finally:
        proc.terminate()
        proc.wait(10)


def test_sigterm_tells_every_room_and_exits_zero(tmp_path):
    cfg = write_config(tmp_path)
    proc = start_daemon(cfg, tmp_path)
    pair(tmp_path)
    user(tmp_path, "c", "Start")
    wait_until(lambda: ("Waiting", None) in kinds(tmp_path, "c"))
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 5
    for room in "abc":
        ends = [k for k in kinds(tmp_path, room) if k[0] == "Disconnected"]
        assert ends == [("Disconnected", "shutdown")], (room, ends)
    # Nothing is left to resume: a restart sends no notice. Checked once the restarted daemon has
    # resumed what it found (its "running" line, logged after that) and served a new room since:
    # a notice for a room of the old run would have come before d's.
    before = len(shown(tmp_path))
    runs = _running_lines(tmp_path)
    proc = start_daemon(cfg, tmp_path)
    try:
        wait_until(lambda: _running_lines(tmp_path) > runs or proc.poll() is not None, what="the restart")
        assert proc.poll() is None
        user(tmp_path, "d", "Start")
        wait_until(lambda: ("Waiting", None) in kinds(tmp_path, "d"), what="a new room served")
        assert [e["room"] for e in shown(tmp_path)[before:]] == ["d"]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def _running_lines(tmp: Path) -> int:
    """How many times a daemon logged that it runs (after its start-up and resume) in this test's log."""
    return (tmp / "daemon.log").read_bytes().count(b"stranger-bridge running:")


def test_corrupt_state_file_is_a_clear_error(tmp_path):
    state = tmp_path / "state.sqlite3"
    state.write_bytes(b"garbage" * 1000)
    cfg = write_config(tmp_path, state)
    res = subprocess.run(
        [sys.executable, "-m", "bridge", "run", "-c", str(cfg)], cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.returncode == 2
    assert "not a stranger-bridge state file" in res.stderr
    assert state.read_bytes() == b"garbage" * 1000


def test_events_that_arrive_during_startup_are_not_taken_for_leftovers(tmp_path):
    # The platform hands in events before the daemon has looked at the previous run's sessions:
    # those new sessions must be served, not "ended by a restart".
    cfg = write_config(tmp_path)
    user(tmp_path, "a", "Start")
    user(tmp_path, "b", "Start")
    proc = start_daemon(cfg, tmp_path)
    try:
        wait_until(lambda: ("Connected", None) in kinds(tmp_path, "a") and ("Connected", None) in kinds(tmp_path, "b"))
        # Past the resume (the "running" line comes after it) and a room served since: a leftover's
        # end would have been shown by then.
        wait_until(lambda: _running_lines(tmp_path) > 0, what="the start-up")
        user(tmp_path, "z", "Start")
        wait_until(lambda: ("Waiting", None) in kinds(tmp_path, "z"), what="a room served after the start-up")
        assert not any(k[0] == "Disconnected" for r in "ab" for k in kinds(tmp_path, r))
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
