"""The rich relay between a Discord thread (the Discord-compatible test server) and a Matrix room (real
Synapse), paired through the hub: edits, deletions, reactions and replies both ways, with a
nothing-lost oracle over each side's visible history, and no platform id crossing."""

from __future__ import annotations

import json

from tests.discord.fakediscord import BOT_ID
from tests.discord.guarded import GUARDED
from tests.discord.util import open_chat, wait_notice
from tests.helpers import running

from .conftest import notice_with
from .test_cross import HUB, discord_server, matrix_waiting, mx_table  # noqa: F401 - the fixture is used by name
from .test_rich_platform import edit_of, reactions, visible


def discord_lines(server, tid: int) -> list[str]:
    """The stranger lines the thread shows now (webhook posts, after edits and deletions), oldest first."""
    return [m["content"] for m in server.bot_messages(tid) if m["content"] and m.get("webhook_id")]


async def test_discord_thread_and_matrix_room_relay_edits_deletions_reactions_and_replies(matrix, synapse, discord_server):
    server = discord_server
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    dc = {"plugin": GUARDED, "token": "test-bot-token", "api_base": server.api_base, "gateway_url": server.gateway_url,
          "guild_ready_timeout": 0.05, "start_cooldown": 0}
    cfg = {"platforms": {"mx": mx_table(synapse.url, bot), "dc": dc}, "backends": HUB}
    async with running(cfg):
        rid = await matrix_waiting(alice, me)
        walter = server.add_user("walter")
        tid, _ = await open_chat(server, walter)
        await wait_notice(server, tid, "You're now chatting")
        await alice.wait_message(rid, me, notice_with("You're now chatting"))

        # Matrix -> Discord: three lines; the first edited, the second deleted, the third answered
        m1 = await alice.send(rid, "m1 tok")
        m2 = await alice.send(rid, "m2 tok")
        m3 = await alice.send(rid, "m3 tok")
        await server.wait_until(lambda: discord_lines(server, tid) == ["m1 tok", "m2 tok", "m3 tok"])
        await alice.send(rid, edit_of(m1, "m1 tok fixed"))
        await alice.client.room_redact(rid, m2)
        await server.wait_until(lambda: discord_lines(server, tid) == ["m1 tok fixed", "m3 tok"])

        # Discord -> Matrix: lines, an edit, a deletion, a reaction to alice's line, a reply to it
        d1 = await server.user_message(tid, walter, "d1 tok")
        d2 = await server.user_message(tid, walter, "d2 tok")
        shown_d1 = await alice.wait_message(rid, me, "d1 tok")
        shown_d2 = await alice.wait_message(rid, me, "d2 tok")
        await server.user_edit(d1, "d1 tok fixed")
        await server.user_delete(d2)
        [m3_line] = [m for m in server.bot_messages(tid) if m["content"] == "m3 tok"]
        await server.react(tid, int(m3_line["id"]), walter, "👍")
        await server.user_reply(tid, walter, "d3 answer", m3_line)
        await alice.wait_message(rid, me, "d3 answer")
        await alice.wait_for(lambda: reactions(alice, rid, me) == {(m3, "👍")})
        await alice.wait_for(lambda: shown_d2["event_id"] in {e.get("redacts") or e["content"].get("redacts")
                                                              for e in alice.timeline[rid] if e.get("type") == "m.room.redaction"})

        # Matrix -> Discord: a reaction to walter's line (the bot reacts on the line walter wrote)
        await alice.send(rid, {"m.relates_to": {"rel_type": "m.annotation", "event_id": shown_d1["event_id"], "key": "🎉"}},
                         "m.reaction")
        await server.wait_until(lambda: server.reactions(tid, int(d1["id"])) == {"🎉": [BOT_ID]})
        await alice.send(rid, "m4 marker")
        await server.wait_until(lambda: discord_lines(server, tid)[-1:] == ["m4 marker"])

        # the oracle: each side shows what the other meant, edits and deletions applied, each once
        assert discord_lines(server, tid) == ["m1 tok fixed", "m3 tok", "m4 marker"]
        await alice.wait_for(lambda: [b for b in visible(alice, rid, me) if "tok" in b or "answer" in b]
                             == ["Stranger: d1 tok fixed", "> m3 tok\n\nStranger: d3 answer"])
        for e in alice.timeline[rid]:
            if e.get("sender") == me and e.get("type") in ("m.room.message", "m.reaction"):
                assert e["content"].get("m.mentions") == {}, e

        # no Matrix event id, room or user reached Discord; no Discord message or user id reached Matrix
        written = json.dumps([[rec.body, rec.query] for rec in server.writes()], ensure_ascii=False)
        for secret in [e["event_id"] for e in alice.timeline[rid]] + [rid, alice.user_id]:
            assert secret not in written, secret
        discord_ids = [str(d1["id"]), str(d2["id"]), str(m3_line["id"]), str(walter), str(tid)]
        for e in alice.timeline[rid]:
            if e.get("sender") == me:
                seen = json.dumps(e["content"], ensure_ascii=False)
                assert not [x for x in discord_ids if x in seen], e
