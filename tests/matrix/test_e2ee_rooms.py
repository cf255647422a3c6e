"""Encrypted rooms over time, on a real Synapse: devices and members joining mid-chat (room and thread mode), trust on first use, DMs, encryption turned on mid-chat."""

from __future__ import annotations

from bridge.events import Connected, Message, Start
from tests.helpers import running

from .conftest import bridge_config, notice_with, paired
from .e2ee import crypto_user, raw_events, second_device
from .test_e2ee import bot_events_all_encrypted

NEW_DEVICE = "appeared, one this bridge has not seen before"


async def bot_knows_device(b, user_id: str, device_id: str, user) -> None:
    """Wait until the bot fetched that device's keys (it then encrypts for it)."""
    mx = b.platforms["mx"]
    await user.wait_for(lambda: device_id in mx.client.device_store[user_id], 30)


async def invite_and_join(owner, rid: str, guest) -> None:
    await owner.client.room_invite(rid, guest.user_id)
    await guest.wait_for(lambda: rid in guest.invites)
    await guest.client.join(rid)
    await guest.wait_for(lambda: rid in guest.client.rooms)


def undecrypted_from(user, me: str, after: set[str]) -> list[dict]:
    """Events of the bot that this client could not decrypt, among those not in `after` (sent before it existed)."""
    return [e for e in user.undecrypted if e.get("sender") == me and e.get("event_id") not in after]


async def test_second_device_and_new_member_mid_chat_with_tofu(matrix, synapse):
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    bob = await crypto_user(matrix, "bob")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], trust="tofu")) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        rec.send("r", Message("s1"))
        await alice.wait_message(rid, me, "Stranger: s1")
        assert not alice.messages(rid, me) or not [m for m in alice.messages(rid, me) if NEW_DEVICE in m["content"]["body"]]

        # alice logs in on a second device: the bot fetches it, warns (tofu), and encrypts for it too
        before = {e["event_id"] for e in await raw_events(synapse.url, alice.token, rid)}
        phone = await second_device(matrix, alice)
        await bot_knows_device(b, alice.user_id, phone.client.device_id, alice)
        warned = await alice.wait_message(rid, me, notice_with(NEW_DEVICE))
        assert phone.client.device_id in warned["content"]["body"] and warned["content"]["m.mentions"] == {}
        rec.send("r", Message("s2"))
        await phone.wait_message(rid, me, "Stranger: s2")  # decrypted on the new device
        await phone.send(rid, "from the phone")
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "from the phone", timeout=20)

        # bob joins the room mid-chat: first seen, so no warning; he reads what the stranger says next
        # (what was sent before he joined was encrypted for the members of then: Megolm by design)
        before_bob = {e["event_id"] for e in await raw_events(synapse.url, alice.token, rid)}
        await invite_and_join(alice, rid, bob)
        await bot_knows_device(b, bob.user_id, bob.client.device_id, bob)
        await alice.wait_for(lambda: bob.user_id in b.platforms["mx"].client.rooms[rid].users)
        rec.send("r", Message("s3"))
        await bob.wait_message(rid, me, "Stranger: s3", 30)
        await bob.send(rid, "bob here")
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "bob here", timeout=20)
        await alice.wait_message(rid, me, "Stranger: s3")

        assert [m.text for m in rec.events("r", Message)] == ["from the phone", "bob here"]
        assert len([m for m in alice.messages(rid, me) if NEW_DEVICE in m["content"]["body"]]) == 1  # the phone only
        assert not undecrypted_from(phone, me, before) and not undecrypted_from(bob, me, before_bob)
        assert not alice.undecrypted
        bot_events_all_encrypted(await raw_events(synapse.url, alice.token, rid), me)


