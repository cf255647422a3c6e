"""The web tier in Redis mode: an action forwarded to its client's owner takes effect once, even when the stream delivers it again after the owner restarted."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import signal

import aiohttp
import redis.asyncio as aioredis

from .daemon import PREFIX
from .test_webtier import TIMEOUT, paired, two

STREAM = f"{PREFIX}web:web:web:stream:a"  # the web tier's relay stream that instance a reads


async def test_a_forwarded_send_delivered_again_after_its_owner_was_killed_and_restarted_is_shown_once(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url, lease=6.0)  # the restarted a waits out its old lease
    rng = random.Random(40)
    r = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = await paired(http, a.url, b.url, [b.url], rng)  # w is owned by a and only ever talks to b
            token = f"once-{secrets.token_hex(4)}"
            assert a.proc is not None
            a.proc.send_signal(signal.SIGSTOP)  # a reads nothing: the forwarded action waits in its stream
            try:
                assert await w.post(b.url, "/send", msg=token) == (200, "win")  # b forwards it to a
                entries = await r.xrange(STREAM)
                forwarded = [f["e"] for _, f in entries if json.loads(f["e"]).get("f", {}).get("msg") == token]
                assert len(forwarded) == 1, entries
            finally:
                a.proc.send_signal(signal.SIGCONT)
            try:
                await p.until([b.url], lambda _: token in p.texts())
            except TimeoutError:
                raise AssertionError("".join(a.log)[-4000:] + "\n=====B\n" + "".join(b.log)[-3000:]) from None
            async with asyncio.timeout(30):  # applied and acknowledged: a deleted it from its stream
                while any(f["e"] == forwarded[0] for _, f in await r.xrange(STREAM)):
                    await asyncio.sleep(0.05)
            await a.kill()
            await a.start()  # the same name: it takes w back
            # The stream hands the same envelope to a once more (what it does for an entry a read and did
            # not acknowledge before it was killed: at least once), then a marker action after it.
            await r.xadd(STREAM, {"e": forwarded[0]})
            marker = f"marker-{secrets.token_hex(4)}"
            assert await w.post(b.url, "/send", msg=marker) == (200, "win")
            await p.until([b.url], lambda _: marker in p.texts())
            assert p.texts() == [token, marker]  # once each, in order: the replay took no effect
            await a.wait_log("a forwarded action delivered again was dropped")  # it was read, and dropped
            assert "strangerDisconnected" not in w.names() + p.names()
    finally:
        await r.aclose()
        await asyncio.gather(a.stop(), b.stop())
