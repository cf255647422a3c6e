"""A Matrix room paired through the hub with a Discord thread (fake Discord server) and with a web client."""

from __future__ import annotations

import json

import aiohttp
import discord.gateway
import pytest
from discord.http import Route

from tests.discord.fakediscord import GUILD_ID, FakeDiscord
from tests.discord.guarded import GUARDED
from tests.discord.util import open_chat, stranger_lines, wait_line, wait_notice
from tests.helpers import running
from tests.scratch import scratch_dir
from tests.web.client import RawClient

from .conftest import notice_with

HUB = {"hub": {"plugin": "hub", "repair_cooldown": 0, "interest_fallback": 0}}


def mx_table(url: str, bot: dict) -> dict:
    return {
        "plugin": "matrix",
        "homeserver": url,
        "user_id": bot["user_id"],
        "access_token": bot["access_token"],
        "device_id": bot["device_id"],
        "allowed_inviters": [":localhost"],
        "sync_timeout": 1.0,
        "request_timeout": 10.0,
        "crypto_store": scratch_dir("sb-crypto-"),
    }


@pytest.fixture
async def discord_server(monkeypatch: pytest.MonkeyPatch):
    # As the Discord tests do: no host name resolves, and discord.py's redirection is undone afterwards.
    monkeypatch.setattr(Route, "BASE", Route.BASE)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def matrix_waiting(user, bot_id: str) -> str:
    rid = await user.create_room([bot_id], name="alice's secret room")
    await user.wait_message(rid, bot_id, notice_with("!stranger start"))
    await user.send(rid, "!stranger start")
    await user.wait_message(rid, bot_id, notice_with("Looking for someone"))
    return rid


async def test_matrix_room_with_discord_thread(matrix, synapse, discord_server):
    server = discord_server
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    dc = {
        "plugin": GUARDED,
        "token": "test-bot-token",
        "api_base": server.api_base,
        "gateway_url": server.gateway_url,
        "guild_ready_timeout": 0.05,
        "start_cooldown": 0,
    }
    cfg = {"platforms": {"mx": mx_table(synapse.url, bot), "dc": dc}, "backends": HUB}
    async with running(cfg):
        rid = await matrix_waiting(alice, me)
        uid = server.add_user("dcwalter")
        tid, _ = await open_chat(server, uid)
        await wait_notice(server, tid, "You're now chatting")
        await alice.wait_message(rid, me, notice_with("You're now chatting"))

        # Matrix → Discord: the user's own mxid is scrubbed before it leaves
        await alice.send(rid, f"hello from matrix, I am {alice.user_id} in {rid}")
        name, content = await wait_line(server, tid, "hello from matrix")
        assert name == "Stranger"
        assert content.startswith("hello from matrix, I am [user] in [room]")
        # Discord → Matrix: mentions of Discord users and channels become neutral words
        await server.user_message(tid, uid, f"hi from discord <@{uid}> in <#{server.text_channels[0]}>")
        got = await alice.wait_message(rid, me, "hi from discord")
        assert got["content"]["body"].startswith("Stranger: hi from discord @")
        assert got["content"]["m.mentions"] == {}
        # typing both ways
        await server.typing(tid, uid)
        await alice.wait_for(lambda: me in alice.typing[rid])
        await alice.set_typing(rid, True)
        await server.wait_until(lambda: server.writes("POST", rf"^/channels/{tid}/typing$"))
        await alice.set_typing(rid, False)
        # the Matrix user stops: the Discord user is told
        await alice.send(rid, "!stranger stop")
        await wait_notice(server, tid, "Stranger has disconnected")
        await alice.wait_message(rid, me, notice_with("You have disconnected"))

        # Nothing Discord-side reached Matrix, nothing Matrix-side reached Discord.
        discord_secrets = [str(uid), "dcwalter", str(tid), str(GUILD_ID), "general-0", "Test Guild", str(server.text_channels[0])]
        for e in alice.timeline[rid]:
            if e.get("sender") == me:
                seen = json.dumps(e["content"], ensure_ascii=False)
                for secret in discord_secrets:
                    assert secret not in seen, (secret, e)
        localpart = alice.user_id[1:].partition(":")[0]
        matrix_secrets = [alice.user_id, localpart, rid, "secret room", "localhost", synapse.url]
        writes = server.writes()
        assert writes
        for rec in writes:
            sent = json.dumps([rec.body, rec.query], ensure_ascii=False)
            for secret in matrix_secrets:
                assert secret not in sent, (secret, rec.path)
        assert ("Stranger", content) in stranger_lines(server, tid)


async def test_matrix_room_with_web_client(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    web = {"plugin": "web", "bind": "127.0.0.1:0", "poll_window": 2.0}
    cfg = {"platforms": {"mx": mx_table(synapse.url, bot), "web": web}, "backends": HUB}
    async with running(cfg) as b, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        rid = await matrix_waiting(alice, me)
        client = RawClient(http, b.platforms["web"].url)
        await client.start()
        await client.until("connected")
        await alice.wait_message(rid, me, notice_with("You're now chatting"))

        await alice.send(rid, f"hello web from {alice.user_id}")
        assert await client.until("gotMessage") == ["gotMessage", "hello web from [user]"]
        assert await client.post("/send", msg="hello <b>matrix</b> & @room") == (200, "win")
        got = await alice.wait_message(rid, me, "hello <b>matrix</b>")
        assert got["content"]["formatted_body"] == "<b>Stranger:</b> hello &lt;b&gt;matrix&lt;/b&gt; &amp; @room"
        assert got["content"]["m.mentions"] == {}
        await alice.set_typing(rid, True)
        await client.until("typing")
        assert await client.post("/disconnect") == (200, "win")
        await alice.wait_message(rid, me, notice_with("Stranger has disconnected"))

        seen_by_web = json.dumps(client.events, ensure_ascii=False)
        for secret in (alice.user_id, alice.user_id[1:].partition(":")[0], rid, "secret room", synapse.url):
            assert secret not in seen_by_web, secret
        for e in alice.timeline[rid]:
            assert client.id not in json.dumps(e.get("content", {})), e
