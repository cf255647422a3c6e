"""Ghost mode on a second real Synapse with an application service registration pointing at the bridge."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from pathlib import Path

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.events import Connected, Disconnected, Message, Reason, Start, StoppedTyping, Typing
from bridge.store import SQLiteStore
from nio import JoinedMembersResponse
from tests.helpers import RECORDING, config, running

from .conftest import Matrix, notice_with, paired
from .synapse import Synapse, free_port

HS_TOKEN = "hs-token-for-tests-0123456789"
AS_TOKEN = "as-token-for-tests-0123456789"
BOT = "@sbbridge:localhost"
GHOST = re.compile(r"^@stranger_[0-9a-f]{16}:localhost$")


@pytest.fixture(scope="module")
def as_synapse():
    """A Synapse of its own whose registration's url is the bridge's appservice listener."""
    with tempfile.TemporaryDirectory(prefix="sb-synapse-as-") as tmp:
        d = Path(tmp)
        port = free_port()
        registration = d / "registration.yaml"
        registration.write_text(
            json.dumps(  # JSON is valid YAML
                {
                    "id": "stranger-bridge",
                    "url": f"http://127.0.0.1:{port}",
                    "as_token": AS_TOKEN,
                    "hs_token": HS_TOKEN,
                    "sender_localpart": "sbbridge",
                    "namespaces": {"users": [{"exclusive": True, "regex": "@stranger_.*:localhost"}], "aliases": [], "rooms": []},
                    "rate_limited": False,
                    "receive_ephemeral": True,
                }
            )
        )
        server = Synapse(d / "hs", appservices=[registration])
        server.start()
        server.registration = registration
        server.as_port = port
        try:
            yield server
        finally:
            server.kill()


def ghost_config(server: Synapse, **matrix) -> dict:
    return {
        "platforms": {
            "mx": {
                "plugin": "matrix",
                "homeserver": server.url,
                "user_id": BOT,
                "appservice": {"registration": str(server.registration), "listen": f"127.0.0.1:{server.as_port}"},
                "allowed_inviters": [":localhost"],
                "request_timeout": 10.0,
                **matrix,
            },
            "rec": {"plugin": RECORDING},
        },
        # resume_window 0: a restart never takes a hub chat up again (what these tests are about)
        "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0, "interest_fallback": 0, "resume_window": 0}},
    }


def from_ghosts(user, rid: str) -> list[dict]:
    return [e for e in user.messages(rid) if GHOST.match(e.get("sender", ""))]


async def push(port: int, txn: str, body: dict, token: str | None = HS_TOKEN) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http:
        async with http.put(f"http://127.0.0.1:{port}/_matrix/app/v1/transactions/{txn}", json=body, headers=headers) as r:
            return r.status


def fake_message(rid: str, sender: str, event_id: str, text: str) -> dict:
    return {
        "type": "m.room.message",
        "room_id": rid,
        "sender": sender,
        "event_id": event_id,
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": text},
    }


async def test_ghost_mode_end_to_end(as_synapse):
    m = Matrix(as_synapse)
    try:
        alice = await m.user("alice")
        async with running(ghost_config(as_synapse)) as b:
            rec = b.platforms["rec"]
            mx = b.platforms["mx"]
            # invite → join → help notice from the bot (the appservice sender)
            rid = await alice.create_room([BOT])
            await alice.wait_message(rid, BOT, notice_with("!stranger start"))
            await alice.send(rid, "!stranger start")
            await alice.wait_message(rid, BOT, notice_with("Looking for someone"))
            rec.send("r", Start())
            await rec.wait_for("r", Connected, timeout=20)
            await alice.wait_message(rid, BOT, notice_with("You're now chatting"))

            # the stranger types: shown as a ghost typing, never as the bot
            rec.send("r", Typing())
            ghost = await alice.wait_for(lambda: next((u for u in alice.typing[rid] if GHOST.match(u)), None))
            assert BOT not in alice.typing[rid]
            assert "alice" not in ghost
            member = await alice.wait_member(rid, ghost, "join")
            assert member["content"]["displayname"] == "Stranger"

            # the stranger's message comes from that ghost: plain text, no label, no markup, no pings
            rec.send("r", Message("hello <b>bold</b> & @room"))
            got = await alice.wait_message(rid, ghost, "hello")
            assert got["content"] == {"msgtype": "m.text", "body": "hello <b>bold</b> & @room", "m.mentions": {}}
            await alice.wait_for(lambda: ghost not in alice.typing[rid])
            assert not [e for e in alice.messages(rid, BOT) if e["content"].get("msgtype") == "m.text"]

            # the user's typing and messages reach the stranger (pushed by Synapse, no /sync)
            await alice.set_typing(rid, True)
            await rec.wait_for("r", Typing, timeout=20)
            await alice.set_typing(rid, False)
            await rec.wait_for("r", StoppedTyping, timeout=20)
            await alice.send(rid, "hi from @alice:localhost")
            said = await rec.wait_for("r", Message, timeout=20)
            assert said.text == "hi from [user]"

            # a transaction pushed twice is handled once (even if its body differs the second time)
            before = mx.ghosts.pushes
            assert await push(as_synapse.as_port, "dup-1", {"events": [fake_message(rid, alice.user_id, "$dup1", "pushed once")]}) == 200
            assert await push(as_synapse.as_port, "dup-1", {"events": [fake_message(rid, alice.user_id, "$dup2", "pushed twice")]}) == 200
            assert mx.ghosts.pushes == before + 1
            # a wrong or missing hs_token is refused and relays nothing
            bad = {"events": [fake_message(rid, alice.user_id, "$bad1", "forged push")]}
            assert await push(as_synapse.as_port, "bad-1", bad, token="wrong-token") == 403
            assert await push(as_synapse.as_port, "bad-2", bad, token=None) == 401
            await alice.send(rid, "after the pushes")
            await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "after the pushes", timeout=20)
            texts = [e.text for e in rec.events("r", Message)]
            assert texts.count("pushed once") == 1
            assert "pushed twice" not in texts and "forged push" not in texts

            # the user stops: the stranger is told, the notice comes from the bot, the ghost leaves
            await alice.send(rid, "!stranger stop")
            await rec.wait_for("r", Disconnected, timeout=20)
            await alice.wait_message(rid, BOT, notice_with("You have disconnected"))
            await alice.wait_member(rid, ghost, "leave")

            # a new chat gets a new ghost; the stranger stops: a notice from the bot, the ghost leaves
            await alice.send(rid, "!stranger start")
            rec.send("r2", Start())
            await rec.wait_for("r2", Connected, timeout=20)
            rec.send("r2", Message("second chat"))
            second = await alice.wait_for(
                lambda: next((e for e in from_ghosts(alice, rid) if e["content"]["body"] == "second chat"), None)
            )
            ghost2 = second["sender"]
            assert ghost2 != ghost
            rec.send("r2", Disconnected())
            await alice.wait_message(rid, BOT, notice_with("Stranger has disconnected"))
            await alice.wait_member(rid, ghost2, "leave")

            for e in alice.messages(rid):
                if e["sender"] != alice.user_id:
                    assert e["sender"] == BOT or GHOST.match(e["sender"]), e
                    assert e["content"]["m.mentions"] == {}, e
    finally:
        await m.close()


async def crash(bridge: Bridge) -> None:
    """Stop a bridge as a killed process would: no chat is ended, nothing is told, the store is kept.

    Every task is cancelled (sessions, platforms), backends are dropped, the store file is closed
    as it is; the Matrix platform closes only its sockets (its push listener port is reused)."""
    router = bridge.router
    assert router is not None
    tasks = [s.task for s in router.sessions.values() if s.task is not None]
    tasks += [*router._background, *bridge._tasks]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for backend in bridge.backends.values():
        await backend.stop()
    assert bridge.store is not None
    await bridge.store.close()
    bridge._started = False  # nothing left to stop


async def joined(user, rid: str) -> set[str]:
    """The room's joined members as the homeserver has them now (client API, not the sync log)."""
    resp = await user.client.joined_members(rid)
    assert isinstance(resp, JoinedMembersResponse), resp
    return {m.user_id for m in resp.members}


