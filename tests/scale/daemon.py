"""`python -m bridge run` processes (web platform, hub) sharing one redis-server: started, killed, restarted."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

from tests.redisproc import free_port
from tests.web.client import RawClient

__all__ = ["Daemon", "PREFIX", "STARTED", "kill_leftovers", "pair_web", "toml_table"]

# Every daemon process a test started: the scale conftest kills what is still running after each test.
STARTED: list[asyncio.subprocess.Process] = []


async def kill_leftovers() -> None:
    """SIGKILL every daemon a test left running (a failed wait skips its stop)."""
    while STARTED:
        proc = STARTED.pop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "sbtest:"


class Daemon:
    """One instance named `name`; its log kept in `log`; its web page at `url` once started."""

    def __init__(
        self, tmp_path: Path, redis_url: str | None, name: str, *, lease: float = 1.5, hub: str = "", web: str = "", extra: str = "",
    ) -> None:
        """`hub`: more lines of [backends.hub]; `web`: more lines of [platforms.web]; `extra`: more
        tables (another platform) at the end."""
        self.name = name
        self.config = tmp_path / f"{name}.toml"
        self.inbox, self.outbox = tmp_path / f"{name}-in.jsonl", tmp_path / f"{name}-out.jsonl"
        self.health = f"http://127.0.0.1:{free_port()}"  # the daemon's /healthz and /metrics
        store = f'store = "{redis_url}"' if redis_url else f'store = "sqlite:///{tmp_path / (name + ".sqlite3")}"'
        self.config.write_text(f"""
[bridge]
{store}
store_prefix = "{PREFIX}"
instance = "{name}"
instance_lease = {lease}
log_level = "INFO"
shutdown_timeout = 5
metrics_bind = "{self.health.removeprefix('http://')}"
user_rate = 1000.0
user_burst = 1000
stranger_rate = 1000.0
stranger_burst = 1000
[platforms.web]
plugin = "web"
bind = "127.0.0.1:0"
address_keys = false
{"" if "poll_window" in web else "poll_window = 2.0"}
{web}
[platforms.f{name}]
plugin = "tests.core.fileplatform:FilePlatform"
inbox = "{self.inbox}"
outbox = "{self.outbox}"
rooms_persist = true
[backends.hub]
plugin = "hub"
repair_cooldown = 0.0
{hub}
{extra}
""")
        self.log: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.code: int | None = None

    async def start(self, *, wait_listening: bool = True) -> Daemon:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log = []
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", "-c", str(self.config), cwd=ROOT, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        STARTED.append(self.proc)
        self.listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read_log())
        if wait_listening:
            # A daemon that exits at start (exit 2: a refused store or name) fails the wait at once, with its log.
            exited = asyncio.ensure_future(self.proc.wait())
            done, _ = await asyncio.wait({self.listening, exited}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            if not self.listening.done():
                exited.cancel()
                raise AssertionError(f"{self.name} did not start ({'exit ' + str(self.proc.returncode) if done else 'no answer in 60 s'}): "
                                     f"{''.join(self.log)[-3000:]}")
            exited.cancel()
            port = self.listening.result()
            self.url = f"http://127.0.0.1:{port}"
            await self.wait_log("stranger-bridge running")
        return self

    async def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.log.append(line)
            found = re.search(r"web: listening on http://127\.0\.0\.1:(\d+)", line)
            if found and not self.listening.done():
                self.listening.set_result(int(found.group(1)))

    async def wait_log(self, text: str, timeout: float = 60) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.log:
                    if text in line:
                        return line
                if self.proc is not None and self.proc.returncode is not None:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}: {''.join(self.log)[-3000:]}")
                await asyncio.sleep(0.05)

    async def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait_for(self.reader, 10)
        return self.code

    async def stop(self) -> int | None:
        """SIGTERM and wait (a clean stop); nothing when it is not running. One that does not stop
        in time is killed, so no daemon outlives its test: a leftover one would take the next test's
        Redis (on a reused port) and its instance name, and that test's daemons would not start."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await self.wait(30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"{self.name} did not stop within 30 s of SIGTERM: {''.join(self.log)[-3000:]}") from None

    def user(self, room: str, kind: str, **fields: object) -> None:
        """Act as the user of this instance's file-platform room `room`."""
        with self.inbox.open("a") as out:
            out.write(json.dumps({"room": room, "type": kind, **fields}) + "\n")

    def shown(self, room: str) -> list[dict]:
        """Every event shown in `room` so far, in order (across this instance's runs)."""
        if not self.outbox.exists():
            return []
        lines = [json.loads(line) for line in self.outbox.read_text().splitlines() if line.strip()]
        return [e for e in lines if e["room"] == room]

    async def until(self, room: str, test, timeout: float = 30) -> list[dict]:
        """Wait until `test(events shown in room)` holds; returns those events."""
        async with asyncio.timeout(timeout):
            while not test(events := self.shown(room)):
                if self.proc is not None and self.proc.returncode is not None:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}: {''.join(self.log)[-3000:]}")
                await asyncio.sleep(0.05)
        return events

    async def kill(self) -> None:
        """SIGKILL: the instance dies without a word (its lease and pool entries stay until they expire)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.wait()


def toml_table(name: str, table: dict) -> str:
    """A flat TOML table (strings, numbers, booleans, lists of them) for Daemon(extra=...)."""
    return f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


async def pair_web(http, a: Daemon, b: Daemon) -> tuple[RawClient, RawClient]:
    """A web client on `a` waits, one on `b` arrives: both connected, to each other."""
    x, y = RawClient(http, a.url), RawClient(http, b.url)
    await x.start()
    await x.until("waiting")
    await y.start()
    await x.until("connected")
    await y.until("connected")
    return x, y
