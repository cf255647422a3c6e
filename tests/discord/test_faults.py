"""Faults: 429 per route and global, 5xx after the message was stored, gateway op 7 / op 9, replays (crash: test_crash)."""

from __future__ import annotations

import re

import pytest

from bridge.backoff import Backoff
from bridge.events import Message
from bridge.store import MemoryStore

from .conftest import bridge
from .guarded import GuardedDiscord
from .util import notices, open_chat, paired_with_rec, until, wait_notice

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
        assert b.metrics.gauges("queue_depth")[("dc", "outbox")] >= 2  # held back: what waits is a gauge
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
        assert b.metrics.ready["dc"] is True
        await server.invalidate()
        await until(lambda: b.metrics.ready["dc"] is False)  # no gateway: /metrics says so
        for i in range(1, 6):  # sent while the bot has no session: the gateway never delivers them
            await server.user_message(ta, alice, f"u{i}")
        got = await rec.wait_count("w", Message, 6, timeout=20)
        await until(lambda: b.metrics.ready["dc"] is True)  # identified again: ready
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


@pytest.mark.parametrize("action", ["reset", "hang"])
async def test_webhook_post_lost_after_store_is_shown_exactly_once(server, action):
    # Discord stored the message, then the connection was reset (or the answer never came): webhooks
    # carry no nonce, so only a read-back before the retry can keep it from being shown twice.
    async with bridge(server, request_timeout=2.0) as b:
        rec = b.platforms["rec"]
        _, ta = await paired_with_rec(server, b)
        rec.send("w", Message("x0"))  # a first message, so the thread has a newest message of ours
        await server.wait_until(lambda: tokens_in(server, ta, "x") == ["x0"])
        fault = server.fail("POST", HOOK, after_store=True, action=action)
        sent = [f"x{i}" for i in range(1, 6)]
        for token in sent:
            rec.send("w", Message(token))
        # the outbox sends in order, so a second copy of x1 would come before x5
        await server.wait_until(lambda: "x5" in tokens_in(server, ta, "x"))
        assert fault.times == 0 and server.unanswered == 1
        assert tokens_in(server, ta, "x") == ["x0", *sent]  # each exactly once, in order
        posts = [r for r in server.writes("POST", HOOK) if "x1" in (r.body or {}).get("content", "")]
        assert len(posts) == 1 and posts[0].status == -1  # not posted again: it was read back


async def test_a_message_discord_keeps_refusing_gets_one_not_delivered_notice_and_a_metric(server, monkeypatch):
    monkeypatch.setattr(GuardedDiscord, "options", {"retry": Backoff(0.01, attempts=4)})
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        _, ta = await paired_with_rec(server, b)
        rec.send("w", Message("y0"))
        await server.wait_until(lambda: tokens_in(server, ta, "y") == ["y0"])
        server.fail("POST", HOOK, 500, times=4)  # every attempt of the next message: 4 in all
        rec.send("w", Message("y1"))
        rec.send("w", Message("y2"))
        await server.wait_until(lambda: "y2" in tokens_in(server, ta, "y"))
        assert tokens_in(server, ta, "y") == ["y0", "y2"]
        shown = [m["content"] or m["embeds"][0]["description"] for m in server.bot_messages(ta)]
        assert shown[-2:] == ["This message from Stranger could not be delivered: “y1”", "y2"]  # at its place
        assert len([s for s in shown if "could not be delivered" in s]) == 1
        failures = {labels: n for (name, labels), n in b.metrics.counters.items() if name == "deliver_failures"}
        assert failures == {(("platform", "dc"), ("reason", "transient")): 1}
        retries = b.metrics.counters[("deliver_retries", (("platform", "dc"), ("reason", "transient")))]
        assert retries == 3
        # ... and the stranger is told about that very message, once (issue 9 item 13: each side)
        told = await rec.wait_for("w", lambda e: isinstance(e, Message) and "not delivered" in e.text)
        assert told.text == "[bridge] Your message was not delivered: “y1”"
        assert [e.text for e in rec.events("w", Message) if "not delivered" in e.text] == [told.text]