async def test_ghost_of_a_chat_cut_by_a_crash_leaves_after_the_restart(as_synapse, tmp_path):
    m = Matrix(as_synapse)
    path = tmp_path / "state.sqlite3"
    cfg = ghost_config(as_synapse)
    restart = "could not resume this chat"
    try:
        alice = await m.user("alice")
        first = Bridge(config(cfg), store=SQLiteStore(path))
        try:
            await first.start()
            rid = await paired(first, alice, BOT)
            first.platforms["rec"].send("r", Message("before the crash"))
            said = await alice.wait_for(
                lambda: next((e for e in from_ghosts(alice, rid) if e["content"]["body"] == "before the crash"), None)
            )
            ghost = said["sender"]
            assert ghost in await joined(alice, rid)
        finally:
            await crash(first)
        assert ghost in await joined(alice, rid)  # the crash told nobody: the ghost is still there

        async with running(cfg, store=SQLiteStore(path)) as second:
            rec = second.platforms["rec"]
            # the hub cannot resume the chat: one notice from the bot, and the old ghost leaves
            await alice.wait_message(rid, BOT, notice_with(restart))
            await alice.wait_member(rid, ghost, "leave")
            members = await joined(alice, rid)
            assert ghost not in members and BOT in members and alice.user_id in members
            ended = await rec.wait_for("r", Disconnected, timeout=20)
            assert ended.reason == Reason.RESTART

            # a new chat in the same room works, with a fresh ghost that joins
            await alice.send(rid, "!stranger start")
            await alice.wait_for(lambda: len([e for e in alice.messages(rid, BOT) if "Looking for someone" in e["content"]["body"]]) == 2)
            rec.send("r2", Start())
            await rec.wait_for("r2", Connected, timeout=20)
            rec.send("r2", Message("after the restart"))
            again = await alice.wait_for(
                lambda: next((e for e in from_ghosts(alice, rid) if e["content"]["body"] == "after the restart"), None)
            )
            ghost2 = again["sender"]
            assert ghost2 != ghost
            assert ghost2 in await joined(alice, rid)
            await alice.send(rid, "hello again")
            said = await rec.wait_for("r2", Message, timeout=20)
            assert said.text == "hello again"
        # a clean stop ends the chat: its ghost leaves too, and nothing is left to leave next time
        await alice.wait_member(rid, ghost2, "leave")
        assert not {u for u in await joined(alice, rid) if GHOST.match(u)}
        notices = [e for e in alice.messages(rid, BOT) if restart in e["content"].get("body", "")]
        assert len(notices) == 1
        store = SQLiteStore(path)
        try:
            saved = json.loads(await store.state_for("platform:mx").get("as_ghosts"))
        finally:
            await store.close()
        assert saved == {"chats": {}, "leaving": []}
    finally:
        await m.close()


