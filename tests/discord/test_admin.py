"""/stranger-admin: visible to Manage Server only, checked again on every call; bans, strikes, policy, settings, stats."""

from __future__ import annotations

import copy
import re
import time

from bridge.events import Connected, Disconnected, Message, Start
from bridge.identity import user_key
from bridge.store import MemoryStore
from plugins.discord.admin import REFUSED

from .conftest import bridge
from .fakediscord import ADMINISTRATOR, GUILD_ID, MANAGE_GUILD, MEMBER_PERMISSIONS, FakeDiscord
from .util import open_chat, paired_with_rec, stranger_lines, wait_notice



def pings_nobody(allowed: dict) -> bool:
    return allowed.get("parse") == [] and not allowed.get("users") and not allowed.get("roles") and not allowed.get("replied_user")


async def answer(server: FakeDiscord, payload: dict) -> dict:
    """The one (ephemeral, mention-free) answer to an interaction; its data."""
    [reply] = await server.wait_until(lambda: server.replies(payload))
    data = reply.get("data") or reply
    assert data["flags"] & 64, "every /stranger-admin answer is ephemeral"
    assert pings_nobody(data["allowed_mentions"])
    return data


def admin_user(server: FakeDiscord, name: str = "admin", bits: int = MANAGE_GUILD) -> int:
    return server.add_user(name, permissions=MEMBER_PERMISSIONS | bits)


async def test_the_group_is_published_for_manage_server_only_in_servers(server):
    async with bridge(server):
        group = next(c for c in server.commands if c["name"] == "stranger-admin")
        assert group["default_member_permissions"] == str(MANAGE_GUILD)
        assert group["contexts"] == [0]
        subs = {o["name"]: o for o in group["options"]}
        assert set(subs) == {"ban", "unban", "strikes", "stats", "settings", "policy"}
        assert {o["name"] for o in subs["policy"]["options"]} == {"show", "add-word", "remove-word", "links", "invites"}
        ordinary = next(c for c in server.commands if c["name"] == "stranger")
        assert ordinary.get("default_member_permissions") is None  # /stranger stays for everyone


async def test_a_member_without_manage_server_is_refused_and_nothing_changes(server):
    store = MemoryStore()
    log_channel = server.text_channels[1]
    async with bridge(server, store=store, mod_log_channel=log_channel) as b:
        member, victim = server.add_user("member"), server.add_user("victim")
        cid = server.text_channels[0]
        before = copy.deepcopy(store._kv)
        calls = [
            ("ban",), ("unban",), ("strikes",), ("stats",), ("settings",),
            ("policy", "show"), ("policy", "add-word"), ("policy", "remove-word"), ("policy", "links"), ("policy", "invites"),
        ]  # fmt: skip
        options = {
            "ban": {"user": victim, "duration": "1d", "reason": "x"}, "unban": {"user": victim}, "strikes": {"user": victim},
            "settings": {"only_guild": True, "min_account_age": "30d"}, "add-word": {"word": "zebra", "action": "end"},
            "remove-word": {"word": "zebra"}, "links": {"action": "block"}, "invites": {"action": "allow"},
        }  # fmt: skip
        for path in calls:  # crafted interactions: Discord would not show the command, but nothing stops a client
            payload = await server.admin(member, cid, *path, **options.get(path[-1], {}))
            assert (await answer(server, payload))["content"] == REFUSED
        assert store._kv == before  # no ban, no setting, no word, no counter
        assert await b.moderator.sanctions.check(user_key("discord", victim)) is None
        assert f"dc:{GUILD_ID}" not in b.moderator.policy.scopes
        # a positive marker: an admin's action reaches the log; no refused call did before it
        boss = admin_user(server)
        await answer(server, await server.admin(boss, cid, "unban", user=victim))  # not banned: nothing logged
        await answer(server, await server.admin(boss, cid, "ban", user=victim, duration="1h"))
        [entry] = await server.wait_until(lambda: server.bot_messages(log_channel))
        assert entry["content"].startswith(f"**Admin** <@{boss}>") and f"banned <@{victim}> for 1 h" in entry["content"]


async def test_administrator_counts_as_manage_server(server):
    async with bridge(server):
        owner = admin_user(server, "owner", ADMINISTRATOR)
        data = await answer(server, await server.admin(owner, server.text_channels[0], "stats"))
        assert data["content"].startswith("Stranger chats on this server: 0 running now")


