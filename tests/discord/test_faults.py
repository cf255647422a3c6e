"""Faults: 429 per route and global, 5xx after the message was stored, gateway op 7 / op 9, replays (crash: test_crash)."""

from __future__ import annotations

import re

import pytest

from bridge.events import Message
from bridge.store import MemoryStore

from .conftest import bridge
from .util import notices, open_chat, paired_with_rec, wait_notice

HOOK = r"^/webhooks/\d+/tok"


def tokens_in(server, tid: int, prefix: str) -> list[str]:
    """Every token `prefix`N the bridge made visible in a thread, in order (merged lines included)."""
    found: list[str] = []
    for m in server.bot_messages(tid):
        found.extend(re.findall(rf"\b{prefix}\d+\b", m["content"]))
    return found


async def test_429_on_one_thread_merges_visibly_and_spares_the_others(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        _, ta = await paired_with_rec(server, b, "w", "alice")
        _, tb = await paired_with_rec(server, b, "v", "bob")
        server.fail("POST", HOOK, 429, retry_after=1.5, query={"thread_id": str(ta)})
        sent = [f"a{i}" for i in range(8)]
        for token in sent:
            rec.send("w", Message(token))
        await server.wait_until(lambda: any(r.status == 429 for r in server.requests))
        rec.send("v", Message("b0"))
        await server.wait_until(lambda: tokens_in(server, tb, "b") == ["b0"])
        # the other thread got its message while this one was still held back by the 429
        assert tokens_in(server, ta, "a") == []
        await server.wait_until(lambda: len(tokens_in(server, ta, "a")) == len(sent))
        assert tokens_in(server, ta, "a") == sent  # nothing lost, nothing twice, in order
        merged = [m["content"] for m in server.bot_messages(ta) if "were merged" in m["content"]]
        assert merged and merged[0].endswith("were merged into one while delivery was slowed down.")
        assert all(r.body["allowed_mentions"]["parse"] == [] for r in server.writes("POST", HOOK))


@pytest.mark.parametrize("is_global", [False, True])
async def test_429_bot_messages_per_route_and_global(server, is_global):
    async with bridge(server, webhooks=False) as b:
        rec = b.platforms["rec"]
        _, ta = await paired_with_rec(server, b, "w", "alice")
        _, tb = await paired_with_rec(server, b, "v", "bob")
        server.fail("POST", rf"^/channels/{ta}/messages$", 429, retry_after=0.4, is_global=is_global)
        for i in range(5):
            rec.send("w", Message(f"a{i}"))
            rec.send("v", Message(f"b{i}"))
        await server.wait_until(lambda: len(tokens_in(server, ta, "a")) >= 5 and len(tokens_in(server, tb, "b")) >= 5)
        assert tokens_in(server, ta, "a") == [f"a{i}" for i in range(5)]
        assert tokens_in(server, tb, "b") == [f"b{i}" for i in range(5)]
        assert any(r.status == 429 for r in server.requests)


@pytest.mark.parametrize("webhooks", [False, True])
async def test_5xx_after_store_shows_exactly_one_message(server, webhooks):
    async with bridge(server, webhooks=webhooks) as b:
        rec = b.platforms["rec"]
        _, ta = await paired_with_rec(server, b)
        route = HOOK if webhooks else rf"^/channels/{ta}/messages$"
        server.fail("POST", route, 500, after_store=True)
        rec.send("w", Message("stored-once"))
        rec.send("w", Message("after"))
        await server.wait_until(lambda: [m for m in server.bot_messages(ta) if m["content"].endswith("after")])
        assert [m["content"] for m in server.bot_messages(ta) if "stored-once" in m["content"]] == [
            "stored-once" if webhooks else "**Stranger:** stored-once"
        ]
        posts = [r for r in server.writes("POST", route) if "stored-once" in (r.body or {}).get("content", "")]
        assert posts[0].status == 500
        if not webhooks:  # the retry reused the nonce, so Discord returned the stored message
            assert len(posts) == 2 and posts[0].body["nonce"] == posts[1].body["nonce"]
        else:  # webhooks have no nonce: the thread was read back instead of posting again
            assert len(posts) == 1


async def test_gateway_resume_during_traffic_loses_and_doubles_nothing(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice, ta = await paired_with_rec(server, b)
        sent = [f"u{i}" for i in range(12)]
        for index, token in enumerate(sent):
            if index == 4:
                await server.reconnect()
            await server.user_message(ta, alice, token)
            rec.send("w", Message(f"s{index}"))
        got = await rec.wait_count("w", Message, len(sent))
        await server.wait_until(lambda: len(tokens_in(server, ta, "s")) == len(sent))
        assert [m.text for m in got] == sent
        assert tokens_in(server, ta, "s") == [f"s{i}" for i in range(len(sent))]
        assert server.resumes >= 1 and server.identifies == 1


async def test_invalid_session_reidentify_catches_up(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice, ta = await paired_with_rec(server, b)
        await server.user_message(ta, alice, "u0")
        await rec.wait_for("w", Message)
        await server.invalidate()
        for i in range(1, 6):  # sent while the bot has no session: the gateway never delivers them
            await server.user_message(ta, alice, f"u{i}")
        got = await rec.wait_count("w", Message, 6, timeout=20)
        await server.user_message(ta, alice, "u6")
        got = await rec.wait_count("w", Message, 7, timeout=10)
        assert [m.text for m in got] == [f"u{i}" for i in range(7)]
        assert server.identifies == 2
        assert server.writes("GET", rf"^/channels/{ta}/messages$")


async def test_replayed_interaction_one_thread_even_after_restart(server):
    store = MemoryStore()
    async with bridge(server, store=store) as b:
        alice = server.add_user("alice")
        tid, start = await open_chat(server, alice)
        await wait_notice(server, tid, "Looking for someone")
        await server.replay(start)
        click = await server.click(alice, server.bot_messages(tid)[0], "stranger:stop")
        await server.replay(click)
        await wait_notice(server, tid, "You have disconnected.")
        assert len(server.threads()) == 1
        assert len([c for c in server.replies(start) if c.get("kind") == "callback"]) == 1
        assert len(server.replies(click)) == 1
    async with bridge(server, store=store) as b:
        await server.replay(start)
        bob = server.add_user("bob")
        other, _ = await open_chat(server, bob)  # a later interaction is handled: the replay was not
        assert len(server.threads()) == 2 and other != tid
        assert len([c for c in server.replies(start) if c.get("kind") == "callback"]) == 1
