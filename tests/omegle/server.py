"""A small Omegle-protocol server for tests: pairing, spy mode, the quirks of protocols.md, fault injection."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

EMPTY_PATHS = ("/events",)


@dataclass(eq=False)
class Client:
    """One client id's state on the server."""

    id: str
    lang: str
    topics: frozenset[str] = frozenset()
    wantsspy: bool = False
    ask: str | None = None
    any_likes: bool = False  # /stoplookingforcommonlikes was called
    queue: list = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    partners: list[Client] = field(default_factory=list)
    label: str | None = None  # "Stranger 1"/"Stranger 2" as the spy sees this answerer
    spy: Client | None = None  # the asker watching this answerer
    alive: bool = True

    def push(self, *events: list) -> None:
        self.queue.extend(events)
        self.wake.set()


class OmegleTestServer:
    """`async with OmegleTestServer() as srv:` serves on 127.0.0.1:<free port> at `srv.url`."""

    def __init__(self, poll_window: float = 0.3, firstevents_connected_batch: bool = True) -> None:
        self.poll_window = poll_window  # `null` after this long without events
        self.firstevents_connected_batch = firstevents_connected_batch
        self.clients: dict[str, Client] = {}
        self.waiting: list[Client] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.faults: dict[tuple[str, str | None], deque[str]] = {}
        self.start_script: list | None = None  # events /start answers instead of queueing
        self.quoted_start = False  # answer /start with the bare quoted id (old servers)
        self.count = 42
        self.starting = 0  # /start requests being answered
        self.hung: list[asyncio.Future] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ---- control -----------------------------------------------------------------------------

    def inject(self, path: str, kind: str, times: int = 1, client: str | None = None) -> None:
        """Make the next `times` requests to `path` (of one client id, or of any) fail:
        "500", "hang", "reset", "garbage" or "slow" (0.3 s late)."""
        self.faults.setdefault((path, client), deque()).extend([kind] * times)

    def client_ids(self) -> list[str]:
        return list(self.clients)

    def only_client(self) -> Client:
        alive = [c for c in self.clients.values() if c.alive]
        assert len(alive) == 1, f"{len(alive)} live clients"
        return alive[0]

    async def live_client(self, timeout: float = 5.0) -> Client:
        """The only live client, once it has started."""
        async with asyncio.timeout(timeout):
            while not any(c.alive for c in self.clients.values()):
                await asyncio.sleep(0.01)
        return self.only_client()

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    async def __aenter__(self) -> OmegleTestServer:
        app = web.Application(client_max_size=64 * 1024)
        for path in ("/start", "/events", "/send", "/typing", "/stoppedtyping", "/disconnect",
                     "/stoplookingforcommonlikes", "/status", "/count"):
            app.router.add_route("*", path, self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for fut in self.hung:
            if not fut.done():
                fut.cancel()
        for client in self.clients.values():
            client.wake.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- HTTP --------------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post()) if request.method == "POST" else {}
        params = {**request.query, **{k: str(v) for k, v in form.items()}}
        self.requests.append((request.method, request.path, params))
        fault = self.faults.get((request.path, params.get("id"))) or self.faults.get((request.path, None))
        if fault:
            kind = fault.popleft()
            if kind == "500":
                return web.Response(status=500, text="Internal Server Error")
            if kind == "garbage":
                return web.Response(text="<html>not json")
            if kind == "reset":
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            if kind == "slow":
                await asyncio.sleep(0.3)
            if kind == "hang":
                fut = asyncio.get_running_loop().create_future()
                self.hung.append(fut)
                await fut
        handler = getattr(self, "_" + request.path.strip("/"))
        return await handler(params)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path != "/start":
            return await self._serve(request)
        self.starting += 1
        try:
            return await self._serve(request)
        finally:
            self.starting -= 1

    async def _start(self, p: dict[str, str]) -> web.Response:
        client = Client(id="shard2:" + secrets.token_urlsafe(20), lang=p.get("lang", "en"))
        if "topics" in p:
            client.topics = frozenset(json.loads(p["topics"]))
        client.wantsspy = p.get("wantsspy") == "1"
        client.ask = p.get("ask")
        self.clients[client.id] = client
        if self.start_script is not None:
            client.push(*self.start_script)
        else:
            client.push(["waiting"])
            self._pair(client)
        if self.quoted_start or p.get("firstevents") != "1":
            return web.json_response(client.id)
        events, client.queue = client.queue, []
        client.wake.clear()
        return web.json_response({"clientID": client.id, "events": events})

    def _pair(self, client: Client) -> None:
        if client.ask is not None:
            answerers = [c for c in self.waiting if c.wantsspy and c.lang == client.lang][:2]
            if len(answerers) < 2:
                self.waiting.append(client)
                return
            self._spy_chat(client, *answerers)
            return
        if client.wantsspy:
            askers = [c for c in self.waiting if c.ask is not None and c.lang == client.lang]
            others = [c for c in self.waiting if c.wantsspy and c.lang == client.lang]
            if askers and others:
                self._spy_chat(askers[0], others[0], client)
                return
            self.waiting.append(client)
            return
        for other in self.waiting:
            if other.ask is not None or other.wantsspy or other.lang != client.lang:
                continue
            common = sorted(client.topics & other.topics)
            if common or ((not client.topics or client.any_likes) and (not other.topics or other.any_likes)):
                self.waiting.remove(other)
                self._chat(client, other, common)
                return
        self.waiting.append(client)

    def _chat(self, a: Client, b: Client, common: list[str]) -> None:
        a.partners, b.partners = [b], [a]
        for c in (a, b):
            batch: list = [["connected"]]
            if common:
                batch.append(["commonLikes", common])
            if not self.firstevents_connected_batch:
                batch.insert(0, ["gotMessage", "early bird"])
            c.push(*batch)

    def _spy_chat(self, asker: Client, s1: Client, s2: Client) -> None:
        for c in (asker, s1, s2):
            if c in self.waiting:
                self.waiting.remove(c)
        s1.partners, s2.partners = [s2], [s1]
        s1.label, s2.label = "Stranger 1", "Stranger 2"
        s1.spy = s2.spy = asker
        asker.partners = [s1, s2]
        asker.push(["connected"], ["question", asker.ask])
        for c in (s1, s2):
            c.push(["connected"], ["question", asker.ask])

    def _client(self, p: dict[str, str]) -> Client | None:
        client = self.clients.get(p.get("id", ""))
        return client if client is not None and client.alive else None

    async def _events(self, p: dict[str, str]) -> web.Response:
        client = self._client(p)
        if client is None:
            return web.Response(status=400, text="fail")
        if not client.queue:
            client.wake.clear()
            try:
                await asyncio.wait_for(client.wake.wait(), self.poll_window)
            except TimeoutError:
                return web.json_response(None)
        events, client.queue = client.queue, []
        if any(e[0] in ("strangerDisconnected", "spyDisconnected", "error", "connectionDied",
                        "recaptchaRequired", "antinudeBanned") for e in events):
            client.alive = False
        return web.json_response(events)

    def _relay(self, client: Client, event: str, *args: str) -> None:
        spy_event = {"gotMessage": "spyMessage", "typing": "spyTyping", "stoppedTyping": "spyStoppedTyping"}
        for partner in client.partners:
            if partner.alive:
                partner.push([event, *args])
        if client.spy is not None and client.spy.alive:
            client.spy.push([spy_event[event], client.label, *args])

    async def _send(self, p: dict[str, str]) -> web.Response:
        client = self._client(p)
        if client is None or not client.partners or client.ask is not None:
            return web.Response(text="fail")
        self._relay(client, "gotMessage", p.get("msg", ""))
        return web.Response(text="win")

    async def _typing(self, p: dict[str, str]) -> web.Response:
        client = self._client(p)
        if client is None or not client.partners:
            return web.Response(text="fail")
        self._relay(client, "typing")
        return web.Response(text="win")

    async def _stoppedtyping(self, p: dict[str, str]) -> web.Response:
        client = self._client(p)
        if client is None or not client.partners:
            return web.Response(text="fail")
        self._relay(client, "stoppedTyping")
        return web.Response(text="win")

    async def _disconnect(self, p: dict[str, str]) -> web.Response:
        client = self._client(p)
        if client is None:
            return web.Response(text="fail")
        client.alive = False
        if client in self.waiting:
            self.waiting.remove(client)
        if client.ask is None:
            for partner in client.partners:
                if partner.alive:
                    partner.push(["strangerDisconnected"])
            if client.spy is not None and client.spy.alive:
                client.spy.push(["spyDisconnected", client.label])
        return web.Response(text="win")

    async def _stoplookingforcommonlikes(self, p: dict[str, str]) -> web.Response:
        client = self._client(p)
        if client is None:
            return web.Response(text="fail")
        client.any_likes = True
        if client in self.waiting and not client.partners:
            self.waiting.remove(client)
            self._pair(client)
        return web.Response(text="win")

    async def _status(self, p: dict[str, str]) -> web.Response:
        return web.json_response({"count": self.count, "servers": [], "spyQueueTime": 0, "spyeeQueueTime": 0})

    async def _count(self, p: dict[str, str]) -> web.Response:
        return web.Response(text=str(self.count))


async def serve(poll_window: float) -> None:
    """Serve until killed, printing the base URL first (used by bench/bench_omegle.py)."""
    async with OmegleTestServer(poll_window=poll_window) as server:
        print(server.url, flush=True)
        server.requests = _NoLog()
        await asyncio.Event().wait()


class _NoLog(list):
    """A request log that keeps nothing (long benchmark runs)."""

    def append(self, item: object) -> None:
        return None


if __name__ == "__main__":
    import sys

    asyncio.run(serve(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0))
