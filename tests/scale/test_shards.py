"""Discord sharding: two instances (Bridges, then daemon processes) run one bot token as shards 0 and 1 of 2 on one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from bridge.app import Bridge
from tests.discord.conftest import bridge_config, server
from tests.discord.fakebase import GUILD_ID, shard_of
from tests.discord.guarded import GuardedDiscord
from tests.discord.util import notices, open_chat, stranger_lines, wait_line, wait_notice
from tests.helpers import config
from tests.redisproc import free_port

from .conftest import LEASE, PREFIX

__all__ = ["server"]  # the fake Discord server fixture, used by name

ROOT = Path(__file__).resolve().parents[2]


def shard_config(server, url: str, shard: int, **discord) -> dict:
    data = bridge_config(server, shard_count=2, shard_ids=[shard], dm=True, **discord)
    del data["platforms"]["rec"]
    data["bridge"] = {"store": url, "store_prefix": PREFIX, "instance": f"shard{shard}", "instance_lease": LEASE}
    return data


@contextlib.asynccontextmanager
async def two_shards(server, url: str, **discord):
    """Instance "shard0" runs shard 0 of 2, "shard1" shard 1; both ready (each its own gateway session)."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Bridge(config(shard_config(server, url, n, **discord)))) for n in (0, 1)]


def guild_pair(server) -> tuple[int, int]:
    """A text channel in a guild of shard 0, and one in the default guild (which falls on shard 1)."""
    assert shard_of(GUILD_ID, 2) == 1
    _, (zero,) = server.add_guild(shard=0, count=2)
    return zero, server.text_channels[0]


async def meet(server, zero: int, one: int) -> tuple[tuple[int, int, dict], tuple[int, int, dict]]:
    """Alice starts in channel `zero` and waits; Bob starts in `one`: both told they are chatting.
    Returns (user, thread, start interaction) of each."""
    alice, bob = server.add_user("alice"), server.add_user("bob")
    t0, start0 = await open_chat(server, alice, zero)
    await wait_notice(server, t0, "Looking for someone")
    t1, start1 = await open_chat(server, bob, one)
    await wait_notice(server, t1, "You're now chatting")
    await wait_notice(server, t0, "You're now chatting")
    return (alice, t0, start0), (bob, t1, start1)


async def chat_both_ways(server, zero: tuple[int, int], one: tuple[int, int], n: int) -> None:
    """Each user sends `n` unique lines, interleaved: nothing lost, nothing doubled, in order, each
    line once and in the other shard's guild only."""
    (alice, t0), (bob, t1) = zero, one
    run = secrets.token_hex(4)
    from_zero = [f"zero-{run}-{i}" for i in range(n)]
    from_one = [f"one-{run}-{i}" for i in range(n)]
    for a, b in zip(from_zero, from_one, strict=True):
        await server.user_message(t0, alice, a)
        await server.user_message(t1, bob, b)
    await wait_line(server, t1, from_zero[-1])
    await wait_line(server, t0, from_one[-1])
    assert [content for _, content in stranger_lines(server, t1)] == from_zero
    assert [content for _, content in stranger_lines(server, t0)] == from_one


