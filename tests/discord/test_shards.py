"""Sharding in one process: every shard of the token run here, and the test server's shard routing."""

from __future__ import annotations

import secrets

import discord

from .conftest import bridge
from .fakebase import BOT_ID, GUILD_ID, shard_of
from .util import open_chat, stranger_lines, until, wait_line, wait_notice


async def test_a_process_running_every_shard_serves_every_guild_and_pairs_them(server):
    _, (zero,) = server.add_guild(shard=0, count=2)
    assert shard_of(GUILD_ID, 2) == 1
    async with bridge(server, shard_count=2) as b:
        dc = b.platforms["dc"]
        assert isinstance(dc.client, discord.AutoShardedClient) and sorted(dc.client.shards) == [0, 1]
        assert sorted(server.shard_sessions) == [0, 1]
        assert sorted(g.id for g in dc.client.guilds) == sorted(server.guild_ids)
        alice, bob = server.add_user("alice"), server.add_user("bob")
        t0, _ = await open_chat(server, alice, zero)
        await wait_notice(server, t0, "Looking for someone")
        t1, _ = await open_chat(server, bob, server.text_channels[0])
        await wait_notice(server, t0, "You're now chatting")
        token = f"across-{secrets.token_hex(4)}"
        await server.user_message(t0, alice, token)
        await wait_line(server, t1, token)
        assert [c for _, c in stranger_lines(server, t1)] == [token]
        # Shard 1's session is invalidated: what Bob sends meanwhile is fetched once it identifies
        # again, and only its threads are caught up (shard 0's session went on).
        assert b.metrics.ready["dc"] is True
        await server.invalidate(shard=1)
        await until(lambda: b.metrics.ready["dc"] is False)
        gap = [f"gap-{secrets.token_hex(4)}-{i}" for i in range(3)]
        for line in gap:
            await server.user_message(t1, bob, line)
        await wait_line(server, t0, gap[-1])
        await until(lambda: b.metrics.ready["dc"] is True, timeout=20)
        after = f"after-{secrets.token_hex(4)}"
        await server.user_message(t1, bob, after)
        await wait_line(server, t0, after)
        assert [c for _, c in stranger_lines(server, t0)] == [*gap, after]
        assert server.identifies == 3  # two shards, then shard 1 again
        assert server.writes("GET", rf"^/channels/{t1}/messages$") and not server.writes("GET", rf"^/channels/{t0}/messages$")
        assert dc.threads._lists == {0: "threads:0/2", 1: "threads:1/2"}


async def test_the_server_routes_each_guild_to_its_shard_and_answers_gateway_bot(server):
    server.recommended_shards = 2
    gid, _ = server.add_guild(shard=0, count=2)
    seen: dict[int, list[int]] = {}
    client = discord.AutoShardedClient(intents=discord.Intents(guilds=True), guild_ready_timeout=0.05)  # no shard_count: asks /gateway/bot

    async def on_shard_ready(shard_id: int) -> None:
        seen[shard_id] = sorted(g.id for g in client.guilds if g.shard_id == shard_id)

    client.event(on_shard_ready)
    discord.http.Route.BASE = server.api_base
    async with client:
        await client.login("test-bot-token")
        task = client.loop.create_task(client.connect())
        try:
            await until(lambda: len(seen) == 2, timeout=20)
        finally:
            await client.close()
            await task
    assert client.shard_count == 2 and server.writes("GET", r"^/gateway/bot$")
    assert seen == {0: [gid], 1: [GUILD_ID]}
    assert client.user is not None and client.user.id == BOT_ID
