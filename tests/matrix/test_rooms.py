"""Room lifecycle on a real Synapse: allow-list, encrypted rooms, leaving, kicking, DMs, thread mode."""

from __future__ import annotations

from bridge.events import Connected, Disconnected, Message, ServerNotice, Start, Waiting
from plugins.matrix.rooms import SessionRoom
from tests.helpers import running

from .conftest import bridge_config, notice_with, paired


async def test_invite_from_outside_allow_list_is_refused(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    mallory = await matrix.user("mallory")
    me = bot["user_id"]
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[alice.user_id])
    async with running(cfg):
        bad = await mallory.create_room([me])
        refused = await mallory.wait_member(bad, me, "leave")
        assert refused["sender"] == me  # the bot rejected it itself
        assert "not allowed" in refused["content"].get("reason", "")
        good = await alice.create_room([me])
        await alice.wait_member(good, me, "join")
        await alice.wait_message(good, me, notice_with("!stranger help"))
        # mallory's room never got a single message from the bot
        assert not mallory.messages(bad, me)


async def test_server_wide_allow_entry(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":elsewhere.example", ":localhost"])):
        rid = await alice.create_room([me])
        await alice.wait_member(rid, me, "join")


async def test_encrypted_rooms_are_refused_without_plaintext_when_encryption_is_off(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], encryption=False)
    async with running(cfg) as b:
        rec = b.platforms["rec"]
        # invited to an encrypted room: the invite is rejected with a reason
        enc = await alice.create_room([me], encrypted=True)
        refused = await alice.wait_member(enc, me, "leave")
        assert refused["content"]["reason"].startswith("Encryption is turned off for this bridge")
        assert not alice.messages(enc, me)
        # a session room that turns encryption on: the chat ends, the bot leaves, nothing more is sent
        rid = await paired(b, alice, me)
        sent_before = len(alice.messages(rid, me))
        await alice.client.room_put_state(rid, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
        await rec.wait_for("r", Disconnected, timeout=20)
        left = await alice.wait_member(rid, me, "leave")
        assert "encrypted rooms" in left["content"]["reason"]
        assert len(alice.messages(rid, me)) == sent_before


async def test_user_leaving_ends_the_chat_and_the_bot_leaves(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        await alice.client.room_leave(rid)
        await rec.wait_for("r", Disconnected, timeout=20)
        members = await b.platforms["mx"].client.joined_rooms()
        assert rid not in members.rooms or await _wait_not_joined(b, rid)


async def _wait_not_joined(b, rid) -> bool:
    import asyncio

    for _ in range(100):
        rooms = await b.platforms["mx"].client.joined_rooms()
        if rid not in rooms.rooms:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_kicking_the_bot_ends_the_chat(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        before = len(alice.messages(rid, me))
        await alice.client.room_kick(rid, me, reason="bye")
        got = await rec.wait_for("r", Disconnected, timeout=20)
        assert got.reason == "stranger"
        mx = b.platforms["mx"]
        sends = sum(mx.stats.values())
        rec.send("r", Message("after the kick"))  # nothing reaches the room any more
        await rec.wait_for("r", lambda e: isinstance(e, ServerNotice) and "not chatting" in e.text, timeout=20)
        rec.send("r2", Start())
        await rec.wait_for("r2", Waiting, timeout=20)  # nobody to meet: the kicked room's chat is over
        marker = await alice.send(rid, "still typing here")
        await alice.wait_for(lambda: any(e.get("event_id") == marker for e in alice.timeline[rid]))
        assert len(alice.messages(rid, me)) == before
        assert SessionRoom(rid) not in mx.outboxes and sum(mx.stats.values()) == sends  # the bridge did not even try


async def test_dm_plain_message_starts_a_chat(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])) as b:
        rec = b.platforms["rec"]
        rid = await alice.create_room([me])
        await alice.wait_message(rid, me, notice_with("!stranger start"))
        await alice.send(rid, "hello?")
        await alice.wait_message(rid, me, notice_with("Looking for someone"))
        rec.send("r", Start())
        await rec.wait_for("r", Connected, timeout=20)
        await alice.send(rid, "now relayed")
        got = await rec.wait_for("r", Message, timeout=20)
        assert got.text == "now relayed"


async def test_thread_mode_each_thread_is_a_session(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    bob = await matrix.user("bob")
    carol = await matrix.user("carol")
    me = bot["user_id"]
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], mode="thread")
    async with running(cfg) as b:
        rec = b.platforms["rec"]
        rid = await alice.create_room([me, bob.user_id, carol.user_id])
        for u in (bob, carol):
            await u.wait_for(lambda u=u: rid in u.invites)
            await u.client.join(rid)
        await alice.wait_message(rid, me, notice_with("!stranger start"))
        await alice.send(rid, "ordinary chatter is ignored")
        root_a = await alice.send(rid, "!stranger start")
        root_b = await bob.send(rid, "!stranger start")

        def in_thread(root, text):
            return lambda c: (c.get("m.relates_to") or {}).get("event_id") == root and text in c.get("body", "")

        await alice.wait_message(rid, me, in_thread(root_a, "Looking for someone"))
        # the two threads of the same room are paired with each other through the hub
        conn = await alice.wait_message(rid, me, in_thread(root_a, "You're now chatting"))
        assert conn["content"]["m.relates_to"] == {"rel_type": "m.thread", "event_id": root_a, "is_falling_back": True}
        assert conn["content"]["msgtype"] == "m.notice"
        await alice.wait_message(rid, me, in_thread(root_b, "You're now chatting"))

        thread = {"rel_type": "m.thread", "event_id": root_a, "is_falling_back": True}
        await alice.send(rid, {"msgtype": "m.text", "body": "from thread A", "m.relates_to": thread})
        got = await bob.wait_message(rid, me, in_thread(root_b, "Stranger: from thread A"))
        assert got["content"]["m.mentions"] == {}
        # carol in the main timeline is not relayed; her own start opens a third thread
        await carol.send(rid, "main timeline talk")
        root_c = await carol.send(rid, "!stranger start")
        await alice.wait_message(rid, me, in_thread(root_c, "Looking for someone"))
        rec.send("r", Start())
        await rec.wait_for("r", Connected, timeout=20)
        # stop in thread B: thread A gets the closing notice in its thread
        bthread = {"rel_type": "m.thread", "event_id": root_b, "is_falling_back": True}
        await bob.send(rid, {"msgtype": "m.text", "body": "!stranger stop", "m.relates_to": bthread})
        await alice.wait_message(rid, me, in_thread(root_a, "Stranger has disconnected"))
        texts = [m.text for m in rec.events("r", Message)]
        assert "main timeline talk" not in texts and "ordinary chatter is ignored" not in texts
