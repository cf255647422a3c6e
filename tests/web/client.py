"""A raw Omegle-protocol test client on aiohttp: one client id, its events collected in order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp


class RawClient:
    """Speaks the protocol by hand so tests can see every event array the server sends."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.id: str | None = None
        self.events: list[list] = []
        self.cursor = 0  # events before this index were already matched by until()

    async def start(self, **params: str) -> dict:
        query = {"firstevents": "1", "randid": "ABCDEFGH", "lang": "en", **params}
        async with self.http.get(self.url + "/start", params=query) as response:
            assert response.status == 200, await response.text()
            data = json.loads(await response.text())
        self.id = data["clientID"]
        self.events.extend(data["events"])
        return data

    async def post(self, path: str, **fields: str) -> tuple[int, str]:
        async with self.http.post(self.url + path, data={"id": self.id, **fields}) as response:
            return response.status, await response.text()

    async def poll(self) -> list[list] | None:
        status, text = await self.post("/events")
        assert status == 200, (status, text)
        batch = json.loads(text)
        if batch is not None:
            assert batch, "the server answered an empty batch"
            self.events.extend(batch)
        return batch

    async def until(self, test: Callable[[list], bool] | str, timeout: float = 10.0) -> list:
        """Poll until an event matching `test` (or named `test`) arrives after the last match."""
        match = (lambda e: e[0] == test) if isinstance(test, str) else test
        async with asyncio.timeout(timeout):
            while True:
                for index in range(self.cursor, len(self.events)):
                    if match(self.events[index]):
                        self.cursor = index + 1
                        return self.events[index]
                await self.poll()

    def names(self) -> list[str]:
        return [e[0] for e in self.events]
