"""Messages the bot cannot decrypt, on a real Synapse: keys withheld on purpose, keys that arrive late, malformed ciphertext."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request

from nio import ToDeviceMessage

from bridge.events import Connected, Disconnected, Message, Start
from tests.helpers import running

from .conftest import bridge_config, notice_with, paired
from .e2ee import crypto_user

NOT_SENT = "could not be decrypted and was not sent to the stranger"
LATE_SENT = "has now been decrypted and sent to the stranger"
LATE_ENDED = "was decrypted after the chat ended; it was not sent"


def bot_device(user, bot: dict):
    return user.client.device_store[bot["user_id"]][bot["device_id"]]


async def withheld_send(user, rid: str, bot: dict, text: str) -> dict:
    """Send `text` in a new room key that the bot's device does not get; returns that key (to hand over later)."""
    client = user.client
    device = bot_device(user, bot)
    client.blacklist_device(device)
    await client.share_group_session(rid, ignore_unverified_devices=True)
    session = client.olm.outbound_group_sessions[rid]
    key = {"algorithm": "m.megolm.v1.aes-sha2", "room_id": rid, "session_id": session.id, "session_key": session.session_key}
    await user.send(rid, text)
    client.unblacklist_device(device)  # the next message gets a new key, shared with the bot again
    return key


async def hand_key(user, bot: dict, key: dict) -> None:
    """Give the bot's device a withheld room key after all (an Olm-encrypted m.room_key to-device message)."""
    client = user.client
    device = bot_device(user, bot)
    session = client.olm.session_store.get(device.curve25519)
    content = client.olm._olm_encrypt(session, device, "m.room_key", key)
    resp = await client.to_device(ToDeviceMessage("m.room.encrypted", device.user_id, device.id, content))
    assert type(resp).__name__ == "ToDeviceResponse", resp


def bodies(user, rid: str, me: str, text: str) -> list[str]:
    return [e["content"]["body"] for e in user.messages(rid, me) if text in e["content"].get("body", "")]


async def test_withheld_keys_are_told_once_and_late_keys_relay_only_while_the_chat_lives(matrix, synapse):
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    me = bot["user_id"]
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], undecryptable_wait=1.0)
    async with running(cfg) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        await alice.send(rid, "before")
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "before", timeout=20)

        key1 = await withheld_send(alice, rid, bot, "withheld-1")
        told = await alice.wait_message(rid, me, notice_with(NOT_SENT))
        assert told["content"]["body"] == "A message could not be decrypted and was not sent to the stranger."
        assert told["content"]["m.mentions"] == {}
        await alice.send(rid, "after-1")  # a marker: anything relayed for withheld-1 would come before it
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "after-1", timeout=20)
        assert [m.text for m in rec.events("r", Message)] == ["before", "after-1"]

        # The key arrives late while the chat goes on: relayed now, and the room is told.
        await hand_key(alice, bot, key1)
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "withheld-1", timeout=20)
        await alice.wait_message(rid, me, notice_with(LATE_SENT))

        # A second withheld message; the chat ends; its key comes after: not relayed, the room is told.
        key2 = await withheld_send(alice, rid, bot, "withheld-2")
        await alice.wait_for(lambda: len(bodies(alice, rid, me, NOT_SENT)) == 2)
        await alice.send(rid, "!stranger stop")
        await rec.wait_for("r", Disconnected, timeout=20)
        await hand_key(alice, bot, key2)
        await alice.wait_message(rid, me, notice_with(LATE_ENDED))
        # A marker: a new chat with another stranger; withheld-2 must not reach it (nor the old one).
        await alice.send(rid, "!stranger start")
        await alice.wait_for(lambda: len(bodies(alice, rid, me, "Looking for someone")) == 2)
        rec.send("r2", Start())
        await rec.wait_for("r2", Connected, timeout=20)
        await alice.send(rid, "marker")
        await rec.wait_for("r2", lambda e: isinstance(e, Message) and e.text == "marker", timeout=20)
        assert [m.text for m in rec.events("r2", Message)] == ["marker"]
        assert [m.text for m in rec.events("r", Message)] == ["before", "after-1", "withheld-1"]
        assert len(bodies(alice, rid, me, NOT_SENT)) == 2  # once per message, never repeated
        assert len(bodies(alice, rid, me, LATE_SENT)) == 1
        assert len(bodies(alice, rid, me, LATE_ENDED)) == 1


def _put(url: str, token: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


async def test_malformed_ciphertext_and_unknown_sessions_are_told_and_never_relayed(matrix, synapse):
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    me = bot["user_id"]
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], undecryptable_wait=1.0)
    async with running(cfg) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        base = f"{synapse.url}/_matrix/client/v3/rooms/{urllib.parse.quote(rid)}/send/m.room.encrypted"
        bad = [
            {"algorithm": "m.megolm.v1.aes-sha2"},  # fields missing
            {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "!!not base64!!", "sender_key": "AAAA",
             "session_id": "nosuchsession", "device_id": "NOSUCHDEVICE"},  # unknown device and session
        ]
        for n, content in enumerate(bad):
            await asyncio.to_thread(_put, f"{base}/bad{n}", alice.token, content)
        # One notice for both, or one each (when they came in different sync batches): 2 told in all.
        await alice.wait_for(lambda: told_count(bodies(alice, rid, me, "could not be decrypted")) == 2)
        await alice.send(rid, "marker")
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "marker", timeout=20)
        assert [m.text for m in rec.events("r", Message)] == ["marker"]
        await alice.send(rid, "!stranger help")  # a marker in the room: a repeated notice would come before it
        await alice.wait_message(rid, me, notice_with("I connect this room"))
        assert told_count(bodies(alice, rid, me, "could not be decrypted")) == 2


def told_count(texts: list[str]) -> int:
    """How many messages the undecryptable notices cover ("A message …" is one, "N messages …" is N)."""
    total = 0
    for text in texts:
        assert text.endswith("not sent to the stranger."), text
        total += 1 if text.startswith("A message") else int(text.split()[0])
    return total
