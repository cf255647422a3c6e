"""End-to-end encryption on a real Synapse: encrypting matrix-nio users invite the bot, chat through the hub, and Synapse holds only ciphertext from the bot."""

from __future__ import annotations

import json

import aiohttp

from bridge.events import Connected, Message, Start
from tests.helpers import running
from tests.web.client import RawClient

from .conftest import bridge_config, notice_with
from .e2ee import crypto_user, raw_events

WEB = {"plugin": "web", "bind": "127.0.0.1:0", "poll_window": 2.0}


def bot_events_all_encrypted(events: list[dict], bot: str) -> list[dict]:
    """The bot's message events in Synapse's room; asserts each one is m.room.encrypted (no plaintext)."""
    sent = [e for e in events if e.get("sender") == bot and "state_key" not in e]
    assert sent, "the bot sent nothing"
    for e in sent:
        assert e["type"] == "m.room.encrypted", e
        assert set(e["content"]) <= {"algorithm", "ciphertext", "sender_key", "session_id", "device_id", "m.relates_to"}, e
    return sent


async def test_encrypted_room_chats_with_a_web_client_both_ways(matrix, synapse):
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    me = bot["user_id"]
    mx = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])["platforms"]["mx"]
    cfg = {"platforms": {"mx": mx, "web": WEB}, "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0, "interest_fallback": 0}}}
    async with running(cfg) as b, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        rid = await alice.create_room([me], name="alice's secret room")
        helped = await alice.wait_message(rid, me, notice_with("!stranger start"))
        assert "cannot cross-sign itself" in helped["content"]["body"]
        await alice.send(rid, "!stranger start")
        await alice.wait_message(rid, me, notice_with("Looking for someone"))
        web = RawClient(http, b.platforms["web"].url)
        await web.start()
        await web.until("connected")
        await alice.wait_message(rid, me, notice_with("You're now chatting"))

        tokens_in = [f"in-{n}-{alice.user_id}" for n in range(3)]
        for text in tokens_in:
            await alice.send(rid, text)
        got = []
        for _ in tokens_in:
            got.append((await web.until("gotMessage"))[1])
        assert got == [f"in-{n}-[user]" for n in range(3)]  # decrypted, scrubbed, in order, once each

        tokens_out = [f"out-{n} <b>x</b> @room" for n in range(3)]
        for text in tokens_out:
            assert await web.post("/send", msg=text) == (200, "win")
        for text in tokens_out:
            ev = await alice.wait_message(rid, me, lambda c, t=text: c.get("body") == f"Stranger: {t}")
            assert ev["content"]["msgtype"] == "m.text" and ev["content"]["m.mentions"] == {}
            assert ev["content"]["formatted_body"] == "<b>Stranger:</b> " + text.replace("<", "&lt;").replace(">", "&gt;")
        await alice.set_typing(rid, True)  # typing is not encrypted in Matrix (ephemeral): it still arrives
        await web.until("typing")
        assert [m["content"]["body"] for m in alice.messages(rid, me) if m["content"]["msgtype"] == "m.text"] == [
            f"Stranger: {t}" for t in tokens_out
        ]
        assert await web.post("/disconnect") == (200, "win")
        await alice.wait_message(rid, me, notice_with("Stranger has disconnected"))

        stored = await raw_events(synapse.url, alice.token, rid)
        sent = bot_events_all_encrypted(stored, me)
        decrypted = [e for e in alice.timeline[rid] if e.get("sender") == me and e.get("type") == "m.room.message"]
        assert len(decrypted) == len(sent)  # every event the bot sent, and alice read every one
        for e in decrypted:  # inside the encryption: the same contents as in plain rooms
            content = e["content"]
            assert content["m.mentions"] == {}, e
            assert content["msgtype"] in ("m.text", "m.notice"), e
            if content["msgtype"] == "m.notice":
                assert "formatted_body" not in content, e
            else:
                assert content["formatted_body"].startswith("<b>Stranger:</b> "), e
        assert not alice.undecrypted
        seen_by_web = json.dumps(web.events, ensure_ascii=False)
        for secret in (alice.user_id, rid, "secret room", synapse.url):
            assert secret not in seen_by_web, secret
