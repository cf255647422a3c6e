"""State and config faults as an operator meets them: through the real CLI, with exit codes and messages."""

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bridge.events import Room
from bridge.store import SessionRecord, SQLiteStore, StoreError
from tests.core.test_cli import ROOT, free_port

STATE = "stranger-bridge.sqlite3"  # the default state file, in the working directory


def cli(args, cwd, env=None, timeout=30):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


class Daemon:
    """`stranger-bridge run` with the default config (hub and web page) in `cwd`, on its own port."""

    def __init__(self, cwd: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "STRANGER_BRIDGE_PLATFORMS__WEB__BIND": f"127.0.0.1:{self.port}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def wait_serving(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()[1]
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.1)
        raise AssertionError("the daemon never served its page")

    def serving(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=5) as response:
            return response.status == 200

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


def bad_row_file(path: Path) -> None:
    db = sqlite3.connect(path)
    with db:
        db.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('app', 'stranger-bridge/1');
            CREATE TABLE sessions (platform TEXT NOT NULL, room TEXT NOT NULL, state TEXT NOT NULL,
                backend TEXT NOT NULL, handle TEXT, start TEXT NOT NULL, created REAL NOT NULL,
                updated REAL NOT NULL, PRIMARY KEY (platform, room));
            INSERT INTO sessions VALUES ('web', 'secret-client-id', 'chatting', 'hub', NULL, '{not json', 1.0, 1.0);
            INSERT INTO sessions VALUES ('web', 'other-client-id', 'chatting', 'hub', NULL, '[1, 2]', 2.0, 2.0);
            INSERT INTO sessions VALUES ('web', 'good-client-id', 'searching', 'hub', NULL, '{"mode": "random"}', 3.0, 3.0);
            """
        )
    db.close()


async def test_unreadable_rows_are_skipped_kept_in_quarantine_and_logged_once(tmp_path, caplog):
    path = tmp_path / STATE
    bad_row_file(path)
    caplog.set_level(logging.WARNING, logger="bridge.store")
    store = SQLiteStore(path)
    try:
        [good] = await store.sessions()
        assert good.room == Room("web", "good-client-id") and good.start == {"mode": "random"}
        assert [await store.sessions() for _ in range(2)] == [[good], [good]]
    finally:
        await store.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "2 unreadable session rows" in warnings[0] and "quarantine" in warnings[0]
    assert "client-id" not in warnings[0]  # room ids are client ids: never logged
    db = sqlite3.connect(path)
    kept = db.execute("SELECT room, start, problem FROM quarantine ORDER BY created").fetchall()
    db.close()
    assert [(room, start) for room, start, _ in kept] == [("secret-client-id", "{not json"), ("other-client-id", "[1, 2]")]
    assert all(problem for _, _, problem in kept)


def test_the_daemon_starts_despite_an_unreadable_row(tmp_path):
    bad_row_file(tmp_path / STATE)
    daemon = Daemon(tmp_path)
    try:
        daemon.wait_serving()
    finally:
        code, err = daemon.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert err.count("unreadable session rows") == 1


@pytest.mark.parametrize("table", ["BRIDGE", "PLATFORMS", "BACKENDS"])
@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_whole_table_override_that_is_not_json_exits_2_naming_the_key(tmp_path, table, command):
    done = cli([command], tmp_path, {f"STRANGER_BRIDGE_{table}": "{bad"})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"config error: {table.lower()}: the environment variable STRANGER_BRIDGE_{table} is not valid JSON" in done.stderr


def make_read_only(path: Path) -> None:
    if os.geteuid() == 0:  # root writes through file modes: only the immutable flag stops it
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o444)


def undo_read_only(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o644)


def test_a_read_only_state_file_is_reported_as_not_writable(tmp_path):
    path = tmp_path / STATE
    subprocess.run([sys.executable, "-c", f"from bridge.store import SQLiteStore; SQLiteStore({str(path)!r})"], cwd=ROOT, check=True)
    before = path.read_bytes()
    make_read_only(path)
    try:
        done = cli(["run"], tmp_path, {"STRANGER_BRIDGE_PLATFORMS__WEB__BIND": f"127.0.0.1:{free_port()}"})
    finally:
        undo_read_only(path)
    assert done.returncode == 2, done.stderr
    assert "the state file cannot be written" in done.stderr
    assert "not a stranger-bridge state file" not in done.stderr and "Traceback" not in done.stderr
    assert path.read_bytes() == before


def test_a_second_daemon_on_the_same_state_file_is_refused_and_kill_9_frees_it(tmp_path):
    first = Daemon(tmp_path)
    try:
        first.wait_serving()
        second = cli(["run"], tmp_path, {"STRANGER_BRIDGE_PLATFORMS__WEB__BIND": f"127.0.0.1:{free_port()}"})
        assert second.returncode == 2, second.stderr
        assert "another stranger-bridge is running on this state file" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.serving()  # the first one is untouched
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        third = Daemon(tmp_path)  # the kernel dropped the dead one's lock
        try:
            third.wait_serving()
        finally:
            code, err = third.stop()
        assert code == 0, err
    finally:
        first.stop()


def test_two_stores_in_one_process_exclude_each_other_until_closed(tmp_path):
    path = tmp_path / STATE
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="another stranger-bridge is running"):
        SQLiteStore(path)
    asyncio.run(store.close())
    again = SQLiteStore(path)
    asyncio.run(again.save_session(SessionRecord(Room("web", "x"), "searching", "hub")))
    asyncio.run(again.close())


BAD_VALUES = {
    "bridge.search_timeout": ("[bridge]", "search_timeout = inf"),
    "bridge.shutdown_timeout": ("[bridge]", "shutdown_timeout = nan"),
    "bridge.user_rate": ("[bridge]", "user_rate = inf"),
    "bridge.stranger_rate": ("[bridge]", "stranger_rate = inf"),
    "bridge.deliver_attempts": ("[bridge]", "deliver_attempts = true"),
    "bridge.max_interests": ("[bridge]", "max_interests = false"),
    "bridge.user_burst": ("[bridge]", "user_burst = true"),
    "platforms.web.client_timeout": ("[platforms.web]", "client_timeout = inf"),
    "platforms.web.max_sessions_per_address": ("[platforms.web]", "max_sessions_per_address = true"),
    "backends.hub.repair_cooldown": ("[backends.hub]", "repair_cooldown = nan"),
    "backends.hub.scan_limit": ("[backends.hub]", "scan_limit = true"),
}


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_check_config_refuses_inf_nan_and_booleans_for_numbers(tmp_path, key):
    table, line = BAD_VALUES[key]
    body = f'[platforms.web]\nplugin = "web"\n[backends.hub]\nplugin = "hub"\n'
    body = body.replace(f"{table}\n", f"{table}\n{line}\n") if table in body else body + f"{table}\n{line}\n"
    (tmp_path / "c.toml").write_text(body)
    done = cli(["check-config", "-c", "c.toml"], tmp_path)
    assert done.returncode == 2, (body, done.stdout)
    assert f"config error: {key}: " in done.stderr, done.stderr


def test_check_config_refuses_an_empty_file_and_keeps_accepting_numbers_from_the_environment(tmp_path):
    (tmp_path / "empty.toml").write_text("# nothing here yet\n")
    done = cli(["check-config", "-c", "empty.toml"], tmp_path)
    assert done.returncode == 2 and "the config file is empty" in done.stderr
    (tmp_path / "ok.toml").write_text('[platforms.web]\nplugin = "web"\n[bridge]\ndeliver_attempts = 3\n')
    env = {"STRANGER_BRIDGE_BRIDGE__USER_BURST": "30", "STRANGER_BRIDGE_BRIDGE__SEARCH_TIMEOUT": "12.5"}
    done = cli(["check-config", "-c", "ok.toml"], tmp_path, env)
    assert (done.returncode, done.stdout.strip()) == (0, "OK"), done.stderr
