"""The web tier in Redis mode: pictures uploaded on any instance, served by every instance, bounded per client across instances."""

from __future__ import annotations

import asyncio
import io
import json
import random
import secrets
import signal

import aiohttp
import redis.asyncio as aioredis
from PIL import Image as Pil

from plugins.web.pictures import MAX_PER_CLIENT

from .daemon import PREFIX, Daemon
from .test_webtier import TIMEOUT, Roaming, has

WEB = "images = true\nimage_max_bytes = 200000"
IMAGES = "[bridge.images]\nrate = 100.0\nburst = 100"  # the per-chat picture rate is not what is tested


def picture(n: int) -> bytes:
    """A JPEG of its own colour (so each picture's bytes differ)."""
    out = io.BytesIO()
    Pil.new("RGB", (64, 48), (n * 7 % 256, 120, 200)).save(out, "JPEG")
    return out.getvalue()


async def upload(http: aiohttp.ClientSession, url: str, client: Roaming, data, ref: str) -> tuple[int, str]:
    headers = {"X-Client-ID": client.id or "", "X-Ref": ref, "Content-Type": "image/jpeg"}
    async with http.post(url + "/upload", data=data, headers=headers) as response:
        return response.status, await response.text()


async def fetch(http: aiohttp.ClientSession, url: str, path: str) -> tuple[int, bytes]:
    async with http.get(url + path) as response:
        return response.status, await response.read()


def pictures_shown(client: Roaming) -> list[str]:
    return [e[2]["image"]["url"] for e in client.events if e[0] == "gotMessage" and len(e) > 2 and "image" in e[2]]


async def test_pictures_are_uploaded_on_any_instance_served_by_every_one_and_bounded_per_client_across_them(tmp_path, redis_server):
    a = Daemon(tmp_path, redis_server.url, "a", hub="resume_window = 60", web=WEB, extra=IMAGES)
    b = Daemon(tmp_path, redis_server.url, "b", hub="resume_window = 60", web=WEB, extra=IMAGES)
    await a.start()
    await b.start()
    urls = [a.url, b.url]
    rng = random.Random(50)
    r = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = Roaming(http, "w"), Roaming(http, "p")
            await w.start(a.url, rich="1")  # owned by a; its pictures go through b
            await w.until([b.url], has("waiting"))
            await p.start(b.url, rich="1")  # owned by b; it polls a
            await asyncio.gather(w.until([b.url], has("connected")), p.until([a.url], has("connected")))

            status, body = await upload(http, b.url, w, picture(1), "u1")
            assert status == 200, body
            mine = [json.loads(body)["url"]]
            for url in urls:  # the sender's own view of it, on either instance
                status, data = await fetch(http, url, mine[0])
                assert status == 200 and Pil.open(io.BytesIO(data)).size == (64, 48)
            await p.until([a.url], lambda _: len(pictures_shown(p)) == 1)
            shown = {await fetch(http, url, pictures_shown(p)[0]) for url in urls}
            assert len(shown) == 1 and next(iter(shown))[0] == 200  # the same picture from both

            # One upload at a time per client, on every instance: a slow one on a holds b's off.
            release = asyncio.Event()

            async def slow_body():
                data = picture(2)
                yield data[:100]
                await release.wait()
                yield data[100:]

            slow = asyncio.create_task(upload(http, a.url, w, slow_body(), "u2"))
            async with asyncio.timeout(30):
                while not [key async for key in r.scan_iter(match=f"{PREFIX}web:web:up:*")]:
                    await asyncio.sleep(0.02)
            assert await upload(http, b.url, w, picture(3), "u3") == (429, "fail: one picture at a time")
            release.set()
            status, body = await slow
            assert status == 200, body
            mine.append(json.loads(body)["url"])

            # More than MAX_PER_CLIENT, through both instances: the oldest go, on every instance.
            for n in range(4, MAX_PER_CLIENT + 4):
                status, body = await upload(http, rng.choice(urls), w, picture(n), f"u{n}")
                assert status == 200, body
                mine.append(json.loads(body)["url"])
            total = len(mine)
            assert total > MAX_PER_CLIENT
            try:
                await p.until(urls, lambda _: len(pictures_shown(p)) == total, rng=rng, timeout=10)
            except TimeoutError:
                raise AssertionError(f"{len(pictures_shown(p))} {total} {[e for e in p.events if e[0] != 'gotMessage']}") from None
            assert len(set(pictures_shown(p))) == total  # each once
            for owned in (mine, pictures_shown(p)):
                for url in urls:
                    for gone in owned[: total - MAX_PER_CLIENT]:
                        assert (await fetch(http, url, gone))[0] == 404, gone
                    for kept in owned[total - MAX_PER_CLIENT :]:
                        assert (await fetch(http, url, kept))[0] == 200, kept

            # Deleting the newest line, through b: its picture goes for both clients, on every instance.
            last = f"u{MAX_PER_CLIENT + 3}"
            assert await w.post(b.url, "/delete", ref=last) == (200, "win")
            try:
                await p.until(urls, has("retract"), rng=rng, timeout=10)
            except TimeoutError:
                raise AssertionError(f"{p.events[-5:]}\n{''.join(a.log)[-3000:]}\n{''.join(b.log)[-2000:]}") from None
            for url in urls:
                assert (await fetch(http, url, mine[-1]))[0] == 404
                assert (await fetch(http, url, pictures_shown(p)[-1]))[0] == 404
                assert (await fetch(http, url, mine[-2]))[0] == 200
    finally:
        await r.aclose()
        await asyncio.gather(a.stop(), b.stop())


