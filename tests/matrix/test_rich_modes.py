"""The rich relay in ghost mode (appservice pushes, each stranger's ghost edits and reacts), in encrypted rooms and in
thread mode (edits and replies of messages inside a session thread), platform driven directly."""

from __future__ import annotations

import json

from bridge.events import Connected, Edit, Message, Posted, Reaction, Retract, Room, Start

from .conftest import Matrix, notice_with
from .e2ee import crypto_user, raw_events
from .test_ghosts import BOT, GHOST, as_synapse  # noqa: F401 - the module's Synapse with the appservice
from .test_rich_platform import chatting, edit_of, platform, reactions, visible


async def test_ghost_mode_rich_relay_both_ways(as_synapse):  # noqa: F811
    m = Matrix(as_synapse)
    try:
        alice = await m.user("alice")
        appservice = {"registration": str(as_synapse.registration), "listen": f"127.0.0.1:{as_synapse.as_port}"}
        async with platform(as_synapse.url, {"user_id": BOT}, appservice=appservice) as (mx, core):
            rid, room = await chatting(mx, core, alice, BOT)

            await mx.deliver(room, Message("ghost tok1", ref="c1"))
            posted = await core.wait(lambda e: isinstance(e, Posted) and e.ref == "c1")
            line = await alice.wait_for(lambda: next((e for e in alice.messages(rid) if e["event_id"] == posted.id), None))
            ghost = line["sender"]
            assert GHOST.match(ghost)
            await mx.deliver(room, Edit(posted.id, "ghost tok1 fixed"))
            edit = await alice.wait_message(rid, ghost, lambda c: (c.get("m.relates_to") or {}).get("rel_type") == "m.replace")
            assert edit["content"]["m.new_content"] == {"msgtype": "m.text", "body": "ghost tok1 fixed", "m.mentions": {}}
            assert "formatted_body" not in edit["content"]

            # the user's side, pushed by Synapse: an edit, a reaction to the ghost's line, a redaction
            mine = await alice.send(rid, "mine tok2")
            await core.wait(lambda e: isinstance(e, Message) and e.ref == mine)
            await alice.send(rid, edit_of(mine, "mine tok2b"))
            assert await core.wait(lambda e: isinstance(e, Edit)) == Edit(mine, "mine tok2b")
            await alice.send(rid, {"m.relates_to": {"rel_type": "m.annotation", "event_id": posted.id, "key": "🎉"}}, "m.reaction")
            assert await core.wait(lambda e: isinstance(e, Reaction)) == Reaction(posted.id, "🎉")
            await alice.client.room_redact(rid, mine)
            assert await core.wait(lambda e: isinstance(e, Retract)) == Retract(mine)

            # the ghost reacts and retracts; none of its own events come back as the user's
            await mx.deliver(room, Reaction(mine, "👀"))
            await alice.wait_for(lambda: reactions(alice, rid, ghost) == {(mine, "👀")})
            await mx.deliver(room, Retract(posted.id))
            await mx.deliver(room, Message("ghost tok3", ref="c3"))
            await core.wait(lambda e: isinstance(e, Posted) and e.ref == "c3")
            await alice.wait_for(lambda: [b for b in visible(alice, rid, ghost) if "tok" in b] == ["ghost tok3"])
            await alice.send(rid, "marker tok4")
            await core.wait(lambda e: isinstance(e, Message) and e.text == "marker tok4")
            assert [e for e in core.of(Reaction)] == [Reaction(posted.id, "🎉")]
            assert core.of(Edit) == [Edit(mine, "mine tok2b")] and core.of(Retract) == [Retract(mine)]
    finally:
        await m.close()


