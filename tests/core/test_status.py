"""`stranger-bridge status` through the CLI against a real running daemon, a degraded one and stopped ones."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.address import connect_host, split_bind
from tests.core.scripted import ScriptedBackend
from tests.core.test_daemon import pair, shown, start_daemon, user, wait_until, write_config
from tests.core.test_notify import Manager
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


class DownBackend(ScriptedBackend):
    """Refuses every connect (the session logs a warning) and reports its link down."""

    def stats(self):
        return {"connected": False, "waiting": {"random": 3}}


def status(cfg: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "status", "-c", str(cfg), *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_until_ready(tmp: Path, cfg: Path) -> subprocess.Popen:
    manager = Manager(str(tmp / "notify.sock"))
    try:
        proc = start_daemon(cfg, tmp, {"NOTIFY_SOCKET": manager.address})
        manager.wait_for(lambda m: m.get("READY") == "1", what="READY=1")
    finally:
        manager.close()
    return proc


def test_running_healthy_daemon_then_stopped_cleanly(tmp_path):
    cfg = write_config(tmp_path, bridge=f'metrics_bind = "127.0.0.1:{free_port()}"')
    proc = run_until_ready(tmp_path, cfg)
    try:
        pair(tmp_path)
        res = status(cfg, "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        report = json.loads(res.stdout)
        assert report["running"] is True and report["health"] == "healthy" and report["pid"] == proc.pid
        assert report["platforms"] == {"f": {"ready": True}}
        assert report["sessions"] == {"f": {"chatting": 2}}
        assert report["uptime"] > 0 and report["errors"] == []
        text = status(cfg)
        assert text.returncode == 0
        assert "running (healthy)" in text.stdout and "f ready" in text.stdout and "f: 2 chatting" in text.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    res = status(cfg, "--json")
    assert res.returncode == 3, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["running"] is False and report["health"] == "not running"
    assert report["sessions"] == {}  # a clean stop ended every chat
    assert report["last_run"]["stopped"] >= report["last_run"]["started"] > 0
    text = status(cfg)
    assert text.returncode == 3 and "not running" in text.stdout and "stopped 20" in text.stdout


def test_degraded_daemon_with_its_last_errors_then_killed(tmp_path):
    port = free_port()
    tables = '[backends.down]\nplugin = "tests.core.test_status:DownBackend"\nfail_connect = true\n'
    cfg = write_config(tmp_path, bridge=f'metrics_bind = "127.0.0.1:{port}"\ndefault_backend = "down"', tables=tables)
    proc = run_until_ready(tmp_path, cfg)
    try:
        user(tmp_path, "secret-room-id", "Start")
        wait_until(lambda: any(e["room"] == "secret-room-id" for e in shown(tmp_path)), what="the refusal notice")
        res = status(cfg, "--json")
        assert res.returncode == 1, res.stdout + res.stderr
        report = json.loads(res.stdout)
        assert report["health"] == "degraded" and report["backends"]["down"]["connected"] is False
        assert report["waiting"] == {"random": 3}
        templates = [e["template"] for e in report["errors"]]
        assert "session %s: backend %s failed to connect: %s" in templates
        assert "secret-room-id" not in res.stdout and "scripted refusal" not in res.stdout
        text = status(cfg)
        assert text.returncode == 1 and "running (degraded)" in text.stdout and "3 random" in text.stdout
        assert "failed to connect" in text.stdout
    finally:
        proc.kill()
        proc.wait(timeout=20)
    res = status(cfg)
    assert res.returncode == 3 and "did not stop cleanly" in res.stdout


def test_killed_mid_chat_shows_the_sessions_left_in_the_state_file(tmp_path):
    cfg = write_config(tmp_path, bridge=f'metrics_bind = "127.0.0.1:{free_port()}"')
    proc = run_until_ready(tmp_path, cfg)
    try:
        pair(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    res = status(cfg, "--json")
    assert res.returncode == 3
    assert json.loads(res.stdout)["sessions"] == {"f": {"chatting": 2}}


def test_without_metrics_bind_status_is_unknown_and_says_why(tmp_path):
    cfg = write_config(tmp_path)
    res = status(cfg)
    assert res.returncode == 4 and "metrics_bind" in res.stdout
    assert not (tmp_path / "state.sqlite3").exists()  # asking created no state file


def test_bad_config_is_exit_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[bridge]\nmetrics_bind = "no-port"\n')
    res = status(cfg)
    assert res.returncode == 2 and "metrics_bind" in res.stderr


@pytest.mark.parametrize(
    ("bind", "host", "port", "asked"),
    [
        ("127.0.0.1:9108", "127.0.0.1", 9108, "127.0.0.1"),
        ("0.0.0.0:9108", "0.0.0.0", 9108, "127.0.0.1"),
        ("[::]:9108", "::", 9108, "::1"),
        ("[::1]:0", "::1", 0, "::1"),
        ("localhost:80", "localhost", 80, "localhost"),
    ],
)
def test_bind_addresses_and_where_status_asks(bind, host, port, asked):
    assert split_bind(bind) == (host, port)
    assert connect_host(host) == asked


@pytest.mark.parametrize("bind", ["9108", ":9108", "host:", "host:port", "host:70000", ""])
def test_malformed_bind_addresses_are_refused(bind):
    with pytest.raises(ValueError):
        split_bind(bind)
