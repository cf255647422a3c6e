"""The command line with a store URL: check-config names bridge.store, bad Redis settings exit 2, a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

from tests.redisproc import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-7f3a9c"


def write_config(tmp_path: Path, name: str = "c.toml", **bridge: object) -> Path:
    lines = ["[bridge]"] + [f"{key} = {value!r}".replace("'", '"') for key, value in bridge.items()]
    lines += ["[platforms.rec]", 'plugin = "tests.helpers:RecordingPlatform"']
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "STRANGER_BRIDGE_REDIS_PASSWORD"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def test_check_config_validates_the_store_url(tmp_path):
    bad = {
        "http://127.0.0.1:6379/0": "must start with sqlite:///, redis:// or rediss://",
        f"redis://:{PASSWORD}@127.0.0.1:99999/0": "the port must be a number from 1 to 65535",
        "redis://127.0.0.1:6379/zero": "the database must be a number",
        "redis://:6379/0": "needs a host",
        "sqlite://relative.db": "a SQLite store is sqlite:///relative/path",
    }
    for url, message in bad.items():
        res = cli("check-config", "-c", str(write_config(tmp_path, store=url)))
        assert res.returncode == 2, (url, res.stdout, res.stderr)
        assert f"config error: bridge.store: {message}" in res.stderr
        assert PASSWORD not in res.stderr + res.stdout
    for url in ("redis://127.0.0.1:6379/3", "rediss://cache.internal:6380/0", "sqlite:///state/x.sqlite3", "sqlite:////var/lib/x.sqlite3"):
        res = cli("check-config", "-c", str(write_config(tmp_path, store=url)))
        assert (res.returncode, res.stdout.strip()) == (0, "OK"), (url, res.stderr)
    res = cli("check-config", "-c", str(write_config(tmp_path, instance="two words", store_prefix="has space")))
    assert res.returncode == 2
    assert "config error: bridge.instance: must be 1 to 64 letters" in res.stderr
    assert "config error: bridge.store_prefix: must be 1 to 64 printable characters" in res.stderr


def test_a_password_in_the_store_url_is_not_in_the_config_repr():
    from bridge.config import parse_config

    bridge = parse_config({"bridge": {"store": f"redis://:{PASSWORD}@127.0.0.1:6379/0"}}, env=False).bridge
    assert PASSWORD not in repr(bridge) and PASSWORD not in str(bridge) and PASSWORD not in str(bridge.store_url)
    assert bridge.store_url.password == PASSWORD


def test_wrong_password_or_unreachable_redis_at_start_exit_2_naming_the_key(tmp_path):
    server = RedisServer(tmp_path / "r", password=PASSWORD).start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        res = cli("run", "-c", str(write_config(tmp_path, store=url)))
        assert res.returncode == 2, res.stderr
        assert "bridge.store: Redis at redis://127.0.0.1" in res.stderr and "requires a password" in res.stderr
        res = cli("run", "-c", str(write_config(tmp_path, store=url)), env={"STRANGER_BRIDGE_REDIS_PASSWORD": "not-it-9"})
        assert res.returncode == 2 and "refused the password" in res.stderr
        assert "not-it-9" not in res.stderr
        wrong_in_url = f"redis://:not-it-9@127.0.0.1:{server.port}/0"
        res = cli("run", "-c", str(write_config(tmp_path, store=wrong_in_url)))
        assert res.returncode == 2 and "refused the password" in res.stderr and "not-it-9" not in res.stderr
    finally:
        server.stop()
    res = cli("run", "-c", str(write_config(tmp_path, store=f"redis://127.0.0.1:{free_port()}/0")))
    assert res.returncode == 2 and "bridge.store: cannot reach Redis at redis://127.0.0.1" in res.stderr


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.read() == b"healthy":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the daemon never became healthy")


def test_daemon_on_redis_runs_holds_its_name_and_a_second_with_that_name_exits_2(tmp_path):
    server = RedisServer(tmp_path / "r", password=PASSWORD).start()
    raw = redis.Redis(port=server.port, password=PASSWORD, decode_responses=True)
    port = free_port()
    cfg = write_config(
        tmp_path, store=f"redis://127.0.0.1:{server.port}/0", store_prefix="sbtest:", instance="web-1",
        instance_lease=2.0, metrics_bind=f"127.0.0.1:{port}",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STRANGER_BRIDGE_REDIS_PASSWORD": PASSWORD}
    daemon = subprocess.Popen([sys.executable, "-m", "bridge", "run", "-c", str(cfg)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, daemon)
        assert raw.exists("sbtest:instance:web-1") == 1 and raw.sismember("sbtest:instances", "web-1")
        assert raw.hget("sbtest:kv:core", "last_run") is not None  # plugin/core state went to Redis
        second_cfg = write_config(
            tmp_path, "second.toml", store=f"redis://127.0.0.1:{server.port}/0", store_prefix="sbtest:", instance="web-1",
            instance_lease=2.0,
        )
        res = cli("run", "-c", str(second_cfg), env={"STRANGER_BRIDGE_REDIS_PASSWORD": PASSWORD})
        assert res.returncode == 2, res.stderr
        assert "bridge.instance: another live instance named 'web-1'" in res.stderr
        assert daemon.poll() is None  # the first one runs on
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
    try:
        assert daemon.returncode == 0, err
        assert PASSWORD not in err
        assert raw.exists("sbtest:instance:web-1") == 0  # a clean stop gives the name up at once
    finally:
        raw.close()
        server.stop()



def test_status_of_a_stopped_instance_on_redis_says_where_its_state_is(tmp_path):
    res = cli("status", "-c", str(write_config(tmp_path, store=f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/2")))
    assert res.returncode == 4, res.stderr  # unknown: no metrics_bind to ask, and Redis is not read from here
    assert "the store is Redis at redis://127.0.0.1:" in res.stdout and "sessions: not read (the store is Redis)" in res.stdout
    assert PASSWORD not in res.stdout + res.stderr
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/2"
    res = cli("status", "-c", str(write_config(tmp_path, store=url, metrics_bind=f"127.0.0.1:{free_port()}")))
    assert res.returncode == 3, res.stderr  # not running: nothing listens on metrics_bind
    assert "nothing listens on 127.0.0.1:" in res.stdout and "the store is Redis at redis://127.0.0.1:" in res.stdout
    assert PASSWORD not in res.stdout + res.stderr


def test_mod_works_on_the_configured_sqlite_store_and_says_so_for_redis(tmp_path):
    import asyncio

    from bridge.store import SQLiteStore

    db = tmp_path / "elsewhere" / "named.sqlite3"
    asyncio.run(SQLiteStore(db).close())  # a stopped daemon's file
    cfg = write_config(tmp_path, store=f"sqlite:///{db}")
    res = cli("mod", "ban", "discord:123", "--reason", "spam", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    key = res.stdout.split()[1]  # the hashed key, as `mod` shows it
    assert res.stdout.startswith("banned discord:") and res.stdout.rstrip().endswith(": spam")
    assert not (tmp_path / "stranger-bridge.sqlite3").exists()  # the store URL's file, not `state`
    listing = cli("mod", "list", "-c", str(cfg))
    assert listing.returncode == 0 and listing.stdout.startswith(f"{key}  banned"), listing.stdout


def test_mod_works_on_redis_beside_a_running_instance_without_touching_its_lease(tmp_path):
    import asyncio

    from bridge.policy.config import PolicySection
    from bridge.policy.sanctions import Sanctions
    from bridge.store import open_store, parse_store_url

    server = RedisServer(tmp_path / "r", password=PASSWORD).start()
    raw = redis.Redis(port=server.port, password=PASSWORD, decode_responses=True)
    store_url = f"redis://127.0.0.1:{server.port}/0"
    cfg = write_config(tmp_path, store=store_url, store_prefix="sbmod:", instance="mod-1", instance_lease=2.0)
    env = {"STRANGER_BRIDGE_REDIS_PASSWORD": PASSWORD}
    try:
        # Nothing of stranger-bridge under the prefix yet: refused, and nothing written.
        res = cli("mod", "list", "-c", str(cfg), env=env)
        assert res.returncode == 2 and "holds no stranger-bridge state under the prefix 'sbmod:'" in res.stderr, res.stderr
        assert raw.keys("sbmod:*") == []
        res = cli("mod", "list", "-c", str(cfg), env={"STRANGER_BRIDGE_REDIS_PASSWORD": "not-it-9"})
        assert res.returncode == 2 and "refused the password" in res.stderr and "not-it-9" not in res.stderr

        async def scenario() -> None:
            url = parse_store_url(store_url).with_password_from({"STRANGER_BRIDGE_REDIS_PASSWORD": PASSWORD})
            daemon = await open_store(url, prefix="sbmod:", instance="mod-1", lease=2.0)  # a running instance's store
            try:
                holder = raw.get("sbmod:instance:mod-1")
                assert holder
                run = lambda *argv: asyncio.to_thread(cli, "mod", *argv, "-c", str(cfg), env=env)  # noqa: E731
                res = await run("ban", "discord:123", "--for", "1h", "--reason", "spam")
                assert res.returncode == 0 and res.stdout.startswith("banned discord:"), res.stderr
                key = res.stdout.split()[1]
                res = await run("ban", "matrix:*:spam.example")
                assert res.returncode == 0, res.stderr
                sanctions = Sanctions.from_config(daemon, PolicySection())
                ban = await sanctions.check(key)
                assert ban is not None and ban.reason == "spam"  # the instance sees the CLI's ban
                listing = await run("list")
                assert listing.returncode == 0 and listing.stdout.splitlines()[0].startswith(key), listing.stdout
                assert "matrix:*:spam.example  banned until unbanned" in listing.stdout
                assert (await run("unban", "discord:123")).returncode == 0
                assert await sanctions.check(key) is None
                log = await run("log")
                assert [line.split("  ")[1] for line in log.stdout.splitlines()] == ["unban", "ban", "ban"], log.stdout
                # The tool took no lease and gave none up: the instance's name and membership are as before.
                assert raw.get("sbmod:instance:mod-1") == holder and raw.smembers("sbmod:instances") == {"mod-1"}
                assert daemon.problem() is None
            finally:
                await daemon.close()

        asyncio.run(scenario())
    finally:
        raw.close()
        server.stop()