async def test_each_guilds_start_is_handled_only_by_the_instance_of_its_shard(redis_server, server):
    zero, one = guild_pair(server)
    async with two_shards(server, redis_server.url) as (b0, b1):
        assert sorted(server.shard_sessions) == [0, 1] and server.session is None
        dc0, dc1 = b0.platforms["dc"], b1.platforms["dc"]
        assert [g.id for g in dc0.client.guilds] == [server.guild_of(zero)]
        assert [g.id for g in dc1.client.guilds] == [GUILD_ID]
        (alice, t0, start0), (bob, t1, start1) = await meet(server, zero, one)
        # Each start was answered once, by the instance of its guild's shard; the other never saw it.
        for payload in (start0, start1):
            assert [r["kind"] for r in server.replies(payload) if r.get("kind") == "callback"] == ["callback"]
        callbacks = server.writes("POST", r"/interactions/.*/callback")
        assert callbacks and all(200 <= r.status < 300 for r in callbacks)  # a second answer would be a 400
        assert int(start0["id"]) in dc0.commands.seen_interactions and int(start0["id"]) not in dc1.commands.seen_interactions
        assert int(start1["id"]) in dc1.commands.seen_interactions and int(start1["id"]) not in dc0.commands.seen_interactions
        assert list(dc0.threads) == [t0] and list(dc1.threads) == [t1]
        assert len(server.threads()) == 2
        # The thread lists are one key per shard, each written only by its instance: no shared list.
        await dc0.flush()
        await dc1.flush()
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            kv = await r.hgetall(f"{PREFIX}kv:platform:dc")
        finally:
            await r.aclose()
        assert "threads" not in kv and "counter" not in kv and "interactions" not in kv
        assert json.loads(kv["threads:0/2"]) == [t0] and json.loads(kv["threads:1/2"]) == [t1]
        assert kv["counter:0/2"] == "1" and kv["counter:1/2"] == "1"
        assert kv["interactions:0/2"] == start0["id"] and kv["interactions:1/2"] == start1["id"]
        # A direct message goes to shard 0: its instance answers it; the other never sees it.
        carol = server.add_user("carol")
        dm = server.dm_channel(carol)
        start_dm = await server.slash(carol, dm, "start")
        await wait_notice(server, dm, "Looking for someone")
        assert [r["kind"] for r in server.replies(start_dm) if r.get("kind") == "callback"] == ["callback"]
        assert int(start_dm["id"]) in dc0.commands.seen_interactions
        assert int(start_dm["id"]) not in dc1.commands.seen_interactions and dm not in dc1.threads
        assert dm in dc0.threads


async def test_users_of_guilds_on_different_shards_meet_and_chat_both_ways(redis_server, server):
    zero, one = guild_pair(server)
    async with two_shards(server, redis_server.url):
        (alice, t0, _), (bob, t1, _) = await meet(server, zero, one)
        await chat_both_ways(server, (alice, t0), (bob, t1), 15)
        assert not any("not delivered" in n.lower() for n in notices(server, t0) + notices(server, t1))
        await server.slash(alice, t0, "stop")
        assert len(await wait_notice(server, t1, "disconnected")) == 1


