"""The moderation log channel: reports with (opt-in) chat lines, no stranger-side identifiers, start-up checks."""

from __future__ import annotations

import logging

from bridge.events import Message, Start
from bridge.identity import user_key
from bridge.store import MemoryStore

from .conftest import bridge
from .fakediscord import MANAGE_GUILD, MEMBER_PERMISSIONS, snowflake
from .guarded import GuardedDiscord
from .test_admin import answer, pings_nobody
from .util import open_chat, until, wait_line, wait_notice


async def chat_with_rec(server, b, lines: int):
    """alice in a thread with the recording stranger "w"; `lines` lines each way, unique tokens."""
    rec = b.platforms["rec"]
    alice = server.add_user("alice")
    ta, _ = await open_chat(server, alice)
    rec.send("w", Start())
    await wait_notice(server, ta, "You're now chatting")
    for n in range(lines):
        await server.user_message(ta, alice, f"user-{n}")
        await rec.wait_for("w", lambda e, n=n: isinstance(e, Message) and e.text == f"user-{n}")
        rec.send("w", Message(f"stranger-{n} @everyone <@{alice}>"))
        await wait_line(server, ta, f"stranger-{n}")
    return alice, ta


async def test_report_posts_the_last_lines_when_enabled_and_users_are_told(server):
    log_channel = server.text_channels[1]
    async with bridge(server, mod_log_channel=log_channel, mod_log_lines=3) as b:
        alice, ta = await chat_with_rec(server, b, 3)
        helped = await answer(server, await server.slash(alice, ta, "help"))
        assert ("A report shares the last 3 lines of the chat (yours and the stranger's) with this bridge's "
                "moderators.") in helped["content"]
        reported = await answer(server, await server.slash(alice, ta, "report", reason="rude @everyone"))
        assert reported["content"].endswith("Your report shared the last 3 lines of the chat with this bridge's moderators.")
        [entry] = await server.wait_until(lambda: server.bot_messages(log_channel))
        lines = entry["content"].split("\n")
        assert lines[0] == f"**Report** by <@{alice}> in <#{ta}>. Reason: rude @\u200beveryone"
        assert lines[1] == "Last 3 lines of the reported chat:"
        # the last three lines, in order, attributed; stranger text neutralised (no ping, no pill)
        assert lines[2] == "`Stranger:` stranger-1 @\u200beveryone <\u200b@\u200b" + str(alice) + ">"
        assert lines[3] == "`Reporter:` user-2"
        assert lines[4] == "`Stranger:` stranger-2 @\u200beveryone <\u200b@\u200b" + str(alice) + ">"
        assert len(lines) == 5
        [post] = server.writes("POST", rf"^/channels/{log_channel}/messages$")
        assert pings_nobody(post.body["allowed_mentions"]) and post.body["flags"] & 4
        # nothing of the stranger's side: not its room, not its key, not its platform's name
        assert "rec/" not in entry["content"] and "rec:" not in entry["content"] and "w" not in lines[0]


async def test_report_without_lines_posts_only_the_report_and_promises_nothing(server):
    log_channel = server.text_channels[1]
    async with bridge(server, mod_log_channel=log_channel) as b:
        alice, ta = await chat_with_rec(server, b, 2)
        helped = await answer(server, await server.slash(alice, ta, "help"))
        assert "shares" not in helped["content"]
        reported = await answer(server, await server.slash(alice, ta, "report"))
        assert reported["content"] == "Reported. The chat ends; the thread says what happens next."
        [entry] = await server.wait_until(lambda: server.bot_messages(log_channel))
        assert entry["content"] == f"**Report** by <@{alice}> in <#{ta}>."
        assert b.platforms["dc"].modlog.lines_held() == 0  # no line was ever kept