async def test_ban_refuses_start_with_time_left_then_unban_lets_in(server):
    log_channel = server.text_channels[1]
    async with bridge(server, mod_log_channel=log_channel) as b:
        boss, victim = admin_user(server), server.add_user("victim")
        cid = server.text_channels[0]
        data = await answer(server, await server.admin(boss, cid, "ban", user=victim, duration="2h", reason="spam"))
        assert data["content"] == f"<@{victim}> is banned from stranger chats on this bridge for 2 h. Reason: spam"
        ban = await b.moderator.sanctions.check(user_key("discord", victim))
        assert ban is not None and ban.reason == "spam" and abs(ban.until - ban.since - 7200) < 1
        start = await server.slash(victim, cid, "start")
        refusal = await answer(server, start)
        assert re.fullmatch(r"You are banned from starting chats on this bridge for (2 h|1 h 59 min) more\. Reason: spam\.",
                            refusal["content"])
        assert not server.threads()  # refused before any thread was opened
        strikes = await answer(server, await server.admin(boss, cid, "strikes", user=victim))
        assert re.fullmatch(rf"<@{victim}>: 0 strikes; banned for (2 h|1 h 59 min) more \(spam\)\.", strikes["content"])
        undo = await answer(server, await server.admin(boss, cid, "unban", user=victim))
        assert undo["content"] == f"<@{victim}> may start stranger chats again."
        tid, _ = await open_chat(server, victim)
        await wait_notice(server, tid, "Looking for someone")
        entries = await server.wait_until(lambda: len(server.bot_messages(log_channel)) >= 2 and server.bot_messages(log_channel))
        assert "banned" in entries[0]["content"] and "spam" in entries[0]["content"]
        assert f"unbanned <@{victim}>" in entries[1]["content"]
        posts = server.writes("POST", rf"^/channels/{log_channel}/messages$")
        assert posts and all(pings_nobody(p.body["allowed_mentions"]) and p.body["flags"] & 4 for p in posts)
        bad = await answer(server, await server.admin(boss, cid, "ban", user=victim, duration="soon"))
        assert "Nobody was banned" in bad["content"]
        assert await b.moderator.sanctions.check(user_key("discord", victim)) is None


async def test_min_account_age_refuses_young_accounts_at_start(server):
    async with bridge(server) as b:
        boss = admin_user(server)
        cid = server.text_channels[0]
        saved = await answer(server, await server.admin(boss, cid, "settings", min_account_age="7d"))
        assert "Minimum Discord account age: 7 d" in saved["content"]
        young = server.add_user("young", created=time.time() - 86400)
        refusal = await answer(server, await server.slash(young, cid, "start"))
        assert refusal["content"] == ("This server lets Discord accounts start stranger chats once they are 7 d old; "
                                      "yours is younger. No chat was started.")
        old = server.add_user("old", created=time.time() - 30 * 86400)
        tid, _ = await open_chat(server, old)  # the marker: an old account gets its thread
        assert [t["id"] for t in server.threads()] == [str(tid)]
        assert b.platforms["dc"].threads.of_user(young) is None


async def test_only_inside_this_guild_pairs_members_and_not_other_platforms(server):
    store = MemoryStore()
    async with bridge(server, store=store) as b:
        rec = b.platforms["rec"]
        boss = admin_user(server)
        cid = server.text_channels[0]
        saved = await answer(server, await server.admin(boss, cid, "settings", only_guild=True))
        assert "Pair only inside this server: yes" in saved["content"]
        assert store._kv[("platform:dc", f"guild:{GUILD_ID}:settings")]  # its own key, per guild
        rec.send("w", Start())  # a stranger from another platform waits first
        await rec.wait_for("w", lambda e: type(e).__name__ == "Waiting")
        alice, bob = server.add_user("alice"), server.add_user("bob")
        ta, _ = await open_chat(server, alice)
        await wait_notice(server, ta, "Looking for someone")  # she does not take w
        rec.send("v", Start())  # v takes w: so w was still free after alice arrived
        await rec.wait_for("v", Connected)
        await rec.wait_for("w", Connected)
        tb, _ = await open_chat(server, bob, cid=server.text_channels[1])
        await wait_notice(server, ta, "You're now chatting")
        await wait_notice(server, tb, "You're now chatting")
        await server.user_message(ta, alice, "token-a")
        await server.wait_until(lambda: any("token-a" in m["content"] for m in server.bot_messages(tb)))
        assert all(e.text != "token-a" for e in rec.events("w", Message) + rec.events("v", Message))
        # and the guild's members only: the hub was told where each start came from
        assert b.platforms["dc"].threads.get(ta).start["accept"] == [f"dc:{GUILD_ID}"]


