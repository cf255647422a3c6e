"""Web identities over raw HTTP: Omegle clients keyed by a hashed coarse address, the key-minting limit, nothing raw kept."""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import socket

import aiohttp
import python_omegle

from bridge.policy.config import PolicySection
from bridge.policy.mod_cli import add_mod_parser, mod_command
from bridge.store import MemoryStore, SQLiteStore, parse_store_url
from plugins.web.identity import COOKIE, STATE_KEY, Identities, coarse_address
from tests.helpers import running

from .client import RawClient
from .conftest import web_config


def users(bridge) -> set[str]:
    return {s.start.user for room, s in bridge.router.sessions.items() if room.platform == "web" and s.start}


def test_coarse_address_is_the_network():
    assert coarse_address("203.0.113.77") == "203.0.113.0/24"
    assert coarse_address("::ffff:203.0.113.9") == "203.0.113.0/24"
    assert coarse_address("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert coarse_address("unknown") == "unknown"


async def from_address(source: str) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), family=socket.AF_INET)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15))


async def test_omegle_clients_are_keyed_by_their_hashed_network(caplog):
    caplog.set_level(logging.DEBUG)
    store = MemoryStore()
    async with running(web_config(address_keys=True), store=store) as bridge:
        web = bridge.platforms["web"]
        one, two, other = await from_address("127.0.0.5"), await from_address("127.0.0.9"), None
        try:
            a, b = RawClient(one, web.url), RawClient(two, web.url)
            await a.start()
            await b.start()  # the same /24: one person to moderation, yet two clients that may meet
            await a.until("connected")
            await b.until("connected")
            key = web.identities.address_key("127.0.0.5")
            assert users(bridge) == {key} and key.startswith("webaddr:")
            assert key == web.identities.address_key("127.0.0.200")
            assert await a.post("/send", msg="token-ab") == (200, "win")
            assert (await b.until("gotMessage"))[1] == "token-ab"
            assert await a.post("/disconnect") == (200, "win")
            await b.until("strangerDisconnected")

            # a browser's cookie key is another person: it meets the next client of that network
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                async with browser.get(web.url + "/") as response:
                    cookie = response.cookies[COOKIE].value
                c, e = RawClient(browser, web.url), RawClient(two, web.url)
                await c.start()
                await e.start()
                await c.until("connected")
                await e.until("connected")
                assert await c.post("/send", msg="token-c") == (200, "win")
                assert (await e.until("gotMessage"))[1] == "token-c"
                assert users(bridge) == {key, web.identities.cookie_key(cookie)}

            # a ban by the hashed address refuses the next start of every client of that network
            await bridge.router.moderator.sanctions.ban(key, 600.0)
            d = RawClient(two, web.url)
            await d.start()
            refusal = await d.until("serverMessage")
            assert refusal[1] == "You are banned from starting chats on this bridge for 10 min more." or (
                refusal[1].startswith("You are banned from starting chats on this bridge for 9 min"))
            await d.until("strangerDisconnected")

            # nothing raw is kept or logged: no address, no cookie value, no client id
            secrets_ = [cookie, a.id, b.id, c.id, d.id, e.id, "127.0.0.5", "127.0.0.9", "127.0.0.0/24"]  # (.1 is the bind)
            values = [v for (ns, k), v in store._kv.items()] + [k for (ns, k) in store._kv]
            assert values, "the store holds the identity secrets"
            for secret in secrets_:
                assert secret and not any(secret in v for v in values), secret
                assert not any(secret in r.getMessage() for r in caplog.records), secret
        finally:
            for session in (one, two, other):
                if session is not None:
                    await session.close()


