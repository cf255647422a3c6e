"""The web platform: an aiohttp server speaking the Omegle HTTP protocol and serving the chat page."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bridge.abc import Platform
from bridge.events import Connected, Disconnected, Event, Message, Reason, Room, StoppedTyping, Typing, Waiting

from . import nojs
from .clients import Client, Clients
from .config import WebConfig, split_bind
from .protocol import ProtocolError, client_address, parse_form, parse_start, status_payload
from .render import ends_chat, render

__all__ = ["WebPlatform"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
FIRST_EVENTS_WAIT = 0.25  # seconds /start?firstevents=1 waits for the first event (usually "waiting")
SHUTDOWN_GRACE = 2.0  # seconds flush() gives polling clients to fetch their last events
ACTIVE = 0.5  # seconds since its last request within which a client counts as still polling
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The no-JS page frames its own send form (srcdoc, then /nojs/send answers): same origin only.
NOJS_PAGE_CSP = CSP.replace("default-src 'none';", "default-src 'none'; frame-src 'self';")
NOJS_FORM_HEADERS = {
    "Content-Security-Policy": CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'"),
    "X-Frame-Options": "SAMEORIGIN",
}
NOJS_WAKE = 0.5  # seconds between checks that a no-JS stream's reader is still there
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Stranger-side events that mean a session is alive; shown to a client that is gone, they
# make us end that orphan session (a start racing a disconnect, a session resumed after restart).
_ALIVE = (Waiting, Connected, Message, Typing)
_FILES = {
    "/": ("index.html", "text/html"),
    "/static/app.js": ("app.js", "text/javascript"),
    "/static/style.css": ("style.css", "text/css"),
}


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/plain")


def _fail(status: int) -> web.Response:
    return _text("fail", status)


def _json(value: Any) -> web.Response:
    return web.Response(text=json.dumps(value, ensure_ascii=False, separators=(",", ":")), content_type="application/json")


def _null() -> web.Response:
    return web.Response(text="null", content_type="application/json")


_WIN = "win"
_LABELS = {"refused": "reason", "expired": "reason", "started": "mode"}


class WebPlatform(Platform):
    """Every Omegle-protocol client id is one room; the page at `/` is such a client."""

    Config = WebConfig
    nojs_keepalive = 5.0  # seconds of silence after which a no-JS stream gets invisible filler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: WebConfig
        self.clients = Clients(self.config.max_queue)
        self.port: int | None = None  # the bound port, once listening (bind port 0 picks one)
        self.url: str | None = None  # http://host:port of the server, once listening
        self.counters: Counter[tuple[str, str]] = Counter()  # (name, label) → count, for /metrics
        self._listening = asyncio.Event()
        self._closing = False
        self._files = {path: ((STATIC / name).read_bytes(), ctype) for path, (name, ctype) in _FILES.items()}

    # ---- plugin hooks ------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled; ends clients that stop polling."""
        app = self.build_app()
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        host, port = split_bind(self.config.bind)
        site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
        try:
            await site.start()
            server = site._server  # noqa: SLF001 - the only way to learn the port bound for port 0
            self.port = server.sockets[0].getsockname()[1] if server and server.sockets else port
            shown = f"[{host}]" if ":" in host else host
            self.url = f"http://{shown}:{self.port}"
            log.info("web: listening on %s", self.url)
            self._listening.set()
            await self._sweep_forever()
        finally:
            self._closing = True
            for client in list(self.clients.by_key.values()):
                client.wake()  # open long polls answer `null` at once
            await runner.cleanup()

    async def ready(self) -> None:
        """Returns once the server is listening (then `port` and `url` are set)."""
        await self._listening.wait()

    async def deliver(self, room: Room, event: Event) -> None:
        """Queue the protocol events showing `event` for the room's client and wake its poll."""
        client = self.clients.get(room.id)
        if client is None or client.ended:
            if client is None and isinstance(event, _ALIVE) and not self._closing:
                self.submit(room, Disconnected())
            return
        if client.nojs:
            self._deliver_nojs(client, event)
            return
        final = ends_chat(event)
        if final:
            client.ended = True
        self.clients.push(client, render(event, spy=client.spy, wants_likes=client.wants_likes), force=final)

    def _deliver_nojs(self, client: Client, event: Event) -> None:
        if isinstance(event, Connected):
            client.chatting = True
        final = nojs.ends_stream(event)
        if final:
            client.ended, client.chatting = True, False
        items = [["line", line] for line in nojs.lines(event, spy=client.spy)]
        if items:
            self.clients.push(client, items, force=final)
        elif final:
            client.wake()

    async def flush(self) -> None:
        """Give clients that are polling a moment to fetch their last events (shutdown notices)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE
        while loop.time() < deadline:
            now = time.monotonic()
            if not any(c.has_answer() and now - c.last_seen < ACTIVE for c in self.clients.by_key.values()):
                return
            await asyncio.sleep(0.05)

    # ---- the server --------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application (also usable on its own in tests)."""
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[self._guard])
        r = app.router
        r.add_get("/start", self.on_start, allow_head=False)
        r.add_post("/start", self.on_start)
        r.add_post("/events", self.on_events)
        r.add_post("/send", self.on_send)
        r.add_post("/typing", self.on_typing)
        r.add_post("/stoppedtyping", self.on_stopped_typing)
        r.add_post("/disconnect", self.on_disconnect)
        r.add_post("/stoplookingforcommonlikes", self.on_stop_looking)
        r.add_get("/status", self.on_status)
        r.add_post("/status", self.on_status)
        r.add_get("/count", self.on_count)
        r.add_get("/healthz", self.on_healthz)
        r.add_get("/metrics", self.on_metrics)
        r.add_get("/favicon.ico", self.on_favicon)
        r.add_post("/nojs/start", self.on_nojs_start)
        r.add_get("/nojs/start", self.on_nojs_start, allow_head=False)
        r.add_post("/nojs/send", self.on_nojs_send)
        for path in self._files:
            r.add_get(path, self.on_file)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        """Origin policy (same origin, plus configured CORS origins), size and error answers,
        security headers on every response."""
        origin = request.headers.get("Origin")
        # Browsers send `Origin: null` with form posts under our no-referrer policy; the no-JS
        # forms accept it: /nojs/send acts only with the secret id, and a forged /nojs/start
        # merely opens a chat in the sender's own window, as a link could.
        allowed = (
            origin is None
            or (origin == "null" and request.path.startswith("/nojs/"))
            or self._origin_allowed(origin, request)
        )
        if not allowed:
            self._count("refused", "origin")
            response: web.StreamResponse = _fail(403)
        elif request.method == "OPTIONS":
            response = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        elif request.content_length is not None and request.content_length > self.config.max_body_bytes:
            self._count("refused", "too_large")
            response = _fail(413)
            response.force_close()  # do not read the rest of a huge body
        else:
            try:
                response = await handler(request)
            except web.HTTPRequestEntityTooLarge:
                self._count("refused", "too_large")
                response = _fail(413)
                response.force_close()
            except web.HTTPException as exc:
                if exc.status >= 500:
                    raise
                response = _fail(exc.status)
            except ProtocolError as exc:
                self._count("refused", "bad_request")
                response = _text(f"fail: {exc}", 400)
        if origin is not None and allowed and origin.lower() in self.config.cors_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)  # the no-JS pages set a framing-aware variant
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _origin_allowed(self, origin: str, request: web.Request) -> bool:
        if origin.lower() in self.config.cors_origins:
            return True
        try:
            return urlsplit(origin).netloc.lower() == request.host.lower()
        except ValueError:
            return False

    def _address(self, request: web.Request) -> str:
        header = self.config.trusted_proxy_header
        return client_address(request.remote, request.headers.get(header) if header else None)

    async def _form(self, request: web.Request) -> dict[str, str]:
        body = await request.read()  # bounded by client_max_size: 413 beyond
        return parse_form(body, request.headers.get("Content-Type", ""))

    async def _client(self, request: web.Request) -> tuple[Client | None, dict[str, str]]:
        form = await self._form(request)
        client = self.clients.find(form.get("id"))
        if client is None:
            self._count("refused", "unknown_id")
        else:
            client.last_seen = time.monotonic()
        return client, form

    def _room(self, client: Client) -> Room:
        return Room(self.name, client.key)

    def _count(self, name: str, label: str) -> None:
        self.counters[(name, label)] += 1

    # ---- endpoints ---------------------------------------------------------------------------

    async def on_start(self, request: web.Request) -> web.Response:
        """GET or POST /start: a new client id looking for a stranger."""
        params = {k: request.query.getone(k) for k in request.query}
        if request.method == "POST":
            params.update(await self._form(request))
        wanted = parse_start(params)
        address = self._address(request)
        if self._closing:
            return _fail(503)
        if self.clients.sessions[address] >= self.config.max_sessions_per_address:
            self._count("refused", "sessions_per_address")
            return _fail(429)
        if len(self.clients) >= self.config.max_clients:
            self._count("refused", "clients")
            return _fail(503)
        client = self.clients.create(address, spy=wanted.spy, wants_likes=wanted.wants_likes)
        start = dataclasses.replace(wanted.start, user=f"web:{client.key[:16]}")
        if not self.submit(self._room(client), start):
            self.clients.forget(client)
            return _fail(503)
        self._count("started", start.mode.value)
        if not wanted.firstevents:
            return _json(client.secret)
        if not client.has_answer():
            await self._wait(client, FIRST_EVENTS_WAIT)
        events = self._take(client) if client.has_answer() else []
        count = self.metrics.online()
        events += [["statusInfo", status_payload(count)], ["count", count]]
        return _json({"clientID": client.secret, "events": events})

    async def on_events(self, request: web.Request) -> web.Response:
        """POST /events: the client's pending events, or `null` after the poll window."""
        client, _ = await self._client(request)
        if client is None:
            return _fail(400)
        if client.has_answer():
            return _json(self._take(client))
        address = self._address(request)
        polls = self.clients.polls
        if polls[address] >= self.config.max_polls_per_address:
            self._count("refused", "polls_per_address")
            return _fail(429)
        polls[address] += 1
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.config.poll_window
            while not self._closing and self.clients.get(client.key) is client:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await self._wait(client, remaining):
                    break
                if _gone(request):
                    # The poller went away (a crashed bridge, a closed tab): leave the events queued
                    # for its next poll instead of writing them to a dead connection.
                    return _null()
                if client.has_answer():
                    return _json(self._take(client))
            return _null()
        finally:
            polls[address] -= 1
            if polls[address] <= 0:
                del polls[address]
            client.last_seen = time.monotonic()

    async def _wait(self, client: Client, timeout: float) -> bool:
        """Wait until the client is woken (True) or `timeout` passes or a newer poll of the
        same client takes over (False)."""
        fut = asyncio.get_running_loop().create_future()
        previous, client.waiter = client.waiter, fut
        if previous is not None and not previous.done():
            previous.set_result(None)  # one open poll per client: the older one answers `null`
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            return False
        finally:
            if client.waiter is fut:
                client.waiter = None
            elif not fut.done():
                fut.cancel()
        return client.waiter is None or client.waiter is fut

    def _take(self, client: Client) -> list[list]:
        batch = client.take()
        if client.ended:
            self.clients.forget(client)  # the chat's end is on its way: the id is dead
        return batch

    async def on_send(self, request: web.Request) -> web.Response:
        """POST /send: id, msg."""
        client, form = await self._client(request)
        if client is None or client.ended:
            return _fail(400)
        text = form.get("msg")
        if text is None:
            return _fail(400)
        return self._act(client, Message(text))

    async def on_typing(self, request: web.Request) -> web.Response:
        client, _ = await self._client(request)
        return _fail(400) if client is None or client.ended else self._act(client, Typing())

    async def on_stopped_typing(self, request: web.Request) -> web.Response:
        client, _ = await self._client(request)
        return _fail(400) if client is None or client.ended else self._act(client, StoppedTyping())

    async def on_disconnect(self, request: web.Request) -> web.Response:
        """POST /disconnect: leave; the id is dead at once (the partner is told by the core)."""
        client, _ = await self._client(request)
        if client is None:
            return _fail(400)
        if not client.ended:
            self.submit(self._room(client), Disconnected())
        self.clients.forget(client)
        return _text(_WIN)

    async def on_stop_looking(self, request: web.Request) -> web.Response:
        """POST /stoplookingforcommonlikes. Web starts never have strict interests, so the
        backend already falls back to a random stranger by itself (the hub after its
        interest_fallback); restarting the search here could race a pairing in flight."""
        client, _ = await self._client(request)
        return _fail(400) if client is None or client.ended else _text(_WIN)

    def _act(self, client: Client, event: Event) -> web.Response:
        if not self.submit(self._room(client), event):
            self._count("refused", "core")
            return _fail(503)
        return _text(_WIN)

    async def on_status(self, request: web.Request) -> web.Response:
        """GET /status: Omegle's status object; count = people searching or chatting."""
        return _json(status_payload(self.metrics.online()))

    async def on_count(self, request: web.Request) -> web.Response:
        return _text(str(self.metrics.online()))

    async def on_healthz(self, request: web.Request) -> web.Response:
        return _text("ok" if not self._closing else "closing", 200 if not self._closing else 503)

    async def on_metrics(self, request: web.Request) -> web.Response:
        """Prometheus text: the core's figures plus this server's own."""
        lines = [
            self.metrics.prometheus().rstrip("\n"),
            "# TYPE stranger_bridge_web_clients gauge",
            f'stranger_bridge_web_clients{{platform="{self.name}"}} {len(self.clients)}',
            "# TYPE stranger_bridge_web_polls_open gauge",
            f'stranger_bridge_web_polls_open{{platform="{self.name}"}} {sum(self.clients.polls.values())}',
        ]
        for name in sorted({n for n, _ in self.counters}):
            lines.append(f"# TYPE stranger_bridge_web_{name}_total counter")
            for (n, label), value in sorted(self.counters.items()):
                if n == name:
                    lines.append(
                        f'stranger_bridge_web_{name}_total{{platform="{self.name}",{_LABELS[name]}="{label}"}} {value}'
                    )
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")

    async def on_file(self, request: web.Request) -> web.Response:
        """The chat page and its script and style sheet."""
        body, ctype = self._files[request.path]
        response = web.Response(body=body, content_type=ctype, charset="utf-8")
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def on_favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)  # no icon; spares browsers a logged 404

    # ---- the no-JavaScript chat ----------------------------------------------------------------

    async def on_nojs_start(self, request: web.Request) -> web.StreamResponse:
        """POST (or GET) /nojs/start: a chat without JavaScript. The answer is one long-lived
        `text/html` stream showing the whole chat; closing it means the user left."""
        form = {k: request.query.getone(k) for k in request.query if k != "id"}
        if request.method == "POST":
            posted = await self._form(request)
            form.update(posted)
            old = self.clients.find(posted.get("id"))  # Next: end the chat this form came from
            if old is not None and old.nojs:
                self._leave_nojs(old)
        chosen = nojs.settings(form)
        try:
            wanted = parse_start(nojs.start_params(form))
        except ProtocolError as exc:
            self._count("refused", "bad_request")
            return self._nojs_html(nojs.error_page(f"Cannot start: {exc}."), 400)
        address = self._address(request)
        polls = self.clients.polls
        refusal = self._nojs_refusal(address)
        if refusal is not None:
            return refusal
        client = self.clients.create(address, spy=wanted.spy, nojs=True)
        start = dataclasses.replace(wanted.start, user=f"web:{client.key[:16]}")
        if not self.submit(self._room(client), start):
            self.clients.forget(client)
            return self._nojs_html(nojs.error_page("The server is busy; try again."), 503)
        self._count("started", start.mode.value)
        polls[address] += 1
        response = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Security-Policy": NOJS_PAGE_CSP})
        response.content_type = "text/html"
        response.charset = "utf-8"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each line on at once
        try:
            await response.prepare(request)
            await self._write(response, nojs.page_head(client.secret, chosen, spy=client.spy))
            await self._stream(request, response, client)
            await self._write(response, nojs.end_of_page(chosen))
            await response.write_eof()
        except (ConnectionError, TimeoutError):
            pass  # the reader went away (or stalled for client_timeout): it left the chat
        finally:
            polls[address] -= 1
            if polls[address] <= 0:
                del polls[address]
            if not client.ended:
                self.submit(self._room(client), Disconnected())
            self.clients.forget(client)
        return response

    def _nojs_refusal(self, address: str) -> web.Response | None:
        if self._closing:
            return self._nojs_html(nojs.error_page("The server is shutting down."), 503)
        if self.clients.sessions[address] >= self.config.max_sessions_per_address:
            self._count("refused", "sessions_per_address")
        elif self.clients.polls[address] >= self.config.max_polls_per_address:
            self._count("refused", "polls_per_address")
        elif len(self.clients) >= self.config.max_clients:
            self._count("refused", "clients")
            return self._nojs_html(nojs.error_page("The server is full; try again later."), 503)
        else:
            return None
        return self._nojs_html(nojs.error_page("Too many chats from your address."), 429)

    async def _stream(self, request: web.Request, response: web.StreamResponse, client: Client) -> None:
        """Write the client's lines as they come, with filler when quiet, until its chat ends,
        its reader leaves or the server closes."""
        loop = asyncio.get_running_loop()
        quiet_since, fills = loop.time(), 0
        while not self._closing:
            if client.queue:
                await self._write(response, "".join(item[1] for item in client.take()))
                quiet_since = loop.time()
                continue
            if client.ended or self.clients.get(client.key) is not client or _gone(request):
                return
            await self._wait(client, NOJS_WAKE)
            client.last_seen = time.monotonic()
            if not client.queue and loop.time() - quiet_since >= self.nojs_keepalive:
                await self._write(response, nojs.filler(fills))
                quiet_since, fills = loop.time(), fills + 1

    async def _write(self, response: web.StreamResponse, text: str) -> None:
        # A reader that stops reading blocks the write (bounded transport buffer): after
        # client_timeout it counts as gone instead of holding the handler forever.
        async with asyncio.timeout(self.config.client_timeout):
            await response.write(text.encode("utf-8"))

    def _leave_nojs(self, client: Client) -> None:
        """Stop (or Next): end the chat, show it on the stream, which then closes."""
        if client.ended:
            return
        self.submit(self._room(client), Disconnected())
        client.ended, client.chatting = True, False
        line = nojs.lines(Disconnected(reason=Reason.USER))
        self.clients.push(client, [["line", text] for text in line], force=True)

    async def on_nojs_send(self, request: web.Request) -> web.Response:
        """POST /nojs/send (the form in the no-JS page's frame): id, action=send|stop, msg.
        Answers the form again."""
        form = await self._form(request)
        chosen = nojs.settings(form)
        client = self.clients.find(form.get("id"))
        if client is None or not client.nojs:
            self._count("refused", "unknown_id")
            return self._nojs_html(nojs.send_form(None, chosen), 400)
        client.last_seen = time.monotonic()
        action = form.get("action") or "send"
        if client.ended:
            return self._nojs_html(nojs.send_form(None, chosen))
        if action == "stop":
            self._leave_nojs(client)
            return self._nojs_html(nojs.send_form(None, chosen))
        text = form.get("msg")
        if action != "send" or text is None or client.spy:
            self._count("refused", "bad_request")
            return self._nojs_html(nojs.error_page("That form cannot do this."), 400)
        if text.strip():
            if not self.submit(self._room(client), Message(text)):
                self._count("refused", "core")
                return self._nojs_html(nojs.error_page("The server is busy; try again."), 503)
            if client.chatting:
                self.clients.push(client, [["line", nojs.own_line(text)]])
        return self._nojs_html(nojs.send_form(client.secret, chosen, spy=client.spy))

    def _nojs_html(self, body: str, status: int = 200) -> web.Response:
        response = web.Response(text=body, status=status, content_type="text/html")
        response.headers.update(NOJS_FORM_HEADERS)  # it may be shown in the no-JS page's frame
        return response

    # ---- housekeeping ------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        timeout = self.config.client_timeout
        interval = max(0.2, min(5.0, timeout / 4))
        while True:
            await asyncio.sleep(interval)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> int:
        """End and forget clients that stopped polling; returns how many."""
        stale = self.clients.stale(now, self.config.client_timeout)
        for client in stale:
            if not client.ended:
                with contextlib.suppress(Exception):
                    self.submit(self._room(client), Disconnected())
            self.clients.forget(client)
            self._count("expired", "timeout")
        if stale:
            log.info("web: %d clients stopped polling and were ended", len(stale))
        return len(stale)


def _gone(request: web.Request) -> bool:
    """Whether the client of `request` has closed its connection."""
    transport = request.transport
    return transport is None or transport.is_closing()
