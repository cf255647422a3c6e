"""The web tier in Redis mode: a no-JavaScript chat started on one instance, its page streamed and its form posted on any instance, reloads anywhere."""

from __future__ import annotations

import asyncio
import html
import random
import re
import secrets

import aiohttp

from .test_webtier import TIMEOUT, Roaming, has, two

LINE = re.compile(r'<p class="line (stranger|you)[^"]*"[^>]*>.*?<(?:bdi|i) class="text">([^<]*)</(?:bdi|i)>', re.S)
STREAM = aiohttp.ClientTimeout(total=None, sock_read=60)


class Page:
    """One no-JS chat page: the streams of its chat (each reload is a new one) on whichever instance."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.secret = ""
        self.body = b""
        self.response: aiohttp.ClientResponse | None = None
        self.reader: asyncio.Task | None = None

    async def start(self, url: str) -> None:
        async with self.http.post(url + "/nojs/start", data={"interests": ""}, allow_redirects=False) as response:
            assert response.status == 303, await response.text()
            self.secret = response.cookies["nojs"].value

    async def open(self, url: str) -> None:
        """GET /nojs/chat on `url` (a reload, when a stream was open): its body is read from the start."""
        self.close()
        self.body = b""
        self.response = await self.http.get(url + "/nojs/chat", headers={"Cookie": f"nojs={self.secret}"}, timeout=STREAM)
        assert self.response.status == 200, await self.response.text()
        self.reader = asyncio.create_task(self._read(self.response))

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        async for chunk in response.content.iter_any():
            self.body += chunk

    def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.response is not None:
            self.response.close()
        self.reader = self.response = None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def lines(self, kind: str) -> list[str]:
        """The texts of the page's stranger or own ("you") lines, in order."""
        return [html.unescape(text) for who, text in LINE.findall(self.text()) if who == kind]

    async def until(self, test, timeout: float = 30) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not test(self):
                    if self.reader is not None and self.reader.done() and not test(self):
                        raise AssertionError(f"the stream closed: {self.text()[-2000:]}")
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"not shown: {self.text()[-1500:]}") from None

    async def closed(self, timeout: float = 30) -> None:
        assert self.reader is not None
        await asyncio.wait_for(asyncio.shield(self.reader), timeout)

    async def send(self, url: str, **form: str) -> tuple[int, str]:
        async with self.http.post(url + "/nojs/send", data={"id": self.secret, **form}) as response:
            return response.status, await response.text()


def tokens(label: str, n: int) -> list[str]:
    return [f"{label}-{secrets.token_hex(3)}-{i}" for i in range(n)]


async def chatting(http: aiohttp.ClientSession, start: str, stream: str, partner_on: str, urls: list[str], rng, **partner: str):
    """A no-JS chat started on `start` and streamed on `stream`, connected to a JS client started on `partner_on`."""
    page = Page(http)
    await page.start(start)
    await page.open(stream)
    await page.until(lambda p: "Looking for someone" in p.text())
    other = Roaming(http, "partner")
    await other.start(partner_on, **partner)
    await other.until(urls, has("connected"), rng=rng)
    await page.until(lambda p: "now chatting" in p.text())
    return page, other


