"""The whole flow with the real discord.py: /stranger start → thread → paired through the hub → both ways."""

from __future__ import annotations

from bridge.events import Connected, Disconnected, Message, Start, Typing

from .conftest import bridge
from .fakediscord import BOT_ID
from .util import notices, open_chat, stranger_lines, wait_line, wait_notice

ZW = "\u200b"


async def test_two_threads_meet_talk_type_next_and_stop(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice, bob = server.add_user("alice"), server.add_user("bob")
        ta, start_a = await open_chat(server, alice, interests="cats, Dogs")
        thread = server.channels[ta]
        assert thread["name"].startswith("Stranger chat #") and thread["type"] == 12  # private by default
        assert "alice" not in thread["name"]
        reply = await server.wait_until(lambda: len(server.replies(start_a)) >= 2 and server.replies(start_a))
        assert reply[0]["type"] == 5 and reply[0]["data"]["flags"] & 64  # deferred, ephemeral
        assert reply[1]["flags"] & 64 and f"<#{ta}>" in reply[1]["content"]
        await wait_notice(server, ta, "Looking for someone")
        first = server.bot_messages(ta)[0]
        labels = [c["label"] for row in first["components"] for c in row["components"]]
        assert labels == ["Next", "Stop", "Report"]

        tb, _ = await open_chat(server, bob, cid=server.text_channels[1], interests="cats")
        await wait_notice(server, ta, "You're now chatting with a random stranger")
        await wait_notice(server, tb, "You both like “cats”")

        # alice → bob through the hub, her mention of someone replaced by a neutral word
        await server.user_message(ta, alice, "hello <@123456789012345678> from <#900000000000000200>")
        name, content = await wait_line(server, tb, "hello")
        assert (name, content) == ("Stranger", f"hello @{ZW}someone from #some-channel")
        hook_post = server.writes("POST", r"^/webhooks/\d+/tok")[-1]
        assert hook_post.query == {"thread_id": str(tb), "wait": "true"}
        assert hook_post.body["allowed_mentions"]["parse"] == [] and hook_post.body["flags"] & 4

        # bob types: alice's thread shows the typing indicator
        await server.typing(tb, bob)
        await server.wait_until(lambda: server.writes("POST", rf"^/channels/{ta}/typing$"))
        await server.user_message(tb, bob, "hi alice-side")
        await wait_line(server, ta, "hi alice-side")

        # one webhook per parent channel, reused for every thread and message
        await server.user_message(ta, alice, "second")
        await wait_line(server, tb, "second")
        assert len(server.webhooks) == 2 and len(server.writes("POST", r"/webhooks$")) == 2

        # alice clicks Next on her first message: bob's stranger left, his thread is archived and locked
        await server.click(alice, first, "stranger:next")
        await wait_notice(server, tb, "Stranger has disconnected.")
        await server.wait_until(lambda: server.channels[tb]["thread_metadata"]["locked"])
        assert server.channels[tb]["thread_metadata"]["archived"]
        await wait_notice(server, ta, "Looking for someone", count=2)
        assert not server.channels[ta]["thread_metadata"]["archived"]

        # a recording (web-like) room meets alice through the hub
        rec.send("w1", Start(interests=("cats",)))
        await rec.wait_for("w1", Connected)
        rec.send("w1", Message("from the web"))
        await wait_line(server, ta, "from the web")
        await server.user_message(ta, alice, "back to web")
        assert (await rec.wait_for("w1", Message)).text == "back to web"
        await server.typing(ta, alice)
        await rec.wait_for("w1", Typing)
        # the stranger stops: alice's thread says so and is archived
        rec.send("w1", Disconnected())
        await wait_notice(server, ta, "Stranger has disconnected.")
        await server.wait_until(lambda: server.channels[ta]["thread_metadata"]["locked"])

        # bob starts again (new thread), meets the web room, and stops from Discord
        tb2, _ = await open_chat(server, bob)
        assert tb2 != tb
        rec.send("w2", Start())
        await rec.wait_for("w2", Connected)
        await wait_notice(server, tb2, "You're now chatting")
        await server.slash(bob, tb2, "stop")
        await rec.wait_for("w2", Disconnected)
        await wait_notice(server, tb2, "You have disconnected.")
        await server.wait_until(lambda: server.channels[tb2]["thread_metadata"]["locked"])

        # what strangers saw never carried a Discord id or name
        for tid in (ta, tb, tb2):
            for _, content in stranger_lines(server, tid):
                assert "alice" not in content.replace("alice-side", "") and "bob" not in content
                assert "9000000000" not in content and "12000000" not in content
        # our own webhook and bot messages were never relayed back (no loops)
        relayed = [e.text for e in rec.events("w1", Message)]
        assert relayed == ["back to web"]
        assert all(m["author"]["id"] != str(BOT_ID) or m["embeds"] or m["content"] for m in server.bot_messages(ta))
        assert notices(server, ta)


async def test_spy_mode_two_named_strangers(server):
    from bridge.events import Mode

    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice = server.add_user("alice")
        known = {t["id"] for t in server.threads()}
        await server.slash(alice, server.text_channels[0], "ask", question="cats or <@1>?")
        [thread] = await server.wait_until(lambda: [t for t in server.threads() if t["id"] not in known])
        tid = int(thread["id"])
        rec.send("s1", Start(mode=Mode.ANSWER))
        rec.send("s2", Start(mode=Mode.ANSWER))
        await wait_notice(server, tid, "watching two strangers")
        await rec.wait_for("s1", Connected)
        rec.send("s1", Message("cats"))
        rec.send("s2", Message("dogs"))
        await wait_line(server, tid, "dogs")
        names = {name for name, content in stranger_lines(server, tid) if content in ("cats", "dogs")}
        assert names == {"Stranger 1", "Stranger 2"}
        # the spy only watches: her message is not sent, and she is told so
        await server.user_message(tid, alice, "hello?")
        await wait_notice(server, tid, "You're the spy")