async def test_a_locked_thread_gives_up_at_once_without_a_notice_loop(server):
    async with bridge(server, keep_open=True) as b:
        rec = b.platforms["rec"]
        _, ta = await paired_with_rec(server, b)
        server.channels[ta]["thread_metadata"]["locked"] = True  # a moderator locked it
        rec.send("w", Message("z1"))
        rec.send("w", Message("z2"))
        failures = ("deliver_failures", (("platform", "dc"), ("reason", "permanent")))
        # z1, its notice (refused too, and given up silently), z2, its notice
        await until(lambda: b.metrics.counters[failures] == 4)
        hook_posts = [r for r in server.writes("POST", HOOK) if r.body and r.body.get("content", "").startswith("z")]
        assert [r.body["content"] for r in hook_posts] == ["z1", "z2"]  # one attempt each: permanent
        notices_tried = [r for r in server.writes("POST", rf"^/channels/{ta}/messages$")
                         if "could not be delivered" in str(r.body)]
        assert len(notices_tried) == 2 and all(r.status == 403 for r in notices_tried)


@pytest.mark.parametrize("action", ["reset", "hang"])
async def test_bot_post_lost_after_store_is_shown_exactly_once(server, action):
    # Without webhooks the retry reuses the nonce, and Discord answers with the stored message.
    async with bridge(server, webhooks=False, request_timeout=2.0) as b:
        rec = b.platforms["rec"]
        _, ta = await paired_with_rec(server, b)
        route = rf"^/channels/{ta}/messages$"
        fault = server.fail("POST", route, after_store=True, action=action)
        sent = [f"x{i}" for i in range(1, 6)]
        for token in sent:
            rec.send("w", Message(token))
        await server.wait_until(lambda: "x5" in tokens_in(server, ta, "x"))
        assert fault.times == 0 and server.unanswered == 1
        assert tokens_in(server, ta, "x") == sent
        posts = [r for r in server.writes("POST", route) if "x1" in (r.body or {}).get("content", "")]
        assert len(posts) == 2 and posts[0].status == -1 and posts[0].body["nonce"] == posts[1].body["nonce"]


@pytest.mark.parametrize("webhooks", [True, False])
async def test_a_long_message_whose_second_part_was_cut_off_is_shown_once_in_two_parts(server, webhooks):
    async with bridge(server, webhooks=webhooks, request_timeout=2.0) as b:
        rec = b.platforms["rec"]
        _, ta = await paired_with_rec(server, b)
        words = [f"w{i}" for i in range(760)]  # about 3,700 characters (a user may send 4,000): two messages
        route = HOOK if webhooks else rf"^/channels/{ta}/messages$"
        fault = server.fail("POST", route, after_store=True, action="reset", content_has=" w600 ")
        rec.send("w", Message(" ".join(words)))
        rec.send("w", Message("w-after"))
        await server.wait_until(lambda: "w-after" in " ".join(m["content"] for m in server.bot_messages(ta)))
        assert fault.times == 0
        shown = [m["content"] for m in server.bot_messages(ta) if m["content"] and "w-after" not in m["content"]]
        assert len(shown) == 2  # each part once
        assert re.findall(r"\bw\d+\b", " ".join(shown)) == words  # every word once, in order


async def test_a_deleted_webhook_is_replaced_and_no_message_is_lost(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        _, ta = await paired_with_rec(server, b)
        rec.send("w", Message("v0"))
        await server.wait_until(lambda: tokens_in(server, ta, "v") == ["v0"])
        [old] = list(server.webhooks)
        server.webhooks.clear()  # a moderator deleted the bridge's webhook
        rec.send("w", Message("v1"))
        rec.send("w", Message("v2"))
        await server.wait_until(lambda: tokens_in(server, ta, "v") == ["v0", "v1", "v2"])
        lines = [(m["author"]["username"], m["content"]) for m in server.bot_messages(ta) if m["content"]]
        assert lines[1] == ("strangerbot", "**Stranger:** v1")  # this one as the bot, at once
        assert lines[2] == ("Stranger", "v2") and list(server.webhooks) != [old]  # then a new webhook


async def test_a_webhook_post_into_a_deleted_thread_keeps_the_webhook(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice, ta = await paired_with_rec(server, b)
        rec.send("w", Message("v0"))
        await server.wait_until(lambda: tokens_in(server, ta, "v") == ["v0"])
        _, tb = await paired_with_rec(server, b, "v", "bob")
        server.channels.pop(ta)  # gone without a gateway event: the post itself finds out
        rec.send("w", Message("lost"))
        failures = ("deliver_failures", (("platform", "dc"), ("reason", "permanent")))
        await until(lambda: b.metrics.counters[failures] >= 1)
        rec.send("v", Message("b0"))  # the other thread of the same channel still uses the webhook
        await server.wait_until(lambda: tokens_in(server, tb, "b") == ["b0"])
        # the webhook was not forgotten: never looked up again, never made again
        assert len(server.writes("GET", r"^/channels/\d+/webhooks$")) == 1 and len(server.webhooks) == 1
