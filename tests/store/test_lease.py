"""Instance names as leases in a real redis-server: one live holder per name, takeover after a crash, the watcher."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge.store import StoreError, open_store, parse_store_url

ROOT = Path(__file__).resolve().parents[2]
# Seconds. Short, so a test waits little for an expiry (each wait is on a condition), yet long enough
# that a holder process starved for a while on a loaded machine still renews in time.
LEASE = 2.0


async def open_redis(url: str, instance: str, **kw):
    return await open_store(parse_store_url(url), prefix="sbtest:", instance=instance, lease=LEASE, environ={}, **kw)


async def start_holder(url: str, name: str, *rooms: str) -> subprocess.Popen:
    """The holder process, once it has its lease (read off the loop, so this process's heartbeat runs on)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.store.leaseholder", url, name, str(LEASE), *rooms],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    line = await asyncio.to_thread(proc.stdout.readline)
    assert line.strip() == "ready", proc.stderr.read()
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


async def test_a_second_live_instance_with_the_same_name_is_refused(redis_server):
    holder = await start_holder(redis_server.url, "web-1")
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"bridge\.instance: another live instance named 'web-1' \(host .*, pid \d+\) holds its lease"):
            await open_redis(redis_server.url, "web-1")
        # It waited for the lease to expire (a dead holder's would have) before refusing.
        assert time.monotonic() - started >= LEASE
        other = await open_redis(redis_server.url, "web-2")  # another name is fine meanwhile
        await other.close()
        assert holder.poll() is None
    finally:
        kill(holder)


async def test_killed_instance_restarted_under_its_name_takes_its_sessions_back(redis_server):
    holder = await start_holder(redis_server.url, "web-1", "r1", "r2")
    kill(holder)  # SIGKILL: no release, the lease runs out by itself
    again = await open_redis(redis_server.url, "web-1")  # waits for the dead holder's lease to expire
    try:
        records = await again.sessions()
        assert sorted((r.room.id, r.handle, r.owner) for r in records) == [("r1", "handle-r1", "web-1"), ("r2", "handle-r2", "web-1")]
        assert (await again.instances())["web-1"] is True
    finally:
        await again.close()


async def test_an_expired_lease_is_noticed_once_by_the_others(redis_server):
    down: list[tuple[str, int]] = []
    noticed = asyncio.Event()

    async def on_down(name: str, sessions: int) -> None:
        down.append((name, sessions))
        noticed.set()

    watcher = await open_redis(redis_server.url, "watcher", on_instance_down=on_down)
    holder = await start_holder(redis_server.url, "web-1", "r1", "r2", "r3")
    idle = await start_holder(redis_server.url, "web-2")
    try:
        assert await watcher.instances() == {"watcher": True, "web-1": True, "web-2": True}
        assert await watcher.lease.watch_once(on_down) == []  # nobody is down yet
        kill(holder)
        async with asyncio.timeout(10 * LEASE):
            await noticed.wait()
        assert down == [("web-1", 3)]
        # Later looks do not report it again while it stays down (the positive marker: a full look ran).
        assert await watcher.lease.watch_once(on_down) == []
        assert down == [("web-1", 3)]
        assert (await watcher.instances())["web-1"] is False  # kept: its sessions wait for it
        # An instance that died owning nothing is reported, then dropped from the list.
        kill(idle)
        async with asyncio.timeout(10 * LEASE):
            while ("web-2", 0) not in down:
                await asyncio.sleep(LEASE / 3)
        assert "web-2" not in await watcher.instances()
        # web-1 comes back under its name: live again, and its next death is reported again.
        back = await start_holder(redis_server.url, "web-1")
        try:
            assert (await watcher.instances())["web-1"] is True
            assert await watcher.lease.watch_once(on_down) == []
        finally:
            kill(back)
        noticed.clear()
        async with asyncio.timeout(10 * LEASE):
            await noticed.wait()
        assert down == [("web-1", 3), ("web-2", 0), ("web-1", 3)]
    finally:
        for proc in (holder, idle):
            if proc.poll() is None:
                kill(proc)
        await watcher.close()
