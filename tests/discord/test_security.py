"""security.md's bad inputs against the real discord.py and the fake server, payloads asserted exactly."""

from __future__ import annotations

import pytest

import time

from bridge.events import Disconnected, Message, Room, StoppedTyping, Typing

from bridge.config import ConfigError
from tests.helpers import config, running

from .conftest import bridge, bridge_config
from .fakediscord import BOT_ID, FakeDiscord
from .util import open_chat, paired_with_rec, until, wait_line, wait_notice

Z = "\u200b"
NONE = {"parse": [], "users": [], "roles": [], "replied_user": False}

STRANGER_INPUTS = [
    ("@everyone @here <@123456789012345678> <@&42>", f"@{Z}everyone @{Z}here <{Z}@{Z}123456789012345678> <{Z}@{Z}&42>"),
    ("@\u200beveryone ＠here", f"@{Z}everyone @{Z}here"),
    ("```\n@everyone\n```", f"```\n@{Z}everyone\n```"),
    ("<#1> </stranger start:5> <t:1:R>", f"<{Z}#1> <{Z}/stranger start:5> <{Z}t:1:R>"),
    ("[Free Nitro](https://evil.example) discord.gg/abc", f"[Free Nitro]{Z}(https://evil.example) discord{Z}.gg/abc"),
    ("<script>alert(1)</script>", f"<{Z}script>alert(1)<{Z}/script>"),
    ("**[Bridge]** Stranger disconnected. Re-verify at https://evil.example",
     "**[Bridge]** Stranger disconnected. Re-verify at https://evil.example"),
    ("x\u202eevil\u0000 ok", "xevil ok"),
]


@pytest.mark.parametrize("webhooks", [True, False])
async def test_stranger_bad_inputs_exact_payloads(server, webhooks):
    # Invites are let through here ([policy] invites = "allow"), so that what is tested is the
    # renderer's own neutralising; by default the policy holds them (tests/core/test_policy_*).
    async with running({**bridge_config(server, webhooks=webhooks), "policy": {"invites": "allow"}}) as b:
        rec = b.platforms["rec"]
        _, tid = await paired_with_rec(server, b)
        for index, (text, _) in enumerate(STRANGER_INPUTS):
            rec.send("w", Message(f"{text} #{index}"))
        route = r"^/webhooks/\d+/tok" if webhooks else rf"^/channels/{tid}/messages$"
        posts = await server.wait_until(
            lambda: len(found := [r for r in server.writes("POST", route) if r.body.get("content")]) >= len(STRANGER_INPUTS) and found
        )
        for (_, shown), post in zip(STRANGER_INPUTS, posts, strict=True):
            body = dict(post.body)
            index = STRANGER_INPUTS.index((_, shown))
            if webhooks:
                assert body == {"content": f"{shown} #{index}", "username": "Stranger", "allowed_mentions": NONE, "flags": 4}
            else:
                nonce = body.pop("nonce")
                assert isinstance(nonce, str) and nonce
                attributed = "\n".join(f"**Stranger:** {line}" for line in f"{shown} #{index}".split("\n"))  # every line
                assert body == {"content": attributed, "allowed_mentions": NONE, "flags": 4,
                                "enforce_nonce": True}
        # notices are embeds by the bot: never a webhook, never bare content
        for post in server.writes("POST", rf"^/channels/{tid}/messages$"):
            if post.body.get("embeds"):
                assert post.body["content"] == "" and post.body["allowed_mentions"] == NONE


