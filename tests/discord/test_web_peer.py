"""A web (Omegle-protocol) client meets a Discord thread through the hub: both ways, and nothing of Discord leaks."""

from __future__ import annotations

import json

import aiohttp

from tests.helpers import running
from tests.web.client import RawClient

from .conftest import bridge_config
from .fakediscord import APP_ID, BOT_ID, GUILD_ID
from .util import open_chat, wait_line, wait_notice


def web_and_discord(server) -> dict:
    data = bridge_config(server)
    data["platforms"] = {
        "dc": data["platforms"]["dc"],
        "web": {"plugin": "web", "bind": "127.0.0.1:0", "poll_window": 1.0},
    }
    return data


def discord_secrets(server) -> set[str]:
    """Every id and name the fake knows: none may reach the web client."""
    found = {str(GUILD_ID), str(APP_ID), str(BOT_ID), "Test Guild", "discord:", "strangerbot", "webhook"}
    for uid, user in server.users.items():
        found |= {str(uid), user["username"]}
    for cid, channel in server.channels.items():
        found.add(str(cid))
        if channel.get("name"):
            found.add(channel["name"])
    for wid, hook in server.webhooks.items():
        found |= {str(wid), hook["token"]}
    return found


async def test_web_client_and_discord_thread_chat_both_ways_without_leaks(server):
    async with running(web_and_discord(server)) as b, aiohttp.ClientSession() as http:
        web = b.platforms["web"]
        alice = server.add_user("alice")
        client = RawClient(http, web.url)
        await client.start(topics='["tea"]')
        tid, _ = await open_chat(server, alice, interests="tea")
        await client.until("connected")
        assert ["commonLikes", ["tea"]] in client.events
        await wait_notice(server, tid, "You both like “tea”")

        # Discord → web: typing, then text (mentions of people and channels neutralised)
        await server.typing(tid, alice)
        await client.until("typing")
        await server.user_message(tid, alice, f"hi from discord in <#{server.text_channels[0]}> <@{alice}> @everyone")
        got = await client.until("gotMessage")
        assert got == ["gotMessage", "hi from discord in #some-channel @someone @everyone"]
        # web → Discord: typing indicator, then the text under the stranger's webhook name
        assert await client.post("/typing") == (200, "win")
        await server.wait_until(lambda: server.writes("POST", rf"^/channels/{tid}/typing$"))
        assert await client.post("/send", msg="hello from the web <@1> @here") == (200, "win")
        name, content = await wait_line(server, tid, "hello from the web")
        assert name == "Stranger" and "<@1>" not in content and "@here" not in content

        # the web client leaves: the thread says so and is archived and locked
        assert await client.post("/disconnect") == (200, "win")
        await wait_notice(server, tid, "Stranger has disconnected.")
        await server.wait_until(lambda: server.channels[tid]["thread_metadata"]["locked"])

        # a second round: the Discord user stops, the web client is told
        second = RawClient(http, web.url)
        await second.start()
        tid2, _ = await open_chat(server, alice)
        assert tid2 != tid
        await second.until("connected")
        await server.user_message(tid2, alice, "bye soon")
        assert await second.until("gotMessage") == ["gotMessage", "bye soon"]
        await server.slash(alice, tid2, "stop")
        await second.until("strangerDisconnected")
        await wait_notice(server, tid2, "You have disconnected.")

        # nothing the web side ever received names a Discord id, user, guild, channel, thread or webhook
        secrets = discord_secrets(server)
        assert {"alice", str(alice), str(tid), str(tid2), "general-0"} <= secrets
        assert {"connected", "typing", "gotMessage", "strangerDisconnected"} <= set(second.names() + client.names())
        for events in (client.events, second.events):
            for event in events:
                text = json.dumps(event, ensure_ascii=False)
                leaked = [s for s in secrets if s in text]
                assert not leaked, (event, leaked)