async def test_thread_mode_in_an_encrypted_room_with_a_second_device_and_a_late_member(matrix, synapse):
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    bob = await crypto_user(matrix, "bob")
    carol = await crypto_user(matrix, "carol")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], mode="thread")) as b:
        rec = b.platforms["rec"]
        rid = await alice.create_room([me, bob.user_id])
        await bob.wait_for(lambda: rid in bob.invites)
        await bob.client.join(rid)
        await alice.wait_message(rid, me, notice_with("!stranger start"))
        root = await alice.send(rid, "!stranger start")
        await alice.wait_message(rid, me, notice_with("Looking for someone"))
        rec.send("r", Start())
        await rec.wait_for("r", Connected, timeout=20)
        connected = await alice.wait_message(rid, me, notice_with("You're now chatting"))
        assert connected["content"]["m.relates_to"]["rel_type"] == "m.thread"
        assert connected["content"]["m.relates_to"]["event_id"] == root

        def in_thread(text: str):
            return {"msgtype": "m.text", "body": text, "m.relates_to": {"rel_type": "m.thread", "event_id": root}}

        await alice.send(rid, in_thread("thread hello"))
        await alice.send(rid, "room talk, not for the stranger")
        # As for every device below: the bot encrypts for bob's device once it has fetched its keys (its
        # first device-list query after bob joined); under a loaded run that came after this send.
        await bot_knows_device(b, bob.user_id, bob.client.device_id, bob)
        rec.send("r", Message("s1"))
        got = await bob.wait_message(rid, me, "Stranger: s1")
        assert got["content"]["m.relates_to"]["rel_type"] == "m.thread" and got["content"]["m.relates_to"]["event_id"] == root

        phone = await second_device(matrix, alice)  # trust "all": no warning, encrypted for at once
        await bot_knows_device(b, alice.user_id, phone.client.device_id, alice)
        await invite_and_join(alice, rid, carol)
        await bot_knows_device(b, carol.user_id, carol.client.device_id, carol)
        await alice.wait_for(lambda: carol.user_id in b.platforms["mx"].client.rooms[rid].users)
        before = {e["event_id"] for e in await raw_events(synapse.url, alice.token, rid)}
        rec.send("r", Message("s2"))
        for user in (phone, carol, alice):
            ev = await user.wait_message(rid, me, "Stranger: s2", 30)
            assert ev["content"]["m.relates_to"]["event_id"] == root
        await carol.send(rid, in_thread("carol in the thread"))
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "carol in the thread", timeout=20)

        assert [m.text for m in rec.events("r", Message)] == ["thread hello", "carol in the thread"]
        assert not [m for m in alice.messages(rid, me) if NEW_DEVICE in m["content"]["body"]]
        assert not undecrypted_from(phone, me, before) and not undecrypted_from(carol, me, before)
        stored = bot_events_all_encrypted(await raw_events(synapse.url, alice.token, rid), me)
        threaded = [e for e in stored if e["content"].get("m.relates_to", {}).get("rel_type") == "m.thread"]
        assert threaded and all(e["content"]["m.relates_to"]["event_id"] == root for e in threaded)


async def test_encrypted_dm_autostarts(matrix, synapse):
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], mode="thread")) as b:
        rec = b.platforms["rec"]
        rid = await alice.create_room([me])  # the bot and one person: a DM (room mode even in thread mode)
        await alice.wait_message(rid, me, notice_with("!stranger start"))
        await alice.send(rid, "hello, anyone?")  # a plain message while idle starts a chat
        await alice.wait_message(rid, me, notice_with("Looking for someone"))
        rec.send("r", Start())
        await rec.wait_for("r", Connected, timeout=20)
        await alice.send(rid, "dm text")
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "dm text", timeout=20)
        rec.send("r", Message("dm reply"))
        got = await alice.wait_message(rid, me, "Stranger: dm reply")
        assert "m.relates_to" not in got["content"]
        assert [m.text for m in rec.events("r", Message)] == ["dm text"]  # the starting message is not relayed
        assert not alice.undecrypted
        bot_events_all_encrypted(await raw_events(synapse.url, alice.token, rid), me)


async def test_encryption_turned_on_mid_chat_goes_on_encrypted(matrix, synapse):
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])) as b:
        rec = b.platforms["rec"]
        rid = await alice.create_room([me], encrypted=False)
        await alice.wait_message(rid, me, notice_with("!stranger start"))
        await alice.send(rid, "!stranger start")
        await alice.wait_message(rid, me, notice_with("Looking for someone"))
        rec.send("r", Start())
        await rec.wait_for("r", Connected, timeout=20)
        await alice.wait_message(rid, me, notice_with("You're now chatting"))
        rec.send("r", Message("plain before"))
        await alice.wait_message(rid, me, "Stranger: plain before")

        state = await alice.client.room_put_state(rid, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
        await alice.wait_message(rid, me, notice_with("turned on encryption; the chat goes on, encrypted"))
        rec.send("r", Message("secret after"))
        await alice.wait_message(rid, me, "Stranger: secret after")
        await alice.send(rid, "user after")  # alice's client encrypts now too
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "user after", timeout=20)

        stored = await raw_events(synapse.url, alice.token, rid)
        ids = [e["event_id"] for e in stored]
        turned = ids.index(state.event_id)
        mine = [e for e in stored[turned:] if e.get("sender") == me and "state_key" not in e]
        assert len(mine) == 2 and all(e["type"] == "m.room.encrypted" for e in mine)  # the notice, the message
        assert all(e["type"] == "m.room.message" for e in stored[:turned] if e.get("sender") == me and "state_key" not in e)
        assert [e["type"] for e in stored[turned:] if e.get("sender") == alice.user_id and "state_key" not in e] == ["m.room.encrypted"]
        assert [m.text for m in rec.events("r", Message)] == ["user after"]
        assert b.platforms["mx"].rooms.active  # the chat never ended
