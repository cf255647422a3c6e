"""The web tier in Redis mode behind a round-robin proxy (no sticky routing): a browser without JavaScript and one with it chat, reload and leave, each request on the next instance."""

from __future__ import annotations

import asyncio
import collections
import secrets

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from playwright.async_api import async_playwright, expect

from tests.redisproc import free_port
from tests.web.test_page import FLAGS, chromium

from .daemon import Daemon

WAIT = 15_000
HOP = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"})


class RoundRobin:
    """A reverse proxy that sends each request to the next instance in turn, streaming the answer;
    what it sent where is counted by (instance, path)."""

    def __init__(self, port: int, backends: dict[str, str]) -> None:
        self.port = port
        self.backends = list(backends.items())
        self.turn = 0
        self.served: collections.Counter[tuple[str, str]] = collections.Counter()
        self.http: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=120), auto_decompress=False)
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.http is not None:
            await self.http.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.http is not None
        name, url = self.backends[self.turn % len(self.backends)]
        self.turn += 1
        self.served[(name, request.path)] += 1
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP)
        headers["Host"] = request.host  # the public origin's host, as a load balancer passes it
        body = await request.read()
        async with self.http.request(request.method, url + request.path_qs, headers=headers, data=body or None,
                                     allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, headers=CIMultiDict(
                (k, v) for k, v in upstream.headers.items() if k.lower() not in HOP))
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionError, aiohttp.ClientError):
                pass  # the browser or the instance went away mid-stream
            return response


async def test_browsers_without_and_with_javascript_chat_through_a_round_robin_proxy_over_two_instances(tmp_path, redis_server):
    port = free_port()
    web_lines = f'public_origin = "http://127.0.0.1:{port}"'
    a = Daemon(tmp_path, redis_server.url, "a", hub="resume_window = 60", web=web_lines)
    b = Daemon(tmp_path, redis_server.url, "b", hub="resume_window = 60", web=web_lines)
    await a.start()
    await b.start()
    proxy = RoundRobin(port, {"a": a.url, "b": b.url})
    await proxy.start()
    site = f"http://127.0.0.1:{port}"
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
            try:
                plain = await (await browser.new_context(java_script_enabled=False)).new_page()
                js = await (await browser.new_context()).new_page()
                await plain.goto(site + "/")
                await plain.fill("#nojs-interests", "tea")
                await plain.press("#nojs-interests", "Enter")
                log = plain.locator(".nojs-log")
                await expect(log).to_contain_text("Looking for someone", timeout=WAIT)
                await js.goto(site + "/")
                await js.fill("#interests", "tea")
                await js.click("#stop")
                await expect(log).to_contain_text("You both like", timeout=WAIT)
                await expect(js.locator("#log")).to_contain_text("You're now chatting", timeout=WAIT)

                frame = plain.frame_locator("iframe.nojs-frame")
                theirs = [f"js-{secrets.token_hex(3)}-{i}" for i in range(6)]
                mine = [f"plain-{secrets.token_hex(3)}-{i}" for i in range(6)]
                for i in range(6):
                    await frame.locator("#msg").fill(mine[i])
                    await frame.locator("#msg").press("Enter")  # a form POST, to whichever instance is next
                    await expect(js.locator(".line.stranger .text").last).to_have_text(mine[i], timeout=WAIT)
                    await js.fill("#message", theirs[i])
                    await js.press("#message", "Enter")
                    await expect(plain.locator(".nojs-log .stranger .text").last).to_have_text(theirs[i], timeout=WAIT)
                    if i % 2 == 1:  # a reload: the chat's page again, from the next instance
                        await plain.reload(wait_until="commit")  # the page streams: it never finishes loading
                        await expect(plain.locator(".nojs-log .stranger .text").last).to_have_text(theirs[i], timeout=WAIT)
                    assert await plain.locator(".nojs-log .stranger .text").all_text_contents() == theirs[: i + 1]
                    assert await plain.locator(".nojs-log .you .text").all_text_contents() == mine[: i + 1]
                assert await js.locator(".line.stranger .text").all_text_contents() == mine  # once each, in order
                assert await js.locator(".line.you .text").all_text_contents() == theirs
                for path in ("/nojs/chat", "/nojs/send", "/events", "/send"):  # no instance served all of anything
                    assert proxy.served[("a", path)] and proxy.served[("b", path)], (path, proxy.served)

                await frame.locator("button[value=stop]").click()
                await expect(log).to_contain_text("You have disconnected.", timeout=WAIT)
                await expect(js.locator("#log")).to_contain_text("Stranger has disconnected.", timeout=WAIT)
                assert (await js.locator("#log").inner_text()).count("Stranger has disconnected.") == 1
            finally:
                await browser.close()
    finally:
        await proxy.stop()
        await asyncio.gather(a.stop(), b.stop())