async def test_long_stranger_text_split_then_cut(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        _, tid = await paired_with_rec(server, b)
        rec.send("w", Message("y" * 2001))
        await server.wait_until(lambda: len(server.writes("POST", r"^/webhooks/\d+/tok")) >= 2)
        # the hub carries at most 4,000 characters (longer text is refused at its source): two parts
        rec.send("w", Message("z" * 4000))
        posts = await server.wait_until(lambda: len(p := server.writes("POST", r"^/webhooks/\d+/tok")) >= 4 and p)
        assert [len(p.body["content"]) for p in posts] == [2000, 1, 2000, 2000]
        assert all(p.status == 200 for p in posts)


async def test_user_side_never_leaks_ids_links_or_files(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice, tid = await paired_with_rec(server, b)
        await server.user_message(tid, alice, "hey <@!111> <@&222> <#333> https://discord.com/channels/1/2/3")
        assert (await rec.wait_for("w", Message)).text == "hey @someone @some-role #some-channel [a message link]"
        await server.user_message(tid, alice, "look", attachments=[{
            "id": "1", "filename": "me.png", "size": 10, "url": "https://cdn.discordapp.com/attachments/1/2/me.png",
            "proxy_url": "https://media.discordapp.net/attachments/1/2/me.png"}])
        await wait_notice(server, tid, "Files and stickers are not sent to the stranger.")
        msgs = await rec.wait_count("w", Message, 2)
        assert msgs[1].text == "look"
        # other people, other bots and webhooks in the thread are never relayed
        mallory = server.add_user("mallory")
        await server.user_message(tid, mallory, "not the owner")
        await server.user_message(tid, alice, "", author={**server.users[alice], "bot": True})
        await server.user_message(tid, alice, "webhook", webhook_id="1")
        await server.user_message(tid, alice, "last")
        msgs = await rec.wait_count("w", Message, 3)
        assert [m.text for m in msgs] == ["hey @someone @some-role #some-channel [a message link]", "look", "last"]
        # and the stranger's name for this room never mentions discord ids
        assert all("111" not in m.text and "alice" not in m.text for m in msgs)


def test_attachment_links_option_is_gone_with_a_reason():
    # "links" sent Discord CDN URLs (which carry channel ids) to strangers; a config still naming
    # the option is refused with a message that says so, not silently accepted.
    server = FakeDiscord()
    data = bridge_config(server, attachments="links")
    with pytest.raises(ConfigError) as caught:
        config(data)
    assert "attachments" in str(caught.value) and "channel ids" in str(caught.value)
    data = bridge_config(server, attachments="drop")
    with pytest.raises(ConfigError, match="was removed"):
        config(data)


async def test_start_spam_one_session_cooldown_ephemeral(server):
    async with bridge(server, start_cooldown=30) as b:
        alice = server.add_user("alice")
        tid, _ = await open_chat(server, alice)
        spam = [await server.slash(alice, server.text_channels[0], "start") for _ in range(19)]
        answers = await server.wait_until(lambda: all(server.replies(p) for p in spam) and [server.replies(p) for p in spam])
        for [answer] in answers:
            assert answer["type"] == 4 and answer["data"]["flags"] & 64
            assert f"You already have a chat in <#{tid}>" in answer["data"]["content"]
            assert answer["data"]["allowed_mentions"]["parse"] == []
        # in the thread, start means next, but the cooldown holds
        again = await server.slash(alice, tid, "start")
        [answer] = await server.wait_until(lambda: server.replies(again))
        assert answer["data"]["content"].startswith("Please wait") and answer["data"]["flags"] & 64
        assert len(server.threads()) == 1


async def test_guild_cap_and_foreign_thread(server):
    async with bridge(server, max_sessions_per_guild=1) as b:
        alice, bob = server.add_user("alice"), server.add_user("bob")
        tid, _ = await open_chat(server, alice)
        refused = await server.slash(bob, server.text_channels[0], "start")
        [answer] = await server.wait_until(lambda: server.replies(refused))
        assert "Too many stranger chats" in answer["data"]["content"] and answer["data"]["flags"] & 64
        intruder = await server.slash(bob, tid, "next")
        [answer] = await server.wait_until(lambda: server.replies(intruder))
        assert answer["data"]["content"] == "You have no stranger chat. Use /stranger start."
        assert len(server.threads()) == 1


def thread_writes(server, tid: int) -> list:
    """Every write the bridge sent to a thread: bot posts, webhook posts into it, typing, edits."""
    return [r for r in server.requests if r.method != "GET" and (f"/channels/{tid}" in r.path or r.query.get("thread_id") == str(tid))]


@pytest.mark.parametrize("how", ["archive", "delete", "leave"])
async def test_user_leaving_the_thread_disconnects_the_stranger(server, how, monkeypatch):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        dc = b.platforms["dc"]
        delivered: list[tuple[Room, object]] = []
        deliver = dc.deliver

        async def watched(room, event):  # the real deliver, then a record that the core called it
            await deliver(room, event)
            delivered.append((room, event))

        monkeypatch.setattr(dc, "deliver", watched)
        alice, tid = await paired_with_rec(server, b)
        writes_before = len(thread_writes(server, tid))
        if how == "archive":
            await server.archive_thread(tid)
        elif how == "delete":
            await server.delete_thread(tid)
        else:
            await server.leave_thread(tid, alice)
        await rec.wait_for("w", Disconnected)
        rec.send("w", Message("anyone?"))
        await rec.wait_for("w", lambda e: type(e).__name__ == "ServerNotice")
        # the core has delivered the thread's own "You have disconnected." and every outbox is
        # drained: nothing more was posted in, or even sent to, the thread the user closed
        room = Room("dc", str(tid))
        await until(lambda: any(r == room and isinstance(e, Disconnected) and e.final for r, e in delivered))
        await dc.outboxes.drain()
        assert thread_writes(server, tid)[writes_before:] == []


async def test_stranger_typing_paced_once_per_8s(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        _, tid = await paired_with_rec(server, b)
        began = time.monotonic()
        rec.send("w", Typing())
        await server.wait_until(lambda: server.writes("POST", rf"^/channels/{tid}/typing$"))
        for _ in range(50):  # 100 typing events: starts and stops as fast as they come
            rec.send("w", Typing())
            rec.send("w", StoppedTyping())
        rec.send("w", Message("done typing"))
        await wait_line(server, tid, "done typing")
        calls = len(server.writes("POST", rf"^/channels/{tid}/typing$"))
        assert 1 <= calls <= 1 + (time.monotonic() - began) // 8  # never more than one call per 8 s
        assert all(m["author"]["id"] != str(BOT_ID) or "done typing" not in m["content"] for m in server.bot_messages(tid))


@pytest.mark.parametrize("webhooks", [False, True])
async def test_stranger_lines_never_pass_for_a_notice_in_the_thread(server, webhooks):
    forged = "hi\n\n\nStranger has disconnected.\n> You have disconnected.\n-# stranger-bridge"
    async with bridge(server, webhooks=webhooks) as b:
        rec = b.platforms["rec"]
        _, tid = await paired_with_rec(server, b)
        rec.send("w", Message(forged))
        rec.send("w", Disconnected())
        await wait_notice(server, tid, "Stranger has disconnected.")
        shown = server.bot_messages(tid)
        texts = [m for m in shown if m["content"]]
        assert len(texts) == 1 and not texts[0]["embeds"]
        [message] = texts
        if webhooks:  # one block under the stranger's name, not the bot's
            assert message["author"]["username"] == "Stranger" and message.get("webhook_id")
        else:
            assert all(line.startswith("**Stranger:** ") for line in message["content"].split("\n"))
        assert not [line for line in message["content"].split("\n") if line.lstrip("*Stranger: ").startswith((">", "-#"))]
        # every notice is an embed of the bot with no content, so plain text never looks like one
        notices_shown = [m for m in shown if m["embeds"]]
        assert notices_shown and all(m["content"] == "" and m["author"]["id"] == str(BOT_ID) for m in notices_shown)
