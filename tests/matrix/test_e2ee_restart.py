"""Encryption across a SIGKILL and a clean restart of the daemon (`python -m bridge run`): the key store keeps the chats readable both ways."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.discord.test_crash import daemon  # the daemon as a process, with this checkout on its path

from .conftest import notice_with
from .e2ee import crypto_user, raw_events
from .test_e2ee import bot_events_all_encrypted


def write_config(tmp: Path, url: str, bot: dict) -> Path:
    path = tmp / "bridge.toml"
    path.write_text(
        f"""
[bridge]
state = "{tmp / 'state.sqlite3'}"
log_level = "INFO"

[platforms.mx]
plugin = "matrix"
homeserver = "{url}"
user_id = "{bot['user_id']}"
password = "pw"
store_path = "{tmp / 'login.json'}"
crypto_store = "{tmp / 'keys'}"
allowed_inviters = [":localhost"]
sync_timeout = 1.0
request_timeout = 10.0

[backends.hub]
plugin = "hub"
repair_cooldown = 0
interest_fallback = 0
"""
    )
    return path


def count(user, rid: str, me: str, text: str) -> int:
    return len([e for e in user.messages(rid, me) if text in e["content"].get("body", "")])


async def pair(alice, ra, bob, rb, me: str, n: int) -> None:
    """Both start; the hub pairs them (the n-th chat of each room)."""
    await alice.send(ra, "!stranger start")
    await alice.wait_for(lambda: count(alice, ra, me, "Looking for someone") >= n)
    await bob.send(rb, "!stranger start")
    await alice.wait_for(lambda: count(alice, ra, me, "You're now chatting") >= n, 30)
    await bob.wait_for(lambda: count(bob, rb, me, "You're now chatting") >= n, 30)


async def exchange(alice, ra, bob, rb, me: str, tag: str) -> None:
    await alice.send(ra, f"a-{tag}")
    await bob.wait_message(rb, me, lambda c: c.get("body") == f"Stranger: a-{tag}", 30)
    await bob.send(rb, f"b-{tag}")
    await alice.wait_message(ra, me, lambda c: c.get("body") == f"Stranger: b-{tag}", 30)


def stranger_lines(user, rid: str, me: str) -> list[str]:
    return [e["content"]["body"] for e in user.messages(rid, me) if e["content"].get("msgtype") == "m.text"]


async def test_sigkill_and_restart_keep_encrypted_rooms_readable(matrix, synapse, tmp_path):
    bot = await matrix.account("crashbot")
    me = bot["user_id"]
    alice = await crypto_user(matrix, "alice")
    bob = await crypto_user(matrix, "bob")
    cfg = write_config(tmp_path, synapse.url, bot)
    log = tmp_path / "daemon.log"
    procs = [await daemon(cfg, log)]
    try:
        ra = await alice.create_room([me])
        rb = await bob.create_room([me])
        await alice.wait_message(ra, me, notice_with("!stranger start"), 60)
        await bob.wait_message(rb, me, notice_with("!stranger start"), 60)
        await pair(alice, ra, bob, rb, me, 1)
        await exchange(alice, ra, bob, rb, me, "1")
        device = (tmp_path / "login.json").read_text()

        procs[0].send_signal(signal.SIGKILL)
        assert await procs[0].wait() == -signal.SIGKILL
        procs.append(await daemon(cfg, log))
        # the hub chat is resumed (within the hub's resume_window) and goes on, both ways: the bot
        # decrypts with the keys kept before the kill and encrypts with its old device
        await exchange(alice, ra, bob, rb, me, "2")

        procs[1].send_signal(signal.SIGTERM)
        assert await procs[1].wait() == 0
        procs.append(await daemon(cfg, log))
        await alice.send(ra, "!stranger help")  # a marker: answered once the restarted bot reads the room
        await alice.wait_for(lambda: count(alice, ra, me, "I connect this room") >= 2, 60)
        await exchange(alice, ra, bob, rb, me, "3")  # a clean restart resumes the chat too
        assert count(alice, ra, me, "restarted") == count(bob, rb, me, "restarted") == 0
        assert count(alice, ra, me, "You're now chatting") == count(bob, rb, me, "You're now chatting") == 1
        await alice.send(ra, "!stranger stop")
        await bob.wait_message(rb, me, notice_with("Stranger has disconnected"), 30)

        assert (tmp_path / "login.json").read_text() == device  # one device, one key store, all along
        assert [p.name for p in (tmp_path / "keys").iterdir() if p.suffix == ".db"] == [f"{me}_{_device_id(device)}.db"]
        assert stranger_lines(alice, ra, me) == ["Stranger: b-1", "Stranger: b-2", "Stranger: b-3"]
        assert stranger_lines(bob, rb, me) == ["Stranger: a-1", "Stranger: a-2", "Stranger: a-3"]
        for user, rid in ((alice, ra), (bob, rb)):
            assert not user.undecrypted  # the users decrypted everything the bot sent, before and after
            assert not [e for e in user.messages(rid, me) if "could not be decrypted" in e["content"].get("body", "")]
            bot_events_all_encrypted(await raw_events(synapse.url, user.token, rid), me)
        text = log.read_text(errors="replace")
        assert "refused our key upload" not in text and "cannot be opened" not in text, text[-3000:]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _device_id(saved: str) -> str:
    return json.loads(saved)["device_id"]
