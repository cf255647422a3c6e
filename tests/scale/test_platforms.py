"""A Discord thread (the Discord-compatible test server) on one instance meets a web client on another."""

from __future__ import annotations

import secrets

import aiohttp

from bridge.app import Bridge
from tests.discord.conftest import bridge_config, server
from tests.discord.util import open_chat, stranger_lines, wait_line, wait_notice
from tests.helpers import config
from tests.web.client import RawClient

from .conftest import LEASE, PREFIX
from .daemon import Daemon

__all__ = ["server"]  # the fake Discord server fixture, used by name


async def test_discord_thread_on_one_instance_chats_with_a_web_client_on_another(tmp_path, redis_server, server):
    data = bridge_config(server)
    del data["platforms"]["rec"]
    data["bridge"] = {"store": redis_server.url, "store_prefix": PREFIX, "instance": "dc1", "instance_lease": LEASE}
    web = Daemon(tmp_path, redis_server.url, "web1")
    await web.start()
    try:
        async with Bridge(config(data)), aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            alice = server.add_user("alice")
            tid, _ = await open_chat(server, alice)
            await wait_notice(server, tid, "Looking for someone")
            client = RawClient(http, web.url)
            await client.start()
            await client.until("connected")
            await wait_notice(server, tid, "You're now chatting")
            from_web = [f"web-{secrets.token_hex(4)}-{i}" for i in range(10)]
            for token in from_web:
                assert await client.post("/send", msg=token) == (200, "win")
            await wait_line(server, tid, from_web[-1])
            assert [content for _, content in stranger_lines(server, tid)] == from_web  # in order, once each
            from_discord = [f"dc-{secrets.token_hex(4)}-{i}" for i in range(10)]
            for token in from_discord:
                await server.user_message(tid, alice, token)
            got = [(await client.until("gotMessage"))[1] for _ in from_discord]
            assert got == from_discord
            assert await client.post("/disconnect") == (200, "win")
            notices = await wait_notice(server, tid, "disconnected")
            assert len(notices) == 1
    finally:
        await web.stop()
