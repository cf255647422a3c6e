"""Moderation on a real Synapse: policy lists (user and server-glob rules), admin commands and power levels,
the moderation log room, the per-user session cap; and every new config key documented."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

from nio import RoomCreateResponse, RoomPreset, RoomPutStateResponse, RoomRedactResponse

from bridge.events import Connected, Message, Report, Start
from plugins.matrix.config import MatrixConfig
from tests.helpers import running

from .conftest import bridge_config, notice_with

ROOT = Path(__file__).resolve().parents[2]
USER_RULE = "m.policy.rule.user"
SERVER_RULE = "m.policy.rule.server"


async def public_room(user, initial_state=()) -> str:
    resp = await user.client.room_create(preset=RoomPreset.public_chat, initial_state=list(initial_state))
    assert isinstance(resp, RoomCreateResponse), resp
    return resp.room_id


def rule(kind: str, key: str, entity, reason: str = "") -> dict:
    return {"type": kind, "state_key": key, "content": {"entity": entity, "recommendation": "m.ban", "reason": reason}}


async def put(user, rid: str, kind: str, key: str, content: dict) -> str:
    resp = await user.client.room_put_state(rid, kind, content, state_key=key)
    assert isinstance(resp, RoomPutStateResponse), resp
    return resp.event_id


async def until(check, timeout: float = 20.0) -> None:
    """Wait for a condition of the bridge (a positive check; never a sleep before a negative one)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def test_policy_list_user_and_server_glob_rules(matrix, synapse, caplog):
    caplog.set_level(logging.INFO)
    bot = await matrix.account()
    me = bot["user_id"]
    mod = await matrix.user("mod")
    eve = await matrix.user("eve")
    frank = await matrix.user("frank")
    policy = await public_room(mod, [
        rule(USER_RULE, "r1", "@eve*:localhost", "spam"),
        rule(USER_RULE, "bad1", 5),
        rule(SERVER_RULE, "bad2", "not a/server"),
    ])
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], policy_rooms=[policy])
    async with running(cfg) as b:
        mx = b.platforms["mx"]
        assert mx.moderation.lists.banned(eve.user_id) is not None
        # A banned user's invite is refused with a reason.
        re_ = await eve.create_room([me])
        left = await eve.wait_member(re_, me, "leave")
        assert "banned" in left["content"].get("reason", "")

        rf = await frank.create_room([me])
        await frank.wait_message(rf, me, notice_with("!stranger start"))
        # A user rule arrives while running: frank's start is refused with a plain notice.
        await put(mod, policy, USER_RULE, "r2", {"entity": "@frank*:localhost", "recommendation": "m.ban", "reason": "flood"})
        await until(lambda: mx.moderation.lists.banned(frank.user_id) is not None)
        await frank.send(rf, "!stranger start")
        refused = await frank.wait_message(rf, me, notice_with("You are banned"))
        assert "flood" in refused["content"]["body"] and refused["content"]["m.mentions"] == {}
        # The rule emptied (removed): frank starts again.
        await put(mod, policy, USER_RULE, "r2", {})
        await until(lambda: mx.moderation.lists.banned(frank.user_id) is None)
        await frank.send(rf, "!stranger start")
        await frank.wait_message(rf, me, notice_with("Looking for someone"))
        await frank.send(rf, "!stranger stop")
        await frank.wait_message(rf, me, notice_with("You have disconnected"))

        # A server glob: every user of a matching homeserver.
        sid = await put(mod, policy, SERVER_RULE, "s1", {"entity": "loc?l*", "recommendation": "m.ban"})
        await until(lambda: mx.moderation.lists.banned(frank.user_id) is not None)
        before = len(frank.messages(rf, me))
        await frank.send(rf, "!stranger start")
        await frank.wait_for(lambda: any("You are banned" in e["content"].get("body", "") for e in frank.messages(rf, me)[before:]))
        # A malformed rule arriving live is ignored (logged once) and the sync goes on.
        await put(mod, policy, USER_RULE, "bad3", {"entity": ["x"], "recommendation": "m.ban"})
        # Redacting the server rule lifts it.
        resp = await mod.client.room_redact(policy, sid)
        assert isinstance(resp, RoomRedactResponse), resp
        await until(lambda: mx.moderation.lists.banned(frank.user_id) is None)
        await frank.send(rf, "!stranger start")
        await frank.wait_for(lambda: sum("Looking for someone" in e["content"].get("body", "") for e in frank.messages(rf, me)) == 2)
        ignored = [r for r in caplog.records if "policy rule in" in r.getMessage()]
        assert len(ignored) == 3, [r.getMessage() for r in ignored]
        assert mx.moderation.lists.banned(eve.user_id) is not None  # untouched by the other changes


