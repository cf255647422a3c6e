"""`stranger-bridge mod` as a process on a stopped daemon's state file and beside a running daemon; check-config refuses catastrophic regexes."""

import os
import re
import signal
import subprocess
import sys

from tests.core.test_daemon import ROOT, shown, start_daemon, user, wait_until, write_config

BANNED = "f:0123456789abcdef"  # the key the file platform gives this person


def mod(cfg, *args):
    return subprocess.run(
        [sys.executable, "-m", "bridge", "mod", *args, "-c", str(cfg)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def notices(tmp, room):
    return [e["text"] for e in shown(tmp) if e["room"] == room and e["type"] == "ServerNotice"]


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_ban_on_a_stopped_daemons_file_then_the_daemon_refuses_the_start(tmp_path):
    cfg = write_config(tmp_path)
    proc = start_daemon(cfg, tmp_path)  # one run creates the state file
    user(tmp_path, "x", "Start")
    wait_until(lambda: any(e["type"] == "Waiting" for e in shown(tmp_path)), what="a first run")
    stop(proc)

    res = mod(cfg, "ban", BANNED, "--for", "2h", "--reason", "spam")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"banned {BANNED} until ") and res.stdout.rstrip().endswith("(2 h left): spam")
    listing = mod(cfg, "list")
    assert listing.returncode == 0 and listing.stdout.startswith(f"{BANNED}  banned until ")

    proc = start_daemon(cfg, tmp_path)
    try:
        user(tmp_path, "a", "Start", user=BANNED)
        user(tmp_path, "b", "Start", user="f:fedcba9876543210")
        wait_until(lambda: any(e["room"] == "b" and e["type"] == "Waiting" for e in shown(tmp_path)), what="b waiting")
        wait_until(lambda: notices(tmp_path, "a"), what="a's notice")
        # the time left as it is at the start (2 h less the seconds since the ban)
        assert re.fullmatch(
            r"You are banned from starting chats on this bridge for (2 h|1 h 5\d min) more\. Reason: spam\.", notices(tmp_path, "a")[0]
        ), notices(tmp_path, "a")
        assert not any(e["room"] == "a" and e["type"] in ("Waiting", "Connected") for e in shown(tmp_path))
    finally:
        stop(proc)


def test_ban_and_unban_beside_a_running_daemon(tmp_path):
    cfg = write_config(tmp_path)
    proc = start_daemon(cfg, tmp_path)
    try:
        user(tmp_path, "x", "Start")
        wait_until(lambda: any(e["type"] == "Waiting" for e in shown(tmp_path)), what="the daemon running")
        res = mod(cfg, "ban", BANNED, "--for", "30m")
        assert res.returncode == 0, res.stderr
        user(tmp_path, "a", "Start", user=BANNED)
        wait_until(lambda: notices(tmp_path, "a"), what="the ban notice")
        assert re.fullmatch(r"You are banned from starting chats on this bridge for (30 min|29 min \d+ s) more\.", notices(tmp_path, "a")[0])
        res = mod(cfg, "unban", BANNED)
        assert (res.returncode, res.stdout) == (0, f"unbanned {BANNED}\n"), res.stderr
        assert mod(cfg, "unban", BANNED).returncode == 1  # nothing left to unban
        user(tmp_path, "a", "Start", user=BANNED)
        wait_until(lambda: any(e["room"] == "a" and e["type"] == "Connected" for e in shown(tmp_path)), what="a paired")
        log = mod(cfg, "log")
        assert log.returncode == 0
        assert [line.split("  ")[1] for line in log.stdout.splitlines()] == ["unban", "ban"]
    finally:
        stop(proc)


def test_mod_errors_are_clear(tmp_path):
    cfg = write_config(tmp_path)
    res = mod(cfg, "list")
    assert res.returncode == 2 and "no state file here" in res.stderr
    res = mod(cfg, "ban", "nocolon")
    assert res.returncode == 2 and "PLATFORM:USER" in res.stderr


def test_check_config_refuses_a_catastrophic_regex_naming_the_key(tmp_path):
    cfg = write_config(tmp_path, tables='[policy.lists.spam]\naction = "hold"\npatterns = ["ok", "(a+)+$"]\n')
    res = subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", "-c", str(cfg)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2
    assert "config error: policy.lists.spam.patterns: pattern '(a+)+$': refused, a nested quantifier" in res.stderr
