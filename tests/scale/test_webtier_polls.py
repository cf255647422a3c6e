"""The web tier in Redis mode: the cap on open polls per address holds across instances, and a killed instance's polls stop counting."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import redis.asyncio as aioredis

from .daemon import PREFIX, Daemon
from .test_webtier import TIMEOUT, Roaming, has, paired

WEB = "max_polls_per_address = 2\npoll_window = 6.0"  # a poll stays open 6 s unless something comes; counted 11 s


async def counted(r: aioredis.Redis) -> list[str]:
    """The open polls of 127.0.0.1 counted in Redis now, "instance:poll" each (the test's only address)."""
    keys = [key async for key in r.scan_iter(match=f"{PREFIX}web:web:p:*")]
    assert len(keys) <= 1, keys
    return sorted(await r.zrange(keys[0], 0, -1)) if keys else []


async def until_counted(r: aioredis.Redis, test) -> list[str]:
    async with asyncio.timeout(30):
        while not test(members := await counted(r)):
            await asyncio.sleep(0.05)
    return members


async def test_open_polls_per_address_are_capped_across_instances_and_a_killed_instances_polls_expire(tmp_path, redis_server):
    a = Daemon(tmp_path, redis_server.url, "a", lease=1.5, web=WEB)
    b = Daemon(tmp_path, redis_server.url, "b", lease=1.5, web=WEB)
    await a.start()
    await b.start()
    rng = random.Random(30)
    r = aioredis.from_url(redis_server.url, decode_responses=True)
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = await paired(http, a.url, b.url, [a.url], rng)
            third = Roaming(http, "third")  # owned by b, waiting alone: its polls stay open their window
            await third.start(b.url)
            assert has("waiting")(third.events)
            assert await counted(r) == []  # every poll so far was answered and is no longer counted

            async def keep_polling() -> None:  # third always has a poll open on b (one of the two)
                while not stop.is_set():
                    await third.poll(b.url)

            on_b = asyncio.create_task(keep_polling())
            on_a = asyncio.create_task(w.poll(a.url))
            await until_counted(r, lambda m: sorted(x.split(":")[0] for x in m) == ["a", "b"])
            assert await p.post(b.url, "/events") == (429, "fail")  # a third poll, on b: a's counts there
            assert await p.post(a.url, "/events") == (429, "fail")  # and on a, b's
            assert await p.post(b.url, "/send", msg="answer-w") == (200, "win")  # w's poll on a is answered
            assert (await on_a) is not None and "answer-w" in w.texts()
            await until_counted(r, lambda m: [x.split(":")[0] for x in m] == ["b"])  # its end uncounted it
            on_a = asyncio.create_task(w.poll(a.url))  # the place is free again: taken on a
            await until_counted(r, lambda m: sorted(x.split(":")[0] for x in m) == ["a", "b"])
            await a.kill()  # w's poll on a is never ended: only its lease (window + margin) ends its count
            assert [x for x in await counted(r) if x.startswith("a:")]
            assert await p.post(b.url, "/events") == (429, "fail")  # the dead a's poll still counts
            async with asyncio.timeout(60):
                # Until a poll on b is let in with a's count gone (one let in while third's poll was between
                # two, a's still counted, proves nothing: it waits its window or its chat's end, and again).
                while (await p.post(b.url, "/events"))[0] == 429 or [x for x in await counted(r) if x.startswith("a:")]:
                    await asyncio.sleep(0.2)
            stop.set()
            on_a.cancel()
            await asyncio.gather(on_a, return_exceptions=True)
            await asyncio.wait_for(on_b, 30)
    finally:
        stop.set()
        await r.aclose()
        await asyncio.gather(a.stop(), b.stop())