async def test_a_wrong_as_token_fails_start_up(as_synapse, tmp_path):
    """9.14 in ghost mode: the registration the bridge reads has an as_token the homeserver does not know."""
    import pytest

    from bridge.app import PlatformCredentialsError

    wrong = tmp_path / "registration.yaml"
    data = json.loads(as_synapse.registration.read_text())
    data["as_token"] = "not-the-as-token-0123456789"
    wrong.write_text(json.dumps(data))
    cfg = ghost_config(as_synapse)
    cfg["platforms"]["mx"]["appservice"]["registration"] = str(wrong)
    with pytest.raises(PlatformCredentialsError, match=r"platform mx failed to start: .*M_UNKNOWN_TOKEN") as caught:
        async with running(cfg):
            pass
    assert "not-the-as-token" not in str(caught.value)


async def test_ghost_mode_refuses_encrypted_rooms_and_says_why(as_synapse):
    """Ghosts cannot hold keys: an encrypted invite is rejected with the reason, a room turning encryption on ends its chat."""
    m = Matrix(as_synapse)
    try:
        alice = await m.user("alice")
        async with running(ghost_config(as_synapse)) as b:
            rec = b.platforms["rec"]
            enc = await alice.create_room([BOT], encrypted=True)
            refused = await alice.wait_member(enc, BOT, "leave")
            assert refused["sender"] == BOT
            assert refused["content"]["reason"].startswith("This bridge runs in ghost mode")
            assert "cannot hold encryption keys" in refused["content"]["reason"]
            assert not alice.messages(enc)  # nothing was sent into it, in plaintext or otherwise

            rid = await paired(b, alice, BOT)
            await alice.client.room_put_state(rid, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
            await rec.wait_for("r", Disconnected, timeout=20)
            left = await alice.wait_member(rid, BOT, "leave")
            assert left["content"]["reason"].startswith("This bridge runs in ghost mode")
    finally:
        await m.close()
