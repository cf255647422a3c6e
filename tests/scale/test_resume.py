"""Hub chats survive a restart within resume_window, on SQLite and on Redis: daemon processes, rooms that persist."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
from pathlib import Path

from .daemon import Daemon


def stored(db: Path) -> tuple[int, int]:
    """(sessions stored as chatting, the file platform's saved inbox offset) in a daemon's SQLite file."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        chatting = conn.execute("SELECT count(*) FROM sessions WHERE state = 'chatting'").fetchone()[0]
        row = conn.execute("SELECT value FROM kv WHERE key = 'offset'").fetchone()
    return chatting, int(row[0]) if row else 0


async def settled(d: Daemon, chatting: int) -> None:
    """Wait until what a SIGKILL would leave is on disk: the chats and the platform's read position."""
    async with asyncio.timeout(30):
        while stored(d.config.with_suffix(".sqlite3")) != (chatting, len(d.inbox.read_text())):
            await asyncio.sleep(0.05)


def texts(events: list[dict]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "Message"]


def ends(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "Disconnected"]


async def chat_both_ways(x: Daemon, rx: str, y: Daemon, ry: str, n: int, label: str) -> None:
    """n unique tokens each way; each side shows exactly the other's, in order."""
    sent = {rx: [f"{label}-{rx}-{secrets.token_hex(4)}-{i}" for i in range(n)], ry: [f"{label}-{ry}-{secrets.token_hex(4)}-{i}" for i in range(n)]}
    before = {rx: len(texts(x.shown(rx))), ry: len(texts(y.shown(ry)))}
    for token in sent[rx]:
        x.user(rx, "Message", text=token)
    for token in sent[ry]:
        y.user(ry, "Message", text=token)
    got_y = await y.until(ry, lambda ev: len(texts(ev)) >= before[ry] + n)
    got_x = await x.until(rx, lambda ev: len(texts(ev)) >= before[rx] + n)
    assert texts(got_y)[before[ry]:] == sent[rx]
    assert texts(got_x)[before[rx]:] == sent[ry]


async def test_sqlite_daemon_stopped_or_killed_and_restarted_keeps_its_hub_chat(tmp_path):
    d = Daemon(tmp_path, None, "solo", hub="resume_window = 60")
    await d.start()
    try:
        d.user("a", "Start")
        d.user("b", "Start")
        for room in "ab":
            await d.until(room, lambda ev: any(e["type"] == "Connected" for e in ev))
        await chat_both_ways(d, "a", d, "b", 20, "first")
        assert await d.stop() == 0  # a clean stop (an upgrade): nobody is told the chat ended
        assert ends(d.shown("a")) == ends(d.shown("b")) == []
        d.user("a", "Message", text="sent while it was down")  # handed in once the platform runs again
        await d.start()
        got = await d.until("b", lambda ev: "sent while it was down" in texts(ev))
        await chat_both_ways(d, "a", d, "b", 20, "after-stop")
        await settled(d, 2)
        await d.kill()  # a crash, then a restart within the window
        await d.start()
        await chat_both_ways(d, "a", d, "b", 20, "after-kill")
        assert ends(d.shown("a")) == ends(d.shown("b")) == []
        assert texts(got).count("sent while it was down") == 1
        d.user("a", "Disconnected")  # and the chat still ends as ever: one notice on each side
        await d.until("b", lambda ev: len(ends(ev)) == 1)
        assert [e["reason"] for e in ends(d.shown("b"))] == ["stranger"]
    finally:
        await d.stop()


async def test_restart_after_the_window_ends_the_chat_with_one_notice_per_side(tmp_path):
    d = Daemon(tmp_path, None, "solo", hub="resume_window = 0.5")
    await d.start()
    try:
        d.user("a", "Start")
        d.user("b", "Start")
        for room in "ab":
            await d.until(room, lambda ev: any(e["type"] == "Connected" for e in ev))
        await settled(d, 2)
        await d.kill()
        await asyncio.sleep(1.0)  # the window runs out while it is down (a precondition, not a check)
        await d.start()
        for room in "ab":
            shown = await d.until(room, lambda ev: len(ends(ev)) >= 1)
            assert [e["reason"] for e in ends(shown)] == ["restart"]
    finally:
        await d.stop()


async def test_redis_instance_restarted_takes_its_chat_back_and_gets_what_was_sent_meanwhile(tmp_path, redis_server):
    a = Daemon(tmp_path, redis_server.url, "a", hub="resume_window = 60")
    b = Daemon(tmp_path, redis_server.url, "b", hub="resume_window = 60")
    await asyncio.gather(a.start(), b.start())
    try:
        a.user("x", "Start")
        await a.until("x", lambda ev: any(e["type"] == "Waiting" for e in ev))
        b.user("y", "Start")
        await a.until("x", lambda ev: any(e["type"] == "Connected" for e in ev))
        await b.until("y", lambda ev: any(e["type"] == "Connected" for e in ev))
        await chat_both_ways(a, "x", b, "y", 30, "before")
        assert await a.stop() == 0
        gap = [f"gap-{secrets.token_hex(4)}-{i}" for i in range(30)]
        for token in gap:  # into a's stream while a is away
            b.user("y", "Message", text=token)
        await asyncio.sleep(0)
        await a.start()  # under the same name: its chat and what was sent meanwhile come back
        got = await a.until("x", lambda ev: all(t in texts(ev) for t in gap))
        assert [t for t in texts(got) if t.startswith("gap-")] == gap  # in order, none twice
        await chat_both_ways(a, "x", b, "y", 30, "after")
        assert ends(a.shown("x")) == ends(b.shown("y")) == []
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_web_client_does_not_outlive_a_crash_so_its_partner_is_told_once(tmp_path):
    d = Daemon(tmp_path, None, "solo", hub="resume_window = 60")
    await d.start()
    try:
        import aiohttp

        from tests.web.client import RawClient

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            d.user("a", "Start")
            await d.until("a", lambda ev: any(e["type"] == "Waiting" for e in ev))
            web = RawClient(http, d.url)
            await web.start()
            await web.until("connected")
            await d.until("a", lambda ev: any(e["type"] == "Connected" for e in ev))
            await settled(d, 2)
        await d.kill()
        await d.start()  # the file room is resumed; the web client's chat is not (its id died with the process)
        shown = await d.until("a", lambda ev: len(ends(ev)) >= 1)
        assert [e["reason"] for e in ends(shown)] == ["stranger"]
        d.user("a", "Start")  # and the room starts afresh
        await d.until("a", lambda ev: sum(e["type"] == "Waiting" for e in ev) == 2)
        assert len(ends(d.shown("a"))) == 1
    finally:
        await d.stop()


async def test_redis_instance_killed_and_restarted_at_once_takes_its_chat_back(tmp_path, redis_server):
    # lease 6 s: the restarted process is waiting for its old lease well before it runs out
    a = Daemon(tmp_path, redis_server.url, "a", lease=6.0, hub="resume_window = 60")
    b = Daemon(tmp_path, redis_server.url, "b", lease=6.0, hub="resume_window = 60")
    await asyncio.gather(a.start(), b.start())
    try:
        a.user("x", "Start")
        await a.until("x", lambda ev: any(e["type"] == "Waiting" for e in ev))
        b.user("y", "Start")
        await a.until("x", lambda ev: any(e["type"] == "Connected" for e in ev))
        await b.until("y", lambda ev: any(e["type"] == "Connected" for e in ev))
        await chat_both_ways(a, "x", b, "y", 10, "before")
        await a.kill()
        gap = [f"gap-{secrets.token_hex(4)}-{i}" for i in range(10)]
        for token in gap:
            b.user("y", "Message", text=token)
        await a.start()  # waits out its old lease, having told the others it is coming back
        got = await a.until("x", lambda ev: all(t in texts(ev) for t in gap))
        assert [t for t in texts(got) if t.startswith("gap-")] == gap
        await chat_both_ways(a, "x", b, "y", 10, "after")
        assert ends(a.shown("x")) == ends(b.shown("y")) == []
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_chat_stored_by_a_version_with_object_handles_is_taken_up_after_an_upgrade(tmp_path):
    # Hub handles were JSON objects before they became compact lists: a record written then resumes.
    d = Daemon(tmp_path, None, "solo", hub="resume_window = 60")
    await d.start()
    try:
        d.user("a", "Start")
        d.user("b", "Start")
        for room in "ab":
            await d.until(room, lambda ev: any(e["type"] == "Connected" for e in ev))
        await chat_both_ways(d, "a", d, "b", 5, "before")
        assert await d.stop() == 0
        db = d.config.with_suffix(".sqlite3")
        with contextlib.closing(sqlite3.connect(db)) as conn:
            rows = conn.execute("SELECT room, handle FROM sessions WHERE state = 'chatting'").fetchall()
            assert len(rows) == 2
            for room, handle in rows:
                cid, kind, users, me = json.loads(handle)  # the compact form, pairings left out (they are the users)
                old = json.dumps({"cid": cid, "kind": kind, "me": me, "users": users, "pairings": users})
                conn.execute("UPDATE sessions SET handle = ? WHERE room = ?", (old, room))
            conn.commit()
        await d.start()
        await chat_both_ways(d, "a", d, "b", 5, "after-upgrade")
        assert ends(d.shown("a")) == ends(d.shown("b")) == []
    finally:
        await d.stop()