def check_config(tmp_path: Path, discord: str) -> subprocess.CompletedProcess:
    path = tmp_path / "bridge.toml"
    path.write_text(f'[platforms.discord]\nplugin = "discord"\ntoken = "abc.def.ghi"\n{discord}\n')
    return subprocess.run([sys.executable, "-m", "bridge", "check-config", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_wrong_shard_settings_are_config_errors_naming_the_key(tmp_path):
    for setting, says in [
        ("shard_count = 2\nshard_ids = [0, 2]", "out of range"),
        ("shard_ids = [0]", "needs shard_count"),
        ("shard_count = 3\nshard_ids = [1, 1]", "twice"),
        ("shard_count = 2\nshard_ids = []", "empty"),
    ]:
        res = check_config(tmp_path, setting)
        assert res.returncode == 2, (setting, res.stdout, res.stderr)
        assert "platforms.discord.shard_ids" in res.stderr and says in res.stderr, (setting, res.stderr)
    res = check_config(tmp_path, "shard_count = 0")
    assert res.returncode == 2 and "platforms.discord.shard_count" in res.stderr, res.stderr
    res = check_config(tmp_path, "shard_count = 2\nshard_ids = [1]")
    assert res.returncode == 0 and res.stdout.strip() == "OK", res.stdout + res.stderr


async def test_an_instance_restarted_under_its_name_takes_its_shards_threads_back(redis_server, server):
    zero, one = guild_pair(server)
    async with Bridge(config(shard_config(server, redis_server.url, 1))):
        first = Bridge(config(shard_config(server, redis_server.url, 0)))
        await first.__aenter__()
        try:
            (alice, t0, _), (bob, t1, _) = await meet(server, zero, one)
            run = secrets.token_hex(4)
            await server.user_message(t0, alice, f"before-{run}")
            await wait_line(server, t1, f"before-{run}")
        finally:
            await first.__aexit__(None, None, None)
        # Shard 0's instance is away: what Bob sends meanwhile waits for it.
        gap = [f"gap-{run}-{i}" for i in range(5)]
        for line in gap:
            await server.user_message(t1, bob, line)
        async with Bridge(config(shard_config(server, redis_server.url, 0))) as again:
            dc0 = again.platforms["dc"]
            assert list(dc0.threads) == [t0]  # read back from its shard's own thread list
            await wait_line(server, t0, gap[-1])
            await server.user_message(t0, alice, f"back-{run}")
            await wait_line(server, t1, f"back-{run}")
            assert [c for _, c in stranger_lines(server, t0)] == gap
            assert [c for _, c in stranger_lines(server, t1)] == [f"before-{run}", f"back-{run}"]
            assert not [n for n in notices(server, t0) + notices(server, t1) if "restarted" in n or "disconnected" in n]


async def test_the_shared_moderation_log_is_followed_by_the_process_of_shard_0_only(redis_server, server, monkeypatch):
    monkeypatch.setattr(GuardedDiscord, "options", {"modlog_every": 0.05})
    log_channel = server.text_channels[1]
    guild_pair(server)
    async with two_shards(server, redis_server.url, mod_log_channel=log_channel) as (b0, b1):
        # Both read one core log in the shared store: shard 1's follower returns at once ...
        await asyncio.wait_for(b1.platforms["dc"].modlog.follow(0.05), 10)
        # ... and shard 0's posts each record once (through REST, whichever shard the channel is on).
        assert shard_of(server.guild_of(log_channel), 2) == 1
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:  # shard 0's follower started from here (earlier records are history, never posted)
            async with asyncio.timeout(10):
                while await r.hget(f"{PREFIX}kv:platform:dc", "modlog:seq") is None:
                    await asyncio.sleep(0.02)
        finally:
            await r.aclose()
        await b1.moderator.sanctions.ban("web:00000000000000aa", 3600, "flooding")
        await b0.moderator.sanctions.ban("web:00000000000000dd", None, "marker")
        entries = await server.wait_until(
            lambda: (found := [m["content"] for m in server.bot_messages(log_channel)]) and "marker" in found[-1] and found
        )
        assert entries == ["**Ban** by the bridge operator: flooding.", "**Ban** by the bridge operator: marker."]


@contextlib.asynccontextmanager
async def shard_daemons(tmp_path: Path, server, url: str):
    """Two `python -m bridge run` processes, one per shard of 2, sharing the Redis at `url`."""
    procs: list[asyncio.subprocess.Process] = []
    logs: list[list[str]] = []
    try:
        for shard in (0, 1):
            path = tmp_path / f"shard{shard}.toml"
            path.write_text(f"""
[bridge]
store = "{url}"
store_prefix = "{PREFIX}"
instance = "shard{shard}"
instance_lease = {LEASE}
log_level = "INFO"
shutdown_timeout = 5
metrics_bind = "127.0.0.1:{free_port()}"
[platforms.dc]
plugin = "tests.discord.guarded:GuardedDiscord"
token = "test-bot-token"
api_base = "{server.api_base}"
gateway_url = "{server.gateway_url}"
guild_ready_timeout = 0.05
start_cooldown = 0
shard_count = 2
shard_ids = [{shard}]
[backends.hub]
plugin = "hub"
repair_cooldown = 0
interest_fallback = 0
""")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", "run", "-c", str(path), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            procs.append(proc)
            lines: list[str] = []
            logs.append(lines)
            async with asyncio.timeout(60):
                async for raw in proc.stderr:  # type: ignore[union-attr]
                    lines.append(raw.decode(errors="replace"))
                    if "stranger-bridge running" in lines[-1]:
                        break
            assert proc.returncode is None and "stranger-bridge running" in lines[-1], "".join(lines)[-3000:]
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc, lines in zip(procs, logs, strict=False):
            _, rest = await asyncio.wait_for(proc.communicate(), 30)
            lines.append(rest.decode(errors="replace"))
            assert proc.returncode == 0, "".join(lines)[-3000:]


async def test_two_daemon_processes_of_one_token_split_the_guilds_and_pair_across(tmp_path, redis_server, server):
    zero, one = guild_pair(server)
    async with shard_daemons(tmp_path, server, redis_server.url):
        await server.wait_until(lambda: sorted(server.shard_sessions) == [0, 1], timeout=30)
        (alice, t0, start0), (bob, t1, start1) = await meet(server, zero, one)
        for payload in (start0, start1):  # each start answered once: only its shard's process saw it
            assert [r["kind"] for r in server.replies(payload) if r.get("kind") == "callback"] == ["callback"]
        callbacks = server.writes("POST", r"/interactions/.*/callback")
        assert len(callbacks) == 2 and all(200 <= r.status < 300 for r in callbacks)
        assert len(server.threads()) == 2
        await chat_both_ways(server, (alice, t0), (bob, t1), 10)
        await server.slash(bob, t1, "stop")
        assert len(await wait_notice(server, t0, "disconnected")) == 1
