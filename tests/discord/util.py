"""Helpers for Discord tests: act as a user and wait for what the bridge shows."""

from __future__ import annotations

import asyncio

from .fakediscord import FakeDiscord


async def open_chat(server: FakeDiscord, uid: int, cid: int | None = None, **options: str) -> tuple[int, dict]:
    """Run /stranger start as `uid` in a text channel; return the new thread id and the interaction."""
    cid = cid or server.text_channels[0]
    known = {t["id"] for t in server.threads()}
    payload = await server.slash(uid, cid, "start", **options)
    found = await server.wait_until(
        lambda: [t for t in server.threads() if t["id"] not in known and uid in t["members"]]
    )
    return int(found[0]["id"]), payload


def notices(server: FakeDiscord, tid: int) -> list[str]:
    """Embed texts the bot posted in a thread, oldest first."""
    return [e["description"] for m in server.bot_messages(tid) for e in m.get("embeds", [])]


def stranger_lines(server: FakeDiscord, tid: int) -> list[tuple[str, str]]:
    """(author name, content) of every message with content the bridge posted in a thread."""
    return [(m["author"]["username"], m["content"]) for m in server.bot_messages(tid) if m["content"]]


async def wait_notice(server: FakeDiscord, tid: int, fragment: str, count: int = 1) -> list[str]:
    return await server.wait_until(
        lambda: (found := [n for n in notices(server, tid) if fragment in n]) and len(found) >= count and found
    )


async def wait_line(server: FakeDiscord, tid: int, fragment: str) -> tuple[str, str]:
    found = await server.wait_until(lambda: [line for line in stranger_lines(server, tid) if fragment in line[1]])
    return found[0]


async def paired_with_rec(server: FakeDiscord, b, room: str = "w", name: str = "alice") -> tuple[int, int]:
    """A Discord user in a thread chatting with the recording room `room` (the stranger)."""
    from bridge.events import Connected, Start

    rec = b.platforms["rec"]
    uid = server.add_user(name)
    tid, _ = await open_chat(server, uid)
    await wait_notice(server, tid, "Looking for someone")
    rec.send(room, Start())
    await rec.wait_for(room, Connected)
    await wait_notice(server, tid, "You're now chatting")
    return uid, tid


async def until(test, timeout: float = 10.0):
    """Wait until `test()` is truthy for state outside the fake server (metrics, the platform's maps)."""
    async with asyncio.timeout(timeout):
        while not (result := test()):
            await asyncio.sleep(0.01)
    return result


def typing_over(platform, tid: int) -> bool:
    """No typing indicator is kept up in the thread: nobody types and no refresh is scheduled."""
    box = platform.outboxes.find(tid)
    return box is None or not box.typing.active
