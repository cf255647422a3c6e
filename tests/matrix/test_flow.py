"""End to end on a real Synapse: invite → join → start → paired through the hub → relay, typing, next, stop."""

from __future__ import annotations

from bridge.events import Connected, Disconnected, Message, Start, Typing
from tests.helpers import running

from .conftest import bridge_config

NOTICE = "m.notice"


def is_notice(text: str):
    return lambda c: c.get("msgtype") == NOTICE and text in c.get("body", "")


async def test_invite_pair_relay_typing_next_stop(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    bob = await matrix.user("bob")
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[alice.user_id, ":localhost"])
    async with running(cfg) as b:
        rec = b.platforms["rec"]
        me = bot["user_id"]
        ra = await alice.create_room([me])
        rb = await bob.create_room([me])
        await alice.wait_member(ra, me, "join")
        help_a = await alice.wait_message(ra, me, is_notice("!stranger start"))
        assert help_a["content"]["m.mentions"] == {}
        await bob.wait_message(rb, me, is_notice("!stranger start"))

        await alice.send(ra, "!stranger start cats")
        await alice.wait_message(ra, me, is_notice("Looking for someone"))
        await bob.send(rb, "!stranger start cats")
        await alice.wait_message(ra, me, is_notice("You're now chatting with a random stranger"))
        connected = await bob.wait_message(rb, me, is_notice("You're now chatting"))
        assert "“cats”" in connected["content"]["body"]

        # alice → bob, escaped and attributed
        await alice.send(ra, "hello <b>bold</b> & @room")
        got = await bob.wait_message(rb, me, "hello")
        assert got["content"] == {
            "msgtype": "m.text",
            "body": "Stranger: hello <b>bold</b> & @room",
            "format": "org.matrix.custom.html",
            "formatted_body": "<b>Stranger:</b> hello &lt;b&gt;bold&lt;/b&gt; &amp; @room",
            "m.mentions": {},
        }
        # bob → alice
        await bob.send(rb, "hi alice-side")
        await alice.wait_message(ra, me, "Stranger: hi alice-side")

        # typing both ways: bob types → the bot types in alice's room; stops → cleared
        await bob.set_typing(rb, True)
        await alice.wait_for(lambda: me in alice.typing[ra])
        await bob.set_typing(rb, False)
        await alice.wait_for(lambda: me not in alice.typing[ra])

        # next from bob: alice is told, bob searches again and meets the recording platform's user
        await bob.send(rb, "!stranger next")
        await alice.wait_message(ra, me, is_notice("Stranger has disconnected"))
        await bob.wait_message(rb, me, is_notice("You have disconnected"))
        rec.send("r", Start())
        await rec.wait_for("r", Connected, timeout=20)
        rec.send("r", Typing())
        await bob.wait_for(lambda: me in bob.typing[rb])
        rec.send("r", Message("from the recording side"))
        await bob.wait_message(rb, me, "Stranger: from the recording side")
        await bob.wait_for(lambda: me not in bob.typing[rb])
        await bob.send(rb, "to the recording side")
        got = await rec.wait_for("r", Message, timeout=20)
        assert got.text == "to the recording side"

        # stop from the Matrix side reaches the other platform
        await bob.send(rb, "!stranger stop")
        await rec.wait_for("r", Disconnected, timeout=20)
        await bob.wait_message(rb, me, is_notice("You have disconnected"))
        # and the other way: the recording user stops, the Matrix user is told
        await bob.send(rb, "!stranger start")
        rec.send("r2", Start())
        await bob.wait_message(rb, me, lambda c: c.get("body", "").count("You're now chatting") >= 1 and c is not None)
        await rec.wait_for("r2", Connected, timeout=20)
        rec.send("r2", Disconnected())
        await bob.wait_for(
            lambda: len([e for e in bob.messages(rb, me) if "Stranger has disconnected" in e["content"]["body"]]) >= 1
        )
        # every event the bot sent carries an empty m.mentions
        for rid, user in ((ra, alice), (rb, bob)):
            for e in user.messages(rid, me):
                assert e["content"]["m.mentions"] == {}, e


async def test_spy_mode_and_report(matrix, synapse):
    from bridge.events import Mode

    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])) as b:
        rec = b.platforms["rec"]
        rid = await alice.create_room([me])
        await alice.wait_message(rid, me, is_notice("!stranger start"))
        await alice.send(rid, "!stranger ask cats or dogs?")
        rec.send("x", Start(mode=Mode.ANSWER))
        rec.send("y", Start(mode=Mode.ANSWER))
        await alice.wait_message(rid, me, is_notice("You're now watching two strangers discuss your question"))
        await rec.wait_for("x", Connected, timeout=20)
        rec.send("x", Message("cats <3"))
        got = await alice.wait_message(rid, me, "cats <3")
        label = got["content"]["body"].split(":")[0]
        assert label in ("Stranger 1", "Stranger 2")
        assert got["content"]["formatted_body"] == f"<b>{label}:</b> cats &lt;3"
        await alice.send(rid, "spies cannot talk")
        await alice.wait_message(rid, me, is_notice("You're the spy"))
        await alice.send(rid, "!stranger report")
        await alice.wait_message(rid, me, is_notice("You reported"))
        await alice.send(rid, "after the report")  # a DM while idle: starts a new search
        looking = [e for e in alice.messages(rid, me) if "Looking for someone" in e["content"]["body"]]
        await alice.wait_for(lambda: len([e for e in alice.messages(rid, me) if "Looking for someone" in e["content"]["body"]]) > len(looking))