async def test_admin_commands_power_levels_mod_log_and_report_lines(matrix, synapse):
    bot = await matrix.account()
    me = bot["user_id"]
    mod = await matrix.user("mod")
    low = await matrix.user("low")
    victim = await matrix.user("victim")
    mgmt = await public_room(mod)
    assert not hasattr(await low.client.join(mgmt), "status_code")
    logroom = await public_room(mod)
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], management_room=mgmt,
                        mod_log_room=logroom, mod_log_lines=5)
    async with running(cfg) as b:
        sanctions = b.moderator.sanctions
        # Below power level 50: refused, nothing changes.
        await low.send(mgmt, f"!stranger-admin ban {victim.user_id} 1h nope")
        no = await low.wait_message(mgmt, me, notice_with("power level 50"))
        assert no["content"]["m.mentions"] == {}
        assert await sanctions.listing() == []
        await mod.send(mgmt, f"!stranger-admin ban {victim.user_id} 1h spamming")
        yes = await mod.wait_message(mgmt, me, notice_with("Banned"))
        assert yes["content"]["m.mentions"] == {} and "1 h" in yes["content"]["body"]
        logged = await mod.wait_message(logroom, me, notice_with("banned for 1 h"))
        assert logged["content"]["m.mentions"] == {}

        rv = await victim.create_room([me])
        help_ = await victim.wait_message(rv, me, notice_with("!stranger start"))
        assert "last 5 lines" in help_["content"]["body"]
        await victim.send(rv, "!stranger start")
        refused = await victim.wait_message(rv, me, notice_with("You are banned"))
        assert "Reason: spamming" in refused["content"]["body"]
        # An admin command outside the management room is refused, even from an admin's room.
        await victim.send(rv, "!stranger-admin unban " + victim.user_id)
        await victim.wait_message(rv, me, notice_with("only accepted in the bridge's management room"))
        assert [k for k, ban, _ in await sanctions.listing() if ban is not None]

        await mod.send(mgmt, f"!stranger-admin strikes {victim.user_id}")
        await mod.wait_message(mgmt, me, notice_with("0 strikes, banned for"))
        await mod.send(mgmt, "!stranger-admin stats")
        await mod.wait_message(mgmt, me, notice_with("Bans in force: 1"))
        await mod.send(mgmt, "!stranger-admin policy")
        await mod.wait_message(mgmt, me, notice_with("at most 3 live chats per user"))
        await mod.send(mgmt, f"!stranger-admin unban {victim.user_id}")
        await mod.wait_message(mgmt, me, notice_with(f"Unbanned {victim.user_id}"))
        await mod.wait_message(logroom, me, notice_with("unbanned by a moderator"))

        # A server glob ban reaches the start check (the core keys users by a hash of the mxid).
        await mod.send(mgmt, "!stranger-admin ban *:local*")
        await mod.wait_message(mgmt, me, notice_with("Banned *:local* until unbanned"))
        await victim.send(rv, "!stranger start")
        await victim.wait_for(lambda: sum("You are banned" in e["content"].get("body", "") for e in victim.messages(rv, me)) == 2)
        await mod.send(mgmt, "!stranger-admin unban *:local*")
        await mod.wait_message(mgmt, me, notice_with("Unbanned *:local*"))

        # A report: posted to the log room with the chat's last lines (enabled), no mentions.
        rec = b.platforms["rec"]
        await victim.send(rv, "!stranger start")
        await victim.wait_message(rv, me, notice_with("Looking for someone"))
        rec.send("r", Start())
        await rec.wait_for("r", Connected, timeout=20)
        await victim.wait_message(rv, me, notice_with("You're now chatting"))
        await victim.send(rv, "line-from-user-7731")
        await rec.wait_for("r", Message, timeout=20)
        rec.send("r", Message("line-from-stranger-4410"))
        await victim.wait_message(rv, me, "line-from-stranger-4410")
        await victim.send(rv, "!stranger report")
        told = await victim.wait_message(rv, me, notice_with("Your report went to the moderators"))
        assert "last 5 lines" in told["content"]["body"]
        report = await mod.wait_message(logroom, me, notice_with("Report:"))
        body = report["content"]["body"]
        assert report["content"]["m.mentions"] == {} and report["content"]["msgtype"] == "m.notice"
        assert "User: line-from-user-7731" in body and "Stranger: line-from-stranger-4410" in body
        assert victim.user_id not in body and rv not in body


