"""The command line as a user meets it: `run` with no config file, JSON logs, entry-point plugins."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bridge.logsetup import JsonFormatter
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_run_without_config_serves_the_web_page_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STRANGER_BRIDGE_PLATFORMS__WEB__BIND": f"127.0.0.1:{port}",
        "STRANGER_BRIDGE_BRIDGE__LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        page = None
        while time.monotonic() < deadline and page is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    page = response.read().decode()
            except OSError:
                time.sleep(0.1)
        assert page is not None, "the web page never answered"
        assert "<html" in page.lower()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
            assert "count" in json.loads(response.read())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert any("stranger-bridge running" in line["message"] for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert (tmp_path / "stranger-bridge.sqlite3").exists()  # default state file in the working directory


def test_json_formatter_keeps_exceptions_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "failed here" and "ValueError: boom" in data["exception"]


def test_entry_point_plugins_are_found(tmp_path, monkeypatch):
    # A third-party distribution that registers a platform under the group stranger_bridge.plugins.
    dist = tmp_path / "thirdparty_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[stranger_bridge.plugins]\nrecorder = tests.helpers:RecordingPlatform\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from bridge.config import parse_config

    cfg = parse_config({"platforms": {"mine": {"plugin": "recorder"}}}, env=False)
    assert cfg.platform_classes["mine"].__name__ == "RecordingPlatform"


def test_port_in_use_is_a_clear_failure_not_a_hang(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "STRANGER_BRIDGE_PLATFORMS__WEB__BIND": f"127.0.0.1:{port}"}
        res = subprocess.run(
            [sys.executable, "-m", "bridge", "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
        )
    assert res.returncode == 1
    assert "platform web failed to start" in res.stderr