async def test_a_nojs_chat_started_on_a_is_streamed_and_sent_on_b_and_reloaded_anywhere_without_a_line_lost_or_twice(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url)
    urls = [a.url, b.url]
    rng = random.Random(60)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            # owned by a; everything after goes to b, then anywhere
            page, partner = await chatting(http, a.url, b.url, a.url, urls, rng, rich="1")

            theirs, mine = tokens("theirs", 20), tokens("mine", 20)
            for i in range(10):  # both ways, the page's form posted on b (forwarded to a)
                assert await partner.post(rng.choice(urls), "/send", msg=theirs[i]) == (200, "win")
                status, form = await page.send(b.url, msg=mine[i])
                assert status == 200 and page.secret in form  # the form again, for the next message
            await page.until(lambda p: p.lines("stranger") == theirs[:10] and p.lines("you") == mine[:10])
            await partner.until(urls, lambda _: partner.texts() == mine[:10], rng=rng)

            # Reloads: each stream shows every line so far once, then what follows; lines sent while no
            # stream is open are shown by the next one, once.
            for i in range(10, 20):
                page.close()
                assert await partner.post(rng.choice(urls), "/send", msg=theirs[i]) == (200, "win")
                assert (await page.send(rng.choice(urls), msg=mine[i]))[0] == 200
                await page.open(rng.choice(urls))
                await page.until(lambda p: p.lines("stranger") == theirs[: i + 1] and p.lines("you") == mine[: i + 1])
            await partner.until(urls, lambda _: partner.texts() == mine, rng=rng)
            assert page.text().count("now chatting") == 1

            # A line already shown changes (the partner edits it): the page redraws itself once; the
            # stream after shows the line as it is now, every other line once.
            edited = f"edited-{secrets.token_hex(3)}"
            assert await partner.post(b.url, "/send", msg="edit-me", ref="u1") == (200, "win")
            await page.until(lambda p: p.lines("stranger")[-1:] == ["edit-me"])
            assert await partner.post(a.url, "/edit", ref="u1", msg=edited) == (200, "win")
            await page.until(lambda p: '<meta http-equiv="refresh"' in p.text())
            await page.closed()
            await page.open(a.url)
            await page.until(lambda p: p.lines("stranger") == [*theirs, edited] and p.lines("you") == mine)
            assert "(edited)" in page.text() and "edit-me" not in page.text()

            # The page's own Delete last, posted on b: taken by a, the partner's line goes, the page redraws.
            assert (await page.send(b.url, action="delete"))[0] == 200
            await partner.until(urls, has("retract"), rng=rng)
            assert [e for e in partner.events if e[0] == "retract"] == [["retract", f"s{len(mine)}"]]
            await page.until(lambda p: '<meta http-equiv="refresh"' in p.text())
            await page.closed()
            await page.open(b.url)
            await page.until(lambda p: p.lines("you") == [*mine[:-1], "message deleted"] and p.lines("stranger") == [*theirs, edited])

            # Stop, from the form on b: the partner is told once, the page shows the end, the chat is gone.
            status, form = await page.send(b.url, action="stop")
            assert status == 200 and page.secret not in form
            await partner.until(urls, has("strangerDisconnected"), rng=rng)
            await page.closed()
            assert "New chat" in page.text() or "new chat" in page.text().lower()
            assert partner.names().count("strangerDisconnected") == 1
            for url in urls:
                async with http.get(url + "/nojs/chat", headers={"Cookie": f"nojs={page.secret}"}) as response:
                    assert response.status == 400
            page.close()
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_nojs_page_whose_stream_closed_on_b_and_never_came_back_leaves_after_the_grace(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url)
    urls = [a.url, b.url]
    rng = random.Random(61)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            stays, its_partner = await chatting(http, a.url, b.url, a.url, urls, rng)
            goes, gone_partner = await chatting(http, a.url, b.url, a.url, urls, rng)
            goes.close()  # its stream on b closes; a, its owner, is told and gives it nojs_grace
            await gone_partner.until(urls, has("strangerDisconnected"), rng=rng)
            # The page that stays is still chatting: a message after the other one's end reaches it.
            marker = f"marker-{secrets.token_hex(3)}"
            assert await its_partner.post(b.url, "/send", msg=marker) == (200, "win")
            await stays.until(lambda p: p.lines("stranger") == [marker])
            assert "strangerDisconnected" not in its_partner.names()
            stays.close()
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_nojs_chat_streamed_on_b_goes_on_when_its_owner_a_is_killed_and_restarted(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url, lease=6.0)  # the restarted a waits out its old lease
    rng = random.Random(62)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            page, partner = await chatting(http, a.url, b.url, b.url, [b.url], rng)  # the page's chat runs on a
            before = tokens("before", 3)
            for token in before:
                assert await partner.post(b.url, "/send", msg=token) == (200, "win")
            await page.until(lambda p: p.lines("stranger") == before)
            await a.kill()
            restart = asyncio.create_task(a.start())
            gap_theirs, gap_mine = tokens("gap-theirs", 5), tokens("gap-mine", 5)
            for theirs, mine in zip(gap_theirs, gap_mine):
                assert await partner.post(b.url, "/send", msg=theirs) == (200, "win")
                status, form = await page.send(b.url, msg=mine)  # into a's stream: it takes effect when a is back
                assert status == 200 and page.secret in form
            assert not restart.done()
            await restart
            await page.until(lambda p: p.lines("stranger") == before + gap_theirs)  # the same stream, on b, all along
            await page.until(lambda p: p.lines("you") == gap_mine)
            await partner.until([b.url], lambda _: partner.texts() == gap_mine, rng=rng)
            await page.open(a.url)  # a reload after the restart, on a (its new port): every line once
            await page.until(lambda p: p.lines("stranger") == before + gap_theirs and p.lines("you") == gap_mine)
            assert "strangerDisconnected" not in partner.names() and "disconnected" not in page.text().lower()
            page.close()
    finally:
        await asyncio.gather(a.stop(), b.stop())