async def test_python_omegle_survives_a_ban_notice():
    async with running(web_config(address_keys=True)) as bridge:
        web = bridge.platforms["web"]
        await bridge.router.moderator.sanctions.ban(web.identities.address_key("127.0.0.1"), 600.0, "spam")

        def chat() -> list:
            room = python_omegle.RandomChat()
            room._server_url = web.url  # the documented way to choose the server
            room.start()
            return [room.get_event() for _ in range(3)]

        events = await asyncio.wait_for(asyncio.to_thread(chat), 20)
        kinds = [e[0] for e in events]
        # python-omegle shows the notice, then (its own quirk) a simulated ready before the end
        ended = [python_omegle.ChatEvent.GOT_SERVER_NOTICE, python_omegle.ChatEvent.CHAT_READY,
                 python_omegle.ChatEvent.CHAT_ENDED]
        assert kinds == ended, events
        assert "banned" in events[0][1] and "Reason: spam." in events[0][1]


async def test_new_keys_per_network_are_limited_then_the_address_key_is_used():
    async with running(web_config(address_keys=True, new_keys_burst=3, new_keys_per_hour=0.001)) as bridge:
        web = bridge.platforms["web"]
        minted = []
        async with aiohttp.ClientSession() as http:  # a client that clears its cookies every time
            for _ in range(5):
                async with http.get(web.url + "/", headers={"Cookie": ""}) as response:
                    assert response.status == 200
                    minted.append(response.cookies[COOKIE].value if COOKIE in response.cookies else None)
                    http.cookie_jar.clear()
        assert all(minted[:3]) and len(set(minted[:3])) == 3 and minted[3:] == [None, None]
        # a known cookie is still honoured after the limit, and a forged one is not
        assert (await web.identities.for_page(minted[0], "127.0.0.1")).user == web.identities.cookie_key(minted[0])
        ident, _, signature = minted[0].partition(".")
        assert web.identities.cookie_key(f"{ident}.{signature[::-1]}") is None
        assert (await web.identities.for_page("forged.x", "127.0.0.1")).user == web.identities.address_key("127.0.0.1")


async def test_the_secret_rotates_and_the_previous_one_still_counts():
    now = [1000.0]
    store = MemoryStore()
    state = store.state_for("web")
    ids = Identities(state, rotation=100.0, mint_rate=1.0, mint_burst=5, clock=lambda: now[0])
    await ids.load()
    old = await ids.for_page(None, "10.0.0.1")
    assert old.cookie is not None
    now[0] += 101
    assert await ids.rotate_if_due()
    again = Identities(state, rotation=100.0, mint_rate=1.0, mint_burst=5, clock=lambda: now[0])
    await again.load()  # a restart reads the same secrets
    renewed = await again.for_page(old.cookie, "10.0.0.1")
    assert renewed.user == old.user and renewed.cookie not in (None, old.cookie)  # re-signed
    assert again.address_key("10.0.0.1") == ids.address_key("10.0.0.77")  # the address secret stays
    now[0] += 101
    assert await again.rotate_if_due()
    assert again.cookie_key(old.cookie) is None  # two rotations old: no longer taken
    assert again.cookie_key(renewed.cookie) == old.user


async def test_instances_that_start_or_rotate_at_once_agree_on_the_secrets_after_a_refresh():
    # Two instances on one shared store (Redis mode): each made or rotated its own secret at the same
    # moment; the store keeps the last write, and a refresh (every sweep) takes it, so a cookie signed
    # by either verifies on both.
    now = [1000.0]
    state = MemoryStore().state_for("web")
    one, two = (Identities(state, rotation=100.0, mint_rate=1.0, mint_burst=5, clock=lambda: now[0]) for _ in range(2))
    await one.load()
    await state.set(STATE_KEY, None)  # as if two had read the store before one saved: both make their own
    await two.load()  # the last to save wins the store
    first = await one.for_page(None, "10.0.0.1")
    assert two.cookie_key(first.cookie) is None  # they disagree until they refresh
    for ids in (one, two):
        await ids.refresh()
    cookie = (await two.for_page(None, "10.0.0.2")).cookie
    assert one.cookie_key(cookie) == two.cookie_key(cookie) is not None
    assert one.address_key("10.0.0.1") == two.address_key("10.0.0.1")
    now[0] += 101
    assert await one.rotate_if_due()
    await two.refresh()
    assert not await two.rotate_if_due()  # rotated by the other instance already
    rotated = (await one.for_page(None, "10.0.0.3")).cookie
    assert two.cookie_key(rotated) == one.cookie_key(rotated) is not None
    assert two.cookie_key(cookie) is not None  # the previous secret still counts on both