async def test_same_platform_refuses_strangers_of_other_platforms(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        boss = admin_user(server)
        await answer(server, await server.admin(boss, server.text_channels[0], "settings", same_platform=True))
        shown = await answer(server, await server.admin(boss, server.text_channels[0], "settings"))
        assert "Refuse strangers from other platforms: yes" in shown["content"]
        rec.send("w", Start())
        await rec.wait_for("w", lambda e: type(e).__name__ == "Waiting")
        alice = server.add_user("alice")
        ta, _ = await open_chat(server, alice)
        await wait_notice(server, ta, "Looking for someone")
        rec.send("v", Start())
        await rec.wait_for("v", Connected)  # v meets w: alice had not taken it
        await rec.wait_for("w", Connected)
        # a setting changed later applies at the next start ("next"): platforms limited to rec only
        await answer(server, await server.admin(boss, server.text_channels[0], "settings", same_platform=False,
                                                platforms="rec"))  # fmt: skip
        await server.slash(alice, ta, "next")
        rec.send("u", Start())
        await rec.wait_for("u", Connected)
        await wait_notice(server, ta, "You're now chatting")


async def test_policy_words_and_links_per_guild_apply_both_ways_and_persist_across_a_restart(server):
    store = MemoryStore()
    log_channel = server.text_channels[1]
    async with bridge(server, store=store, mod_log_channel=log_channel) as b:
        rec = b.platforms["rec"]
        boss = admin_user(server)
        cid = server.text_channels[0]
        shown = await answer(server, await server.admin(boss, cid, "policy", "show"))
        assert shown["content"] == "Links: allow. Discord invites: block.\nNo word lists."
        added = await answer(server, await server.admin(boss, cid, "policy", "add-word", word="Zebra  Crossing", action="end"))
        assert added["content"].startswith("Added “Zebra Crossing” (end)")
        await answer(server, await server.admin(boss, cid, "policy", "add-word", word="okapi", action="hold"))
        await answer(server, await server.admin(boss, cid, "policy", "links", action="defang"))
        uid, tid = await paired_with_rec(server, b, "w")
        await server.user_message(tid, uid, "an okapi")  # held, the sender told
        await wait_notice(server, tid, "Your message was not sent")
        await server.user_message(tid, uid, "see https://example.com m1")  # defanged, relayed: the marker
        assert (await rec.wait_for("w", Message)).text == "see hxxps://example[.]com m1"
        assert [m.text for m in rec.events("w", Message)] == ["see hxxps://example[.]com m1"]
        rec.send("w", Message("okapi from w"))  # the other way too
        await wait_notice(server, tid, "breaks this bridge's rules; it was not shown")
        assert not [c for _, c in stranger_lines(server, tid) if "okapi" in c]
        removed = await answer(server, await server.admin(boss, cid, "policy", "remove-word", word="okapi"))
        assert removed["content"] == "Removed “okapi” from this server's lists."
        missing = await answer(server, await server.admin(boss, cid, "policy", "remove-word", word="okapi"))
        assert "Nothing changed" in missing["content"]
        await server.user_message(tid, uid, "okapi now m2")  # at once, in the running chat
        await rec.wait_for("w", lambda e: isinstance(e, Message) and e.text == "okapi now m2")
        await server.user_message(tid, uid, "a ZEBRA   Crossing!")  # folded like every list: the chat ends
        await rec.wait_for("w", Disconnected)
        assert [m.text for m in rec.events("w", Message)] == ["see hxxps://example[.]com m1", "okapi now m2"]
        entries = await server.wait_until(lambda: len(server.bot_messages(log_channel)) >= 4 and server.bot_messages(log_channel))
        assert all("**Admin**" in e["content"] for e in entries)
        assert not any("okapi" in e["content"] or "Zebra" in e["content"] for e in entries)  # no words in the log
    async with bridge(server, store=store) as b:  # the layer comes back with the bridge
        rec = b.platforms["rec"]
        shown = await answer(server, await server.admin(admin_user(server), server.text_channels[0], "policy", "show"))
        assert shown["content"] == ("Links: defang. Discord invites: block.\n"
                                    "List “guild-end” (this server): end: “Zebra Crossing”")
        uid, tid = await paired_with_rec(server, b, "v", name="carol")
        await server.user_message(tid, uid, "zebra crossing")
        await rec.wait_for("v", Disconnected)
        assert rec.events("v", Message) == []


async def test_stats_count_sessions_reports_and_bans_of_the_guild(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        boss = admin_user(server)
        alice = server.add_user("alice")
        ta, _ = await open_chat(server, alice)
        rec.send("w", Start())
        await wait_notice(server, ta, "You're now chatting")
        await answer(server, await server.slash(alice, ta, "report"))
        await answer(server, await server.admin(boss, server.text_channels[0], "ban", user=server.add_user("x")))
        data = await answer(server, await server.admin(boss, server.text_channels[0], "stats"))
        assert data["content"] == ("Stranger chats on this server: 0 running now; since counting began, 1 started, "
                                   "1 reports, 1 bans by admins here.")
