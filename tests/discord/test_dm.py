"""Direct messages with the bot: a whole chat when `dm = true`, an ephemeral refusal when it is off."""

from __future__ import annotations

from bridge.events import Connected, Disconnected, Message, Reason, Start, Typing

from .conftest import bridge
from .util import notices, open_chat, stranger_lines, wait_line, wait_notice


async def test_dm_chat_relays_both_ways_and_stops(server):
    async with bridge(server, dm=True) as b:
        rec = b.platforms["rec"]
        groups = {g["name"]: g for g in server.commands}
        assert sorted(groups["stranger"]["contexts"]) == [0, 1]  # offered in servers and in DMs with the bot
        assert groups["stranger-admin"]["contexts"] == [0]  # admin commands: in servers only
        alice = server.add_user("alice")
        dm = server.dm_channel(alice)
        start = await server.slash(alice, dm, "start", interests="tea")
        reply = await server.wait_until(lambda: server.replies(start))
        assert reply[0]["data"]["flags"] & 64  # ephemeral
        await wait_notice(server, dm, "Looking for someone")
        assert server.threads() == []  # a DM is its own room: no thread anywhere
        assert not server.writes("POST", r"/webhooks")  # DMs have no webhook: strangers speak as the bot

        rec.send("w", Start(interests=("tea",)))
        await rec.wait_for("w", Connected)
        await wait_notice(server, dm, "You both like")

        # DM → stranger, mentions neutralised like in a thread
        await server.user_message(dm, alice, "hi from a DM <@123456789012345678>")
        got = await rec.wait_for("w", Message)
        assert got.text == "hi from a DM @someone"
        await server.typing(dm, alice)
        await rec.wait_for("w", Typing)
        # stranger → DM, under the bold prefix (no webhook in DMs)
        rec.send("w", Typing())
        await server.wait_until(lambda: server.writes("POST", rf"^/channels/{dm}/typing$"))
        rec.send("w", Message("hello <@&42> @everyone"))
        name, content = await wait_line(server, dm, "hello")
        assert name == "strangerbot" and content.startswith("**Stranger:** hello ")
        assert "<@&42>" not in content and "@everyone" not in content
        write = server.writes("POST", rf"^/channels/{dm}/messages$")[-1]
        assert write.body["allowed_mentions"]["parse"] == []

        # /stranger stop in the DM: the stranger is told, the DM says so and is not "archived"
        stop = await server.slash(alice, dm, "stop")
        ended = await rec.wait_for("w", Disconnected)
        assert ended.reason in (Reason.STRANGER, Reason.USER)
        await wait_notice(server, dm, "You have disconnected.")
        assert server.replies(stop)[0]["data"]["flags"] & 64
        assert not server.writes("PATCH", rf"^/channels/{dm}$")
        # after the stop, DM text reaches no one (no second Message at the stranger)
        await server.user_message(dm, alice, "anyone?")
        # a new start in the same DM meets a new stranger, and then she can also use a server channel
        await server.slash(alice, dm, "start")
        await wait_notice(server, dm, "Looking for someone", count=2)
        rec.send("w2", Start())
        await rec.wait_for("w2", Connected)
        rec.send("w2", Disconnected())
        await wait_notice(server, dm, "Stranger has disconnected.")
        tid, _ = await open_chat(server, alice)  # the ended DM chat does not block a thread
        await wait_notice(server, tid, "Looking for someone")
        assert [e.text for e in rec.events("w", Message)] == ["hi from a DM @someone"]
        assert rec.events("w2", Message) == []  # "anyone?" was sent while idle: it reached no stranger
        for _, line in stranger_lines(server, dm):
            assert "alice" not in line


async def test_dm_refused_with_an_ephemeral_notice_when_off(server):
    async with bridge(server) as b:  # dm = false (the default)
        rec = b.platforms["rec"]
        group = next(g for g in server.commands if g["name"] == "stranger")
        assert group["contexts"] == [0]  # Discord does not offer /stranger in DMs...
        alice = server.add_user("alice")
        dm = server.dm_channel(alice)
        start = await server.slash(alice, dm, "start")  # ...but a stale registration is still refused
        [answer] = await server.wait_until(lambda: server.replies(start))
        assert answer["kind"] == "callback" and answer["type"] == 4
        assert answer["data"]["flags"] & 64
        assert answer["data"]["content"] == "Stranger chats are not available in direct messages here."
        # nothing was opened, and DM text goes nowhere
        await server.user_message(dm, alice, "hello?")
        rec.send("w", Start())
        tid, _ = await open_chat(server, alice)  # a later start in a server channel works and is paired
        await wait_notice(server, tid, "You're now chatting")
        await server.user_message(tid, alice, "from the thread")
        got = await rec.wait_for("w", Message)
        assert got.text == "from the thread"
        assert server.threads()[0]["id"] == str(tid) and len(server.threads()) == 1
        assert server.bot_messages(dm) == [] and notices(server, dm) == []
