"""A real crash: the daemon (`python -m bridge run`) is SIGKILLed mid-chat and started again on the same state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from .fakediscord import FakeDiscord
from .util import notices, open_chat, stranger_lines, wait_line, wait_notice

REPO = Path(__file__).resolve().parents[2]
RESTARTED = "The bridge restarted and could not resume this chat; it has ended."
# Every notice that says a chat ended; after the crash each thread must show exactly one of them.
ENDINGS = ("restarted", "disconnected", "ended")


def write_config(tmp: Path, server: FakeDiscord, keep_open: bool) -> Path:
    path = tmp / "bridge.toml"
    path.write_text(
        f"""
[bridge]
state = "{tmp / 'state.sqlite3'}"
log_level = "INFO"

[platforms.dc]
plugin = "discord"
token = "test-bot-token"
api_base = "{server.api_base}"
gateway_url = "{server.gateway_url}"
guild_ready_timeout = 0.05
start_cooldown = 0
keep_open = {str(keep_open).lower()}

[backends.hub]
plugin = "hub"
repair_cooldown = 0
interest_fallback = 0
resume_window = 0  # never take a hub chat up again: the test is about chats a crash ends
"""
    )
    return path


async def daemon(cfg: Path, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGER_BRIDGE_")}
    env["PYTHONPATH"] = str(REPO)
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", "-c", str(cfg),
            cwd=cfg.parent, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )


def chatting_sessions(db: Path) -> int:
    """Sessions the daemon has durably stored as chatting (what a SIGKILL leaves behind)."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            return conn.execute("SELECT count(*) FROM sessions WHERE state = 'chatting'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


async def wait_for(test, timeout: float = 10.0):
    async with asyncio.timeout(timeout):
        while not (result := test()):
            await asyncio.sleep(0.05)
        return result


def endings(server: FakeDiscord, tid: int) -> list[str]:
    return [n for n in notices(server, tid) if any(word in n for word in ENDINGS)]


@pytest.mark.parametrize("keep_open", [False, True])
async def test_sigkill_mid_chat_then_restart(server, tmp_path, keep_open):
    cfg = write_config(tmp_path, server, keep_open)
    log = tmp_path / "daemon.log"
    first = await daemon(cfg, log)
    second = None
    try:
        await server.wait_until(lambda: server.identifies == 1, timeout=30)
        alice, bob = server.add_user("alice"), server.add_user("bob")
        ta, start_a = await open_chat(server, alice)
        tb, _ = await open_chat(server, bob, cid=server.text_channels[1])
        await wait_notice(server, ta, "You're now chatting")
        await wait_notice(server, tb, "You're now chatting")
        await server.user_message(ta, alice, "before the crash a")
        await wait_line(server, tb, "before the crash a")
        await server.user_message(tb, bob, "before the crash b")
        await wait_line(server, ta, "before the crash b")
        await wait_for(lambda: chatting_sessions(tmp_path / "state.sqlite3") == 2)

        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        assert endings(server, ta) == endings(server, tb) == []  # a crash says nothing by itself
        threads_before = {t["id"] for t in server.threads()}
        requests_before = len(server.requests)

        second = await daemon(cfg, log)
        await server.wait_until(lambda: server.identifies == 2, timeout=30)
        # each side is told once, in its own thread: the chat could not survive the crash
        await wait_notice(server, ta, "restarted")
        await wait_notice(server, tb, "restarted")
        await server.replay(start_a)  # the gateway delivers alice's old /stranger start again: ignored
        # a fresh start by a third user works and is answered within a few seconds
        carol = server.add_user("carol")
        tc, _ = await open_chat(server, carol)
        await wait_notice(server, tc, "Looking for someone", count=1)
        if keep_open:  # the threads stay open: a start inside one is the next chat, in the same thread
            await server.slash(alice, ta, "start")
            await wait_notice(server, ta, "You're now chatting", count=2)
            await wait_notice(server, tc, "You're now chatting")
            tnew = ta
        else:
            for tid in (ta, tb):
                await server.wait_until(lambda tid=tid: server.channels[tid]["thread_metadata"]["locked"])
                assert server.channels[tid]["thread_metadata"]["archived"]
            tnew, _ = await open_chat(server, alice)
            await wait_notice(server, tc, "You're now chatting")
            await wait_notice(server, tnew, "You're now chatting")
        await server.user_message(tnew, alice, "after the restart")
        await wait_line(server, tc, "after the restart")

        for tid in (ta, tb):
            assert endings(server, tid) == [RESTARTED], notices(server, tid)
        assert len([c for c in server.replies(start_a) if c.get("kind") == "callback"]) == 1
        restart_writes = server.requests[requests_before:]
        # no thread was opened for the sessions that were running: only the ones a new start asked for
        made = [t["id"] for t in server.threads() if t["id"] not in threads_before]
        assert made == ([str(tc)] if keep_open else [str(tc), str(tnew)])
        assert len([r for r in restart_writes if r.method == "POST" and r.path.endswith("/threads")]) == len(made)
        # the stranger lines from before the crash were shown once, and the old threads got nothing after
        assert [c for _, c in stranger_lines(server, tb) if "crash" in c] == ["before the crash a"]
        assert [c for _, c in stranger_lines(server, ta) if "crash" in c] == ["before the crash b"]
        if not keep_open:
            patches = [r for r in restart_writes if r.method == "PATCH" and r.path in (f"/channels/{ta}", f"/channels/{tb}")]
            assert len(patches) == 2 and all(r.body == {"archived": True, "locked": True} for r in patches)
        else:
            assert not any(server.channels[t]["thread_metadata"]["locked"] for t in (ta, tb))
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(15):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    if second is not None:
        assert second.returncode == 0, log.read_text()[-3000:]