async def test_startup_says_when_the_log_channel_is_unknown_and_the_platform_runs(server, caplog):
    missing = snowflake()
    with caplog.at_level(logging.INFO, logger="plugins.discord.modlog"):
        async with bridge(server, mod_log_channel=missing, mod_log_lines=5) as b:
            [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert error.getMessage().startswith(
                f"mod_log_channel {missing} cannot be written: unknown channel (deleted, or not in a server the bot is in)."
            )
            alice, ta = await chat_with_rec(server, b, 1)  # the platform runs
            reported = await answer(server, await server.slash(alice, ta, "report"))
            assert "shared" not in reported["content"]  # no lines are shared with a log that cannot be written
            await wait_notice(server, ta, "You reported")
            assert not server.writes("POST", rf"^/channels/{missing}/messages$")


async def test_startup_says_when_the_bot_may_not_send_in_the_log_channel(server, caplog):
    log_channel = server.text_channels[1]
    server.deny_bot(log_channel)
    with caplog.at_level(logging.INFO, logger="plugins.discord.modlog"):
        async with bridge(server, mod_log_channel=log_channel) as b:
            [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert error.getMessage() == (
                f"mod_log_channel {log_channel} cannot be written: the bot may not send messages there (missing View "
                "Channel or Send Messages). Reports and admin actions are NOT posted to a moderation log; the "
                "platform runs on."
            )
            alice, ta = await chat_with_rec(server, b, 1)
            await answer(server, await server.slash(alice, ta, "report"))
            await wait_notice(server, ta, "You reported")
            assert not server.writes("POST", rf"^/channels/{log_channel}/messages$")


async def test_a_writable_log_channel_is_reported_fine_at_startup(server, caplog):
    with caplog.at_level(logging.INFO, logger="plugins.discord.modlog"):
        async with bridge(server, mod_log_channel=server.text_channels[1]):
            assert [r.getMessage() for r in caplog.records] == [
                f"moderation log: channel {server.text_channels[1]} is writable"
            ]


async def test_the_cores_log_is_followed_without_subjects_and_without_repeating_own_posts(server, monkeypatch):
    monkeypatch.setattr(GuardedDiscord, "options", {"modlog_every": 0.05})
    log_channel = server.text_channels[1]
    store = MemoryStore()
    async with bridge(server, store=store, mod_log_channel=log_channel) as b:
        sanctions = b.moderator.sanctions
        await until(lambda: ("platform:dc", "modlog:seq") in store._kv)  # the follower started from here
        boss, victim = server.add_user("boss", permissions=MEMBER_PERMISSIONS | MANAGE_GUILD), server.add_user("v")
        await answer(server, await server.admin(boss, server.text_channels[0], "ban", user=victim, duration="1h"))
        await server.wait_until(lambda: server.bot_messages(log_channel))  # posted when made
        # what the core records from elsewhere: an operator's ban (stranger-bridge mod), reports by web
        # users that add up to a strike and a ban, and a report by a Discord user (posted by its platform)
        await sanctions.ban("web:00000000000000aa", 3600, "flooding")
        for n in range(3):
            await sanctions.report(f"web:{n:016x}", "web:00000000000000bb", "rude")
        await sanctions.report(user_key("discord", victim), "web:00000000000000cc")
        await sanctions.ban("web:00000000000000dd", None, "marker")
        entries = await server.wait_until(
            lambda: (found := [m["content"] for m in server.bot_messages(log_channel)]) and "marker" in found[-1] and found
        )
        assert entries == [
            f"**Admin** <@{boss}> on “Test Guild”: banned <@{victim}> for 1 h.",
            "**Ban** by the bridge operator: flooding.",
            "**Report** by a user of web (a stranger chat there was reported): rude.",
            "**Report** by a user of web (a stranger chat there was reported): rude.",
            "**Report** by a user of web (a stranger chat there was reported): rude.",
            "**Strike**: someone reported by several people got a strike: strike 1.",
            "**Ban** after strikes: reported by several people (strike 1).",
            "**Ban** by the bridge operator: marker.",
        ]
        subjects = [f"00000000000000{x}" for x in ("aa", "bb", "cc", "dd")] + [user_key("discord", victim)[8:]]
        assert not any(key in e for key in subjects for e in entries) and not any("web:" in e for e in entries)
    async with bridge(server, store=store, mod_log_channel=log_channel) as b:  # a restart repeats nothing
        await b.moderator.sanctions.ban("web:00000000000000ee", None, "after restart")
        await server.wait_until(lambda: "after restart" in server.bot_messages(log_channel)[-1]["content"])
        assert len(server.bot_messages(log_channel)) == len(entries) + 1