async def test_thread_mode_edits_and_replies_inside_the_thread(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    bob = await matrix.user("bob")
    me = bot["user_id"]
    async with platform(synapse.url, bot, mode="thread") as (mx, core):
        rid = await alice.create_room([me, bob.user_id])
        await bob.client.join(rid)
        await alice.wait_message(rid, me, notice_with("!stranger start"))
        await alice.wait_member(rid, bob.user_id, "join")
        root = await alice.send(rid, "!stranger start")
        await core.wait(lambda e: isinstance(e, Start))
        sid = f"{rid}|{root}"
        room = Room("mx", sid)
        await mx.deliver(room, Connected())
        await alice.wait_message(rid, me, notice_with("You're now chatting"))

        def threaded(body: str, reply: str | None = None) -> dict:
            relates = {"rel_type": "m.thread", "event_id": root, "is_falling_back": reply is None,
                       "m.in_reply_to": {"event_id": reply or root}}
            return {"msgtype": "m.text", "body": body, "m.relates_to": relates}

        first = await alice.send(rid, threaded("in thread tok1"))
        got = await core.wait(lambda e: isinstance(e, Message) and e.text == "in thread tok1")
        assert got.ref == first and got.reply_to is None  # the thread's fallback is no reply
        await alice.send(rid, edit_of(first, "in thread tok1b"))
        assert await core.wait(lambda e: isinstance(e, Edit)) == Edit(first, "in thread tok1b")
        assert [r for r, e in core.events if isinstance(e, Edit)] == [room]
        answer = await alice.send(rid, threaded("real reply tok2", reply=first))
        assert await core.wait(lambda e: isinstance(e, Message) and "tok2" in e.text) == Message("real reply tok2", ref=answer, reply_to=first)

        await mx.deliver(room, Message("stranger reply tok3", ref="c3", reply_to=first, quote="in thread tok1b"))
        rep = await alice.wait_message(rid, me, "stranger reply tok3")
        assert rep["content"]["m.relates_to"] == {"rel_type": "m.thread", "event_id": root, "is_falling_back": False,
                                                  "m.in_reply_to": {"event_id": first}}
        posted = await core.wait(lambda e: isinstance(e, Posted) and e.ref == "c3")
        await mx.deliver(room, Edit(posted.id, "stranger reply tok3 fixed"))
        edit = await alice.wait_message(rid, me, lambda c: (c.get("m.relates_to") or {}).get("rel_type") == "m.replace")
        assert edit["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": posted.id}  # no thread relation on an edit
        assert edit["content"]["m.new_content"]["body"] == "> in thread tok1b\n\nStranger: stranger reply tok3 fixed"


async def test_in_an_encrypted_room_edits_reactions_and_replies_go_both_ways(matrix, synapse):
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    me = bot["user_id"]
    async with platform(synapse.url, bot) as (mx, core):
        rid, room = await chatting(mx, core, alice, me)  # alice's rooms are encrypted
        first = await alice.send(rid, "secret tok1")
        await core.wait(lambda e: isinstance(e, Message) and e.ref == first)
        await alice.send(rid, edit_of(first, "secret tok1b"))  # encrypted, decrypted by the bot
        assert await core.wait(lambda e: isinstance(e, Edit)) == Edit(first, "secret tok1b")
        answer = await alice.send(rid, {"msgtype": "m.text", "body": "re tok2", "m.relates_to": {"m.in_reply_to": {"event_id": first}}})
        assert await core.wait(lambda e: isinstance(e, Message) and e.ref == answer) == Message("re tok2", ref=answer, reply_to=first)

        await mx.deliver(room, Message("theirs tok3", ref="c3", reply_to=first, quote="secret tok1b"))
        posted = await core.wait(lambda e: isinstance(e, Posted) and e.ref == "c3")
        await mx.deliver(room, Edit(posted.id, "theirs tok3 fixed"))
        edit = await alice.wait_message(rid, me, lambda c: (c.get("m.relates_to") or {}).get("rel_type") == "m.replace")
        assert edit["content"]["m.new_content"]["body"] == "> secret tok1b\n\nStranger: theirs tok3 fixed"
        await mx.deliver(room, Reaction(first, "✅"))
        await alice.wait_for(lambda: reactions(alice, rid, me) == {(first, "✅")})
        stored = [e for e in await raw_events(synapse.url, alice.token, rid) if e.get("sender") == me and "state_key" not in e]
        assert {e["type"] for e in stored} == {"m.room.encrypted", "m.reaction"}  # only the reaction is in the clear
        assert "theirs" not in json.dumps(stored) and "secret" not in json.dumps(stored)
