"""Commands and fallbacks the flow test does not reach: report, start-in-thread, no webhook permission, limits, sync."""

from __future__ import annotations

from bridge.events import Connected, Disconnected, Message, Start
from tests.helpers import running

from .conftest import bridge, bridge_config
from .fakediscord import APP_ID, GUILD_ID
from .util import notices, open_chat, paired_with_rec, stranger_lines, wait_line, wait_notice


async def test_report_ends_the_chat_and_never_pairs_the_two_again(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice, bob = server.add_user("alice"), server.add_user("bob")
        ta, _ = await open_chat(server, alice)
        tb, _ = await open_chat(server, bob, cid=server.text_channels[1])
        await wait_notice(server, tb, "You're now chatting")
        report = await server.slash(alice, ta, "report")
        [answer] = await server.wait_until(lambda: server.replies(report))
        assert answer["data"]["flags"] & 64 and "Reported" in answer["data"]["content"]
        await wait_notice(server, tb, "Stranger has disconnected.")
        await wait_notice(server, ta, "You reported")
        await server.wait_until(lambda: server.channels[ta]["thread_metadata"]["locked"])
        # both look again, in new threads: they wait instead of meeting each other
        ta2, _ = await open_chat(server, alice)
        tb2, _ = await open_chat(server, bob)
        await wait_notice(server, ta2, "Looking for someone")
        await wait_notice(server, tb2, "Looking for someone")
        # two more strangers arrive: each of them meets one of the two (had alice met bob, w would meet v)
        rec.send("w", Start())
        rec.send("v", Start())
        await rec.wait_for("w", Connected)
        await rec.wait_for("v", Connected)
        await wait_notice(server, ta2, "You're now chatting")
        await wait_notice(server, tb2, "You're now chatting")
        rec.send("w", Message("from-w"))
        rec.send("v", Message("from-v"))
        lines = lambda tid: [c for _, c in stranger_lines(server, tid)]  # noqa: E731
        await server.wait_until(lambda: len(lines(ta2)) == 1 and len(lines(tb2)) == 1)
        assert sorted(lines(ta2) + lines(tb2)) == ["from-v", "from-w"]  # each met one of them, not each other


async def test_start_inside_the_session_thread_means_next(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice, ta = await paired_with_rec(server, b, "w")
        await server.slash(alice, ta, "start", interests="tea")
        await rec.wait_for("w", Disconnected)
        await wait_notice(server, ta, "Looking for someone", count=2)
        rec.send("w2", Start(interests=("tea",)))
        await rec.wait_for("w2", Connected)
        await wait_notice(server, ta, "You both like “tea”")
        assert len(server.threads()) == 1 and not server.channels[ta]["thread_metadata"]["archived"]
        # someone else's /stranger start in alice's thread does not touch her chat
        bob = server.add_user("bob")
        intruder = await server.slash(bob, ta, "start")
        [answer] = await server.wait_until(lambda: server.replies(intruder))
        assert answer["data"]["flags"] & 64 and "belongs to someone else" in answer["data"]["content"]
        await server.user_message(ta, alice, "still here")
        assert (await rec.wait_for("w2", Message)).text == "still here"


async def test_without_webhook_permission_strangers_speak_as_the_bot(server):
    server.webhooks_forbidden = True
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        _, ta = await paired_with_rec(server, b, "w")
        rec.send("w", Message("one"))
        rec.send("w", Message("two @everyone"))
        await wait_line(server, ta, "two")
        assert stranger_lines(server, ta) == [("strangerbot", "**Stranger:** one"),
                                              ("strangerbot", "**Stranger:** two @\u200beveryone")]
        assert not server.writes("POST", rf"^/webhooks/(?!{APP_ID}/)")  # no channel webhook (follow-ups aside)
        # the refusal is remembered: the webhook list was asked for once, not per message
        assert len(server.writes("GET", r"/webhooks$")) == 1


async def test_user_text_longer_than_allowed_is_refused_with_a_notice(server):
    async with running(bridge_config(server), max_message_length=20) as b:
        rec = b.platforms["rec"]
        alice, ta = await paired_with_rec(server, b, "w")
        await server.user_message(ta, alice, "x" * 21)
        await wait_notice(server, ta, "too long")
        await server.user_message(ta, alice, "short")
        assert (await rec.wait_for("w", Message)).text == "short"
        assert [m.text for m in rec.events("w", Message)] == ["short"]
        assert [n for n in notices(server, ta) if "too long" in n] == [
            "Your message is too long (21 characters; the limit is 20). It was not sent."
        ]


async def test_commands_sync_to_listed_guilds_only(server):
    async with bridge(server, command_scope="guilds", guilds=[GUILD_ID]):
        puts = server.writes("PUT", r"/commands$")
        assert [r.path for r in puts] == [f"/applications/{server_app()}/guilds/{GUILD_ID}/commands"]
        groups = {g["name"]: g for g in puts[0].body}
        assert set(groups) == {"stranger", "stranger-admin"}
        group = groups["stranger"]
        assert {o["name"] for o in group["options"]} == {"start", "next", "stop", "ask", "answer", "report", "help"}


def server_app() -> int:
    from .fakediscord import APP_ID

    return APP_ID