async def test_session_cap_per_mxid(matrix, synapse):
    bot = await matrix.account()
    me = bot["user_id"]
    alice = await matrix.user("alice")
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], max_sessions_per_user=1)
    async with running(cfg):
        ra = await alice.create_room([me])
        rb = await alice.create_room([me])
        await alice.wait_message(ra, me, notice_with("!stranger start"))
        await alice.wait_message(rb, me, notice_with("!stranger start"))
        await alice.send(ra, "!stranger start")
        await alice.wait_message(ra, me, notice_with("Looking for someone"))
        await alice.send(rb, "!stranger start")
        capped = await alice.wait_message(rb, me, notice_with("You already have 1 chats running"))
        assert capped["content"]["m.mentions"] == {}
        await alice.send(ra, "!stranger stop")
        await alice.wait_message(ra, me, notice_with("You have disconnected"))
        await alice.send(rb, "!stranger start")
        await alice.wait_message(rb, me, notice_with("Looking for someone"))


async def test_unwritable_mod_log_room_is_said_at_start_up(matrix, synapse, caplog):
    caplog.set_level(logging.INFO)
    bot = await matrix.account()
    me = bot["user_id"]
    mod = await matrix.user("mod")
    alice = await matrix.user("alice")
    closed = await mod.create_room()  # private: the bot cannot join
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], mod_log_room=closed, mod_log_lines=3)
    async with running(cfg):
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and "mod_log_room" in r.getMessage()]
        assert len(errors) == 1 and "cannot be written" in errors[0].getMessage()
        ra = await alice.create_room([me])
        help_ = await alice.wait_message(ra, me, notice_with("!stranger start"))  # the platform runs on
        assert "moderators" not in help_["content"]["body"]  # no log: help promises nothing about reports


def test_every_matrix_key_is_documented():
    readme = (ROOT / "plugins/matrix/README.md").read_text()
    example = (ROOT / "config.example.toml").read_text()
    section = example[example.index("# [platforms.matrix]"):]
    section = section[: section.find("\n# [", 1)] if "\n# [" in section[1:] else section
    for key in MatrixConfig.model_fields:
        if key in ("plugin", "backend"):
            continue
        assert f"| `{key}` |" in readme, f"plugins/matrix/README.md does not document {key}"
        assert re.search(rf"^#\s*{key} =", section, re.M) or f"{key} = {{" in section, f"config.example.toml lacks {key}"