async def test_an_upload_on_b_that_its_stopped_owner_does_not_take_in_time_is_refused_and_never_sent(tmp_path, redis_server):
    a = Daemon(tmp_path, redis_server.url, "a", lease=6.0, hub="resume_window = 60", web=WEB, extra=IMAGES)
    b = Daemon(tmp_path, redis_server.url, "b", lease=6.0, hub="resume_window = 60", web=WEB, extra=IMAGES)
    await a.start()
    await b.start()
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = Roaming(http, "w"), Roaming(http, "p")
            await w.start(a.url, rich="1")
            await w.until([b.url], has("waiting"))
            await p.start(b.url, rich="1")
            await asyncio.gather(w.until([b.url], has("connected")), p.until([b.url], has("connected")))
            assert a.proc is not None
            a.proc.send_signal(signal.SIGSTOP)  # the owner takes nothing from its stream for a while
            try:
                status, body = await upload(http, b.url, w, picture(1), "u1")
                assert (status, body) == (503, "fail: not sent: the chat's server did not answer in time; try again")
            finally:
                a.proc.send_signal(signal.SIGCONT)
            await a.wait_log("forwarded actions came after their askers were told they failed")
            marker = f"marker-{secrets.token_hex(3)}"
            assert await w.post(b.url, "/send", msg=marker) == (200, "win")  # after the upload, in a's stream
            await p.until([b.url], lambda _: marker in p.texts())
            assert pictures_shown(p) == [] and p.texts() == [marker]  # the refused picture never came
            status, body = await upload(http, b.url, w, picture(2), "u2")  # the owner answers again: sent
            assert status == 200, body
            await p.until([b.url], lambda _: len(pictures_shown(p)) == 1)
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_persons_picture_allowance_counts_their_chats_on_every_instance(tmp_path, redis_server):
    allowance = IMAGES + "\n[policy]\nmax_images = 2\nimage_window = 600"
    a = Daemon(tmp_path, redis_server.url, "a", hub="resume_window = 60", web=WEB, extra=allowance)
    b = Daemon(tmp_path, redis_server.url, "b", hub="resume_window = 60", web=WEB, extra=allowance)
    await a.start()
    await b.start()
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            async with http.get(a.url + "/") as response:  # one browser: its key, valid on every instance
                key = f"sbkey={response.cookies['sbkey'].value}"
            chats = []
            for own, other in ((a, b), (b, a)):  # the person's first chat runs on a, the second on b
                w, p = Roaming(http, "w"), Roaming(http, "p")
                await w.start(own.url, cookie=key, rich="1")
                await w.until([own.url], has("waiting"))
                await p.start(other.url, rich="1")
                await asyncio.gather(w.until([own.url], has("connected")), p.until([other.url], has("connected")))
                chats.append((w, p))
            (w1, p1), (w2, p2) = chats
            for n, url in ((1, b.url), (2, a.url)):  # two pictures in the chat on a: the allowance
                assert (await upload(http, url, w1, picture(n), f"u{n}"))[0] == 200
            await p1.until([b.url], lambda _: len(pictures_shown(p1)) == 2)
            assert (await upload(http, a.url, w2, picture(3), "u1"))[0] == 200  # the chat on b: taken by b...
            await w2.until([b.url], lambda events: any("too many pictures" in str(e) for e in events))  # ...and refused
            marker = f"marker-{secrets.token_hex(3)}"
            assert await w2.post(b.url, "/send", msg=marker) == (200, "win")
            await p2.until([a.url], lambda _: marker in p2.texts())
            assert pictures_shown(p2) == [] and p2.texts() == [marker]  # the third picture never came
    finally:
        await asyncio.gather(a.stop(), b.stop())