async def test_stranger_bridge_mod_ban_web_key_refuses_that_browsers_next_start(tmp_path):
    state = tmp_path / "state.sqlite3"
    async with running(web_config(), store=SQLiteStore(state)) as bridge:
        web = bridge.platforms["web"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(web.url + "/") as response:
                key = web.identities.cookie_key(response.cookies[COOKIE].value)
            parser = argparse.ArgumentParser(prog="stranger-bridge")
            add_mod_parser(parser.add_subparsers(dest="command", required=True))
            args = parser.parse_args(["mod", "ban", key, "--for", "1h", "--reason", "abuse"])
            out = io.StringIO()
            url = parse_store_url(f"sqlite:///{state}")
            code = await asyncio.to_thread(mod_command, args, url, "stranger-bridge:", PolicySection(), out)
            assert code == 0 and out.getvalue().startswith(f"banned {key} until "), out.getvalue()
            client = RawClient(browser, web.url)  # the page's own protocol calls carry the cookie
            await client.start()
            notice = await client.until("serverMessage")
            assert notice[1].startswith("You are banned from starting chats on this bridge for ")
            assert notice[1].endswith(" more. Reason: abuse."), notice
            await client.until("strangerDisconnected")
            assert "waiting" not in client.names()


async def test_clients_of_one_network_share_the_larger_start_allowance_of_a_shared_key():
    config = web_config(address_keys=True)
    config["policy"] = {"max_starts": 2, "max_shared_starts": 6, "start_cooldown": "1h"}
    async with running(config) as bridge:
        web = bridge.platforms["web"]
        async with aiohttp.ClientSession() as http:
            clients = [RawClient(http, web.url) for _ in range(7)]
            for client in clients[:6]:  # past max_starts and the cooldown: a shared key gets 6
                await client.start()
            for first, second in zip(clients[0:6:2], clients[1:6:2]):
                await first.until("connected")
                await second.until("connected")
            await clients[6].start()  # the seventh start of the network waits
            told = await clients[6].until("serverMessage")
            assert told[1].startswith("You are starting chats too quickly. Try again in"), told


async def test_instances_sharing_redis_count_an_address_new_keys_together(tmp_path):
    # Behind a load balancer a browser that clears its cookies may land on any instance: the
    # address's allowance of new keys (5 at once) is one for all instances, not 5 on each.
    from tests.redisproc import RedisServer
    from tests.store.test_redis_store import open_redis

    server = RedisServer(tmp_path / "r").start()
    one_store, two_store = await open_redis(server.url, "a"), await open_redis(server.url, "b")
    try:
        one, two = (
            Identities(s.state_for("web"), rotation=3600.0, mint_rate=5 / 3600, mint_burst=5)
            for s in (one_store, two_store)
        )
        await one.load()
        await two.load()
        got = await asyncio.gather(*((one, two)[n % 2].for_page(None, "10.0.0.9") for n in range(12)))
        minted = [i for i in got if i.cookie is not None]
        assert len(minted) == 5 and len({i.user for i in minted}) == 5
        # beyond the allowance, on either instance, the browser is its hashed address
        assert {i.user for i in got if i.cookie is None} == {one.address_key("10.0.0.9")} == {two.address_key("10.0.0.9")}
        assert (await two.for_page(None, "10.1.0.9")).cookie is not None  # another network mints its own
    finally:
        await one_store.close()
        await two_store.close()
        server.stop()