def test_rule_parsing_and_power_levels_table():
    from plugins.matrix.moderation import CREATOR_LEVEL, power_level
    from plugins.matrix.policylists import MalformedRule, parse_rule

    ok = parse_rule("user", {"entity": "@sp?m*:evil.org", "recommendation": "m.ban", "reason": "x"}, "$1")
    assert ok is not None and ok.matches("@spam42:evil.org") and ok.matches("@spXm:evil.org")
    assert not ok.matches("@spam42:evil.org.example") and not ok.matches("@sp:evil.org")
    server = parse_rule("server", {"entity": "*.Evil.org", "recommendation": "org.matrix.mjolnir.ban"}, "$2")
    assert server is not None and server.matches("@a:chat.evil.org") and not server.matches("@a:evil.org")
    assert parse_rule("user", {}, "$3") is None  # emptied: lifted
    assert parse_rule("user", {"entity": "@a:b", "recommendation": "m.mute"}, "$4") is None  # not a ban
    for kind, entity in [("user", 5), ("user", ""), ("user", "no-at:b"), ("user", "@nocolon"), ("server", "a b"),
                         ("server", "a/b"), ("user", "@" + "a" * 300 + ":b")]:
        try:
            parse_rule(kind, {"entity": entity, "recommendation": "m.ban"}, "$5")
        except MalformedRule:
            continue
        raise AssertionError(f"{kind} {entity!r} was accepted")
    levels = {"users": {"@op:s": 50, "@half:s": 49}, "users_default": 0}
    assert power_level(levels, "@op:s") == 50 and power_level(levels, "@half:s") == 49 and power_level(levels, "@x:s") == 0
    v12 = {"sender": "@founder:s", "content": {"room_version": "12", "additional_creators": ["@co:s"]}}
    v10 = {"sender": "@founder:s", "content": {"room_version": "10"}}
    assert power_level(levels, "@founder:s", v12) == CREATOR_LEVEL == power_level(levels, "@co:s", v12)
    assert power_level(levels, "@founder:s", v10) == 0  # before v12 the creator is only what `users` says


async def test_the_cores_log_is_followed_into_the_log_room_without_subjects_or_repeats(matrix, synapse, monkeypatch):
    from plugins.matrix.platform import MatrixPlatform

    monkeypatch.setattr(MatrixPlatform, "modlog_every", 0.05)
    bot = await matrix.account()
    me = bot["user_id"]
    mod = await matrix.user("mod")
    victim = await matrix.user("victim")
    mgmt = await public_room(mod)
    logroom = await public_room(mod)
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], management_room=mgmt, mod_log_room=logroom)
    async with running(cfg) as b:
        sanctions = b.moderator.sanctions
        # posted by the Matrix platform when made: not again from the core's log
        await mod.send(mgmt, f"!stranger-admin ban {victim.user_id} 1h spamming")
        await mod.wait_message(logroom, me, notice_with("banned for 1 h"))
        # recorded elsewhere: an operator's ban, reports by web users adding up to a strike and a ban
        await sanctions.ban("web:00000000000000aa", 3600, "flooding")
        for n in range(3):
            await sanctions.report(f"web:{n:016x}", "web:00000000000000bb", "rude")
        await sanctions.ban("web:00000000000000dd", None, "marker-5521")
        await mod.wait_message(logroom, me, notice_with("marker-5521"))
        bodies = [e["content"]["body"] for e in mod.messages(logroom, me)]
        assert bodies[1:] == [
            "Ban by the bridge operator: flooding.",
            "Report by a user of web (a stranger chat there was reported): rude.",
            "Report by a user of web (a stranger chat there was reported): rude.",
            "Report by a user of web (a stranger chat there was reported): rude.",
            "Strike: someone reported by several people got a strike: strike 1.",
            "Ban after strikes: reported by several people (strike 1).",
            "Ban by the bridge operator: marker-5521.",
        ], bodies
        assert "banned for 1 h" in bodies[0]
        assert not any("00000000000000" in body or "web:" in body for body in bodies)
        assert all(e["content"]["m.mentions"] == {} for e in mod.messages(logroom, me))
