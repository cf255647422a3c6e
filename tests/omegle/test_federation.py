"""Federation: two bridges in one test; B's omegle backend is a client of A's web platform."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from bridge.events import (
    Connected,
    Disconnected,
    Message,
    Mode,
    Reason,
    Room,
    ServerNotice,
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)
from bridge.store import MemoryStore, SessionRecord
from tests.helpers import RECORDING, bare, running

from .conftest import omegle

WEB = Path(__file__).resolve().parents[2] / "plugins" / "web" / "platform.py"


def bridge_a(**web) -> dict:
    """Instance A: the web platform (the Omegle-protocol server) and the hub, plus a recording user."""
    assert WEB.exists(), "the web platform (plugins/web/platform.py) is needed for federation"
    return {
        "platforms": {
            "rec": {"plugin": RECORDING},
            "web": {"plugin": "web", "bind": "127.0.0.1:0", "poll_window": 1.0, **web},
        },
        "backends": {"hub": {"plugin": "hub", "interest_fallback": 30}},
        "bridge": {"default_backend": "hub"},
    }


@contextlib.asynccontextmanager
async def federation(**omegle_cfg):
    """Bridge A (web + hub) and bridge B (omegle client of A's web platform), both started."""
    async with running(bridge_a()) as a:
        url = a.platforms["web"].url
        assert url and url.startswith("http://127.0.0.1:")
        async with running(omegle(url, poll_timeout=5.0, **omegle_cfg)) as b:
            yield a, b


async def hub_waiting(a, n: int) -> None:
    """Until A's hub has `n` tickets waiting (B's web session reached it)."""
    hub = a.backends["hub"]
    async with asyncio.timeout(5):
        while hub.pool.waiting < n:
            await asyncio.sleep(0.01)


async def test_users_of_two_bridges_chat_both_ways(caplog):
    caplog.set_level(logging.DEBUG)
    async with federation() as (a, b):
        alice, bob = a.platforms["rec"], b.platforms["rec"]
        bob.send("bob", Start(interests=("cats", "chess")))
        await bob.wait_for("bob", Waiting)
        await hub_waiting(a, 1)
        alice.send("alice", Start(interests=("cats", "tea")))
        assert (await alice.wait_for("alice", Connected)).common_interests == ("cats",)
        assert (await bob.wait_for("bob", Connected)).common_interests == ("cats",)
        # typing both ways
        bob.send("bob", Typing())
        assert await alice.wait_for("alice", Typing) == Typing()
        alice.send("alice", Typing())
        assert await bob.wait_for("bob", Typing) == Typing()
        alice.send("alice", StoppedTyping())
        await bob.wait_for("bob", StoppedTyping)
        # messages both ways, in order, none lost or doubled
        for n in range(10):
            bob.send("bob", Message(f"b{n} <i>hi</i> ✓"))
            alice.send("alice", Message(f"a{n}"))
        await alice.wait_count("alice", Message, 10)
        await bob.wait_count("bob", Message, 10)
        assert [m.text for m in alice.events("alice", Message)] == [f"b{n} <i>hi</i> ✓" for n in range(10)]
        assert [m.text for m in bob.events("bob", Message)] == [f"a{n}" for n in range(10)]
        assert all(m.stranger is None for m in alice.events("alice", Message) + bob.events("bob", Message))
        # B's user leaves: A's user is told the stranger left
        bob.send("bob", Disconnected())
        assert (await alice.wait_for("alice", Disconnected)).reason == Reason.STRANGER
        assert (await bob.wait_for("bob", Disconnected)).reason == Reason.USER
        # again, and A's user leaves this time
        bob.send("bob", Start())
        await hub_waiting(a, 1)
        alice.send("alice", Start())
        await bob.wait_count("bob", Connected, 2)
        await alice.wait_count("alice", Connected, 2)
        bob.send("bob", Message("second chat"))
        assert (await alice.wait_for("alice", lambda e: bare(e) == Message("second chat"))).text == "second chat"
        alice.send("alice", Disconnected())
        ends = await bob.wait_count("bob", Disconnected, 2)
        assert ends[-1].reason == Reason.STRANGER
        assert not any(isinstance(e, ServerNotice) for e in bob.events("bob"))
        web_ids = list(a.platforms["web"].clients.by_key)
    for key in web_ids:
        assert key not in caplog.text


async def test_bridge_b_user_asks_two_of_bridge_a(caplog):
    async with federation() as (a, b):
        alice, bob = a.platforms["rec"], b.platforms["rec"]
        bob.send("spy", Start(mode=Mode.ASK, question="Is a hot dog a sandwich?"))
        await hub_waiting(a, 1)
        alice.send("x", Start(mode=Mode.ANSWER))
        alice.send("y", Start(mode=Mode.ANSWER))
        connected = await bob.wait_for("spy", Connected)
        assert connected.strangers == ("Stranger 1", "Stranger 2")
        assert connected.question == "Is a hot dog a sandwich?"
        assert (await alice.wait_for("x", Connected)).question == "Is a hot dog a sandwich?"
        alice.send("x", Typing())
        typing = await bob.wait_for("spy", Typing)
        alice.send("x", Message("yes"))
        said = await bob.wait_for("spy", Message)
        assert said.text == "yes" and said.stranger == typing.stranger and said.stranger in connected.strangers
        alice.send("y", Message("no"))
        other = await bob.wait_for("spy", lambda e: isinstance(e, Message) and e.text == "no")
        assert {said.stranger, other.stranger} == {"Stranger 1", "Stranger 2"}
        assert (await alice.wait_for("x", Message)).text == "no"  # the answerers see each other
        alice.send("y", Disconnected())
        end = await bob.wait_for("spy", Disconnected)
        assert end.reason == Reason.STRANGER and end.stranger == other.stranger


async def test_bridge_b_user_answers_a_question_of_bridge_a():
    async with federation() as (a, b):
        alice, bob = a.platforms["rec"], b.platforms["rec"]
        bob.send("bob", Start(mode=Mode.ANSWER))
        await hub_waiting(a, 1)
        alice.send("other", Start(mode=Mode.ANSWER))
        alice.send("spy", Start(mode=Mode.ASK, question="Tabs or spaces?"))
        connected = await bob.wait_for("bob", Connected)
        assert connected.question == "Tabs or spaces?" and connected.strangers == ("Stranger",)
        bob.send("bob", Message("tabs"))
        seen = await alice.wait_for("spy", Message)
        assert seen.text == "tabs" and seen.stranger in ("Stranger 1", "Stranger 2")
        assert (await alice.wait_for("other", Message)).text == "tabs"
        alice.send("other", Message("spaces"))
        assert (await bob.wait_for("bob", Message)).text == "spaces"
        bob.send("bob", Disconnected())
        end = await alice.wait_for("spy", Disconnected)
        assert end.reason == Reason.STRANGER
        assert (await alice.wait_for("other", Disconnected)).reason == Reason.STRANGER


async def test_bridge_a_stopping_ends_bridge_b_chat_with_a_notice():
    async with running(omegle("http://127.0.0.1:9", retries=1)) as probe:  # nothing listens there
        probe.platforms["rec"].send("p", Start())
        assert (await probe.platforms["rec"].wait_for("p", Disconnected)).reason == Reason.ERROR
    async with running(bridge_a()) as a:
        url = a.platforms["web"].url
        b_ctx = running(omegle(url, poll_timeout=2.0, retries=1))
        b = await b_ctx.__aenter__()
        try:
            alice, bob = a.platforms["rec"], b.platforms["rec"]
            bob.send("bob", Start())
            await hub_waiting(a, 1)
            alice.send("alice", Start())
            await bob.wait_for("bob", Connected)
            await a.stop()  # A shuts down: its users get shutdown notices, B's user is told too
            end = await bob.wait_for("bob", Disconnected, timeout=15)
            assert end.reason in (Reason.STRANGER, Reason.ERROR)
            assert len(bob.events("bob", Disconnected)) == 1
        finally:
            await b_ctx.__aexit__(None, None, None)


async def test_resume_on_a_web_platform_that_still_knows_the_id(http):
    async with running(bridge_a()) as a:
        url = a.platforms["web"].url
        alice = a.platforms["rec"]
        # What a previous process of bridge B left: a client id paired with alice, no longer polled.
        # Its polls are made one by one and each is answered, so none is in flight at the "crash"
        # (a long poll held for a client that is gone would swallow the next event).
        async with http.get(url + "/start", params={"firstevents": "1", "lang": "en", "randid": "OLD23456"}) as r:
            old_id = json.loads(await r.text())["clientID"]
        await hub_waiting(a, 1)
        alice.send("alice", Start())
        seen: list = []
        async with asyncio.timeout(5):
            while ["connected"] not in seen:
                async with http.post(url + "/events", data={"id": old_id}) as r:
                    seen += json.loads(await r.text()) or []
        store = MemoryStore()
        handle = json.dumps({"server": url, "id": old_id})
        await store.save_session(SessionRecord(Room("rec", "bob"), "chatting", "omegle", handle, {"mode": "random"}))
        async with running(omegle(url), store=store) as b:
            bob = b.platforms["rec"]
            alice.send("alice", Message("still there?"))
            assert (await bob.wait_for("bob", Message)).text == "still there?"
            bob.send("bob", Message("yes, after a restart"))
            assert (await alice.wait_for("alice", Message)).text == "yes, after a restart"
            bob.send("bob", Disconnected())
            assert (await alice.wait_for("alice", Disconnected)).reason == Reason.STRANGER


async def test_resume_on_a_web_platform_that_forgot_the_id():
    async with running(bridge_a()) as a:
        url = a.platforms["web"].url
        store = MemoryStore()
        handle = json.dumps({"server": url, "id": "0" * 43})
        await store.save_session(SessionRecord(Room("rec", "old"), "chatting", "omegle", handle, {"mode": "random"}))
        async with running(omegle(url), store=store) as b:
            end = await b.platforms["rec"].wait_for("old", Disconnected)
            assert end.reason == Reason.RESTART
            assert len(b.platforms["rec"].events("old")) == 1
