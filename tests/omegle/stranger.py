"""A raw Omegle-protocol client for tests: the person on the other side of the server."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp


class Stranger:
    """Starts a chat on a server, polls in the background, records every event."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.id: str | None = None
        self.events: list[list] = []
        self._changed = asyncio.Condition()
        self._poller: asyncio.Task | None = None

    async def start(self, **params: str) -> Stranger:
        query = {"firstevents": "1", "randid": "TESTRAND", "lang": "en", **params}
        async with self.http.get(self.url + "/start", params=query) as resp:
            data = json.loads(await resp.text())
        self.id = data["clientID"]
        await self._record(data["events"])
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        return self

    async def _record(self, events: list) -> None:
        async with self._changed:
            self.events.extend(events)
            self._changed.notify_all()

    async def _poll(self) -> None:
        while True:
            async with self.http.post(self.url + "/events", data={"id": self.id}) as resp:
                if resp.status != 200:
                    return
                batch = json.loads(await resp.text())
            if batch:
                await self._record(batch)
                if any(e[0] in ("strangerDisconnected", "spyDisconnected", "error") for e in batch):
                    return

    def names(self) -> list[str]:
        return [e[0] for e in self.events]

    async def wait_for(self, name: str, *args: object, timeout: float = 10.0) -> list:
        async with asyncio.timeout(timeout):
            async with self._changed:
                while True:
                    for event in self.events:
                        if event[0] == name and list(event[1 : 1 + len(args)]) == list(args):
                            return event
                    await self._changed.wait()

    async def action(self, path: str, **fields: str) -> str:
        async with self.http.post(self.url + path, data={"id": self.id, **fields}) as resp:
            return await resp.text()

    async def send(self, text: str) -> str:
        return await self.action("/send", msg=text)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(BaseException):
                await self._poller
