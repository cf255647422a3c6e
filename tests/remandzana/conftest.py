"""Fixtures: a fresh remandzana-compatible server per test, and raw browser-like clients of it."""

from __future__ import annotations

import asyncio
import html
import re

import aiohttp
import pytest

from .server import RemandzanaServer


@pytest.fixture
async def server():
    instance = RemandzanaServer()
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


class RawClient:
    """A browser stand-in written without the plugin's parser: it keeps the page text and posts forms."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession()
        self.page = ""
        self.fields: dict[str, str] = {}
        self.response: aiohttp.ClientResponse | None = None
        self.task: asyncio.Task | None = None
        self.changed = asyncio.Event()
        self.ended = False

    async def open(self, path: str) -> RawClient:
        self.response = await self.http.get(self.base + path)
        assert self.response.status == 200, self.response.status
        self.task = asyncio.get_running_loop().create_task(self._read())
        await self.wait_text('<article id="lines">')
        srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', self.page).group(1))
        inputs = re.findall(r'<input [^>]*name="(clavis|timestamp|setup|salt|signature)"[^>]*value="([^"]*)"', srcdoc)
        self.fields = dict(inputs)
        return self

    async def _read(self) -> None:
        assert self.response is not None
        try:
            async for data in self.response.content.iter_any():
                self.page += data.decode()
                self.changed.set()
        except aiohttp.ClientError:
            pass
        self.ended = True
        self.changed.set()

    async def wait_text(self, text: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while text not in self.page:
                if self.ended:
                    raise AssertionError(f"stream ended without {text!r}")
                self.changed.clear()
                await self.changed.wait()

    async def wait_end(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not self.ended:
                self.changed.clear()
                await self.changed.wait()

    async def say(self, message: str) -> int:
        async with self.http.post(self.base + "/send", data={**self.fields, "message": message}) as resp:
            await resp.read()
            return resp.status

    def lines(self, message: str) -> int:
        """How many chat lines carry exactly this (escaped) message."""
        return self.page.count(f'<bdi class="message">{html.escape(message, quote=True).replace("&quot;", "&#34;").replace("&#x27;", "&#39;")}</bdi>')

    async def close(self) -> None:
        if self.response is not None:
            self.response.close()
        if self.task is not None:
            self.task.cancel()
        await self.http.close()


@pytest.fixture
async def raw(server):
    clients: list[RawClient] = []

    async def make(path: str = "/two") -> RawClient:
        client = RawClient(server.url)
        clients.append(client)
        return await client.open(path)

    yield make
    for client in clients:
        await client.close()
