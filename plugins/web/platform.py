"""The web platform: an aiohttp server speaking the Omegle HTTP protocol and serving the chat page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.abc import Platform
from bridge.address import split_bind
from bridge.events import Connected, Disconnected, Event, Message, Posted, Retract, Room, ServerNotice, Typing, Waiting

from .clients import Client, Clients
from .config import WebConfig
from .health import Health
from .identity import COOKIE, Identities
from .middleware import guard, own_origins
from .nojs import NoJsChat
from .omegle_api import OmegleApi
from .pictures import PATH, served
from .protocol import client_address, parse_form
from .render import ends_chat, render
from .rich_api import RichApi
from .serverlog import ServerLog
from .transport import ConnectionGate, GatedSite, descriptor_budget

if TYPE_CHECKING:
    from .shared import SharedTier
    from .shared_api import SharedApi

__all__ = ["WebPlatform"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SHUTDOWN_GRACE = 2.0  # seconds flush() gives polling clients to fetch their last events
ACTIVE = 0.5  # seconds since its last request within which a client counts as still polling
# Stranger-side events that mean a session is alive; shown to a client that is gone, they
# make us end that orphan session (a start racing a disconnect, a session resumed after restart).
_ALIVE = (Waiting, Connected, Message, Typing)
_LABELS = {"refused": "reason", "expired": "reason", "started": "mode", "dropped": "reason"}
# `request.content`, read without its cached-property entry: a sixth key in the request's cache
# (after rel_url, method, headers, match_info and remote) doubles that dict, and every open long
# poll holds its request (2,000 polls: 0.3 MB). The getter is aiohttp's cached property's function
# (3.14); with an aiohttp that has none, the property itself (the same stream, cached).
_payload = getattr(web.BaseRequest.content, "wrapped", None) or (lambda request: request.content)
_FILES = {
    "/": ("index.html", "text/html"),
    "/static/app.js": ("app.js", "text/javascript"),
    "/static/lines.js": ("lines.js", "text/javascript"),
    "/static/style.css": ("style.css", "text/css"),
}


class WebPlatform(Platform):
    """Every Omegle-protocol client id is one room; the page at `/` is such a client."""

    Config = WebConfig
    # /report (and the no-JS form's Report) reports a live chat only: an id is dead once its chat
    # ended, so the core keeps nothing of a web room's ended chats.
    reports_after_end = False
    nojs_keepalive = 5.0  # seconds of silence after which a no-JS stream gets invisible filler
    nojs_grace = 5.0  # seconds a no-JS page whose stream closed has to come back (a reload)
    nojs_redraw_gap = 2.0  # seconds at least between two redraws of a no-JS page (a reaction flood)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: WebConfig
        self.clients = Clients(self.config.max_queue, keep_retired=self.config.client_timeout)
        self.port: int | None = None  # the bound port, once listening (bind port 0 picks one)
        self.url: str | None = None  # http://host:port of the server, once listening
        self.closing = False
        self.origins: frozenset[str] | None = None  # our page's origins, once listening (see own_origins)
        self.hosts: frozenset[str] | None = None  # the Host values a browser request may carry
        self.gate: ConnectionGate | None = None  # open connections, once listening
        self.identities = Identities(
            self.state, rotation=self.config.key_rotation_days * 86_400.0,
            mint_rate=self.config.new_keys_per_hour / 3600.0, mint_burst=self.config.new_keys_burst,
            address_keys=self.config.address_keys,
        )  # fmt: skip
        self.nojs = NoJsChat(self)
        self.api = OmegleApi(self)
        self.rich_api = RichApi(self)
        # Redis mode (scale_out): client records and queues shared by every instance; None on SQLite.
        self.tier: SharedTier | None = None
        self.shared_api: SharedApi | None = None
        self._left: list[str] = []  # room ids a previous run left with a session (rooms_active)
        self._tasks: set[asyncio.Task] = set()
        self.health = Health(self)
        self.health.add_gauges()
        self._listening = asyncio.Event()
        self._files = {path: ((STATIC / name).read_bytes(), ctype) for path, (name, ctype) in _FILES.items()}

    # ---- plugin hooks ------------------------------------------------------------------------

    @property
    def rooms_persist(self) -> bool:  # type: ignore[override]
        """In Redis mode a client's id and queue outlive this process, so its chat may be resumed."""
        return self.tier is not None

    def scale_out(self, store: Any) -> None:
        """The store is Redis: serve every client of every instance (see plugins.web.shared)."""
        from .shared import SharedTier
        from .shared_api import SharedApi

        config = self.config
        ttl = 2 * (config.client_timeout + config.poll_window) + 60.0  # outlives an owner's restart
        self.tier = SharedTier(
            store, name=self.name, ttl=ttl, retired=config.client_timeout, max_queue=config.max_queue,
            handle=lambda envelope: self.shared_api.on_forwarded(envelope),  # type: ignore[union-attr]
        )  # fmt: skip
        self.shared_api = SharedApi(self, self.tier)
        previous = store.on_instance_down

        async def instance_down(name: str, sessions: int) -> None:
            if self.shared_api is not None:
                try:
                    await self.shared_api.end_owned_by(name)
                except Exception:
                    log.exception("web: ending the clients of instance %s failed", name)
            await previous(name, sessions)

        store.on_instance_down = instance_down

    def rooms_active(self, rooms: list[Room]) -> None:
        self._left = [room.id for room in rooms]

    def spawn(self, coro: Any) -> None:
        """Run `coro` in the background (kept until done)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Serve until cancelled; ends clients that stop polling."""
        await self.identities.load()
        if self.tier is not None:
            self.clients.share_salt(await self.tier.salt())
            assert self.shared_api is not None
            adopted = await self.shared_api.adopt(self._left)
            if adopted:
                log.info("web: took back %d clients of the previous run", adopted)
            await self.tier.start()
        app = self.build_app()
        config = self.config
        server_log = ServerLog(self.metrics, self.name)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
            logger=server_log, keepalive_timeout=config.keepalive_timeout,
        )
        await runner.setup()
        host, port = split_bind(config.bind)
        per_address = None if config.trusted_proxy_header else config.max_connections_per_address
        self.gate = ConnectionGate(
            per_address, config.max_connections or descriptor_budget(), lambda why: self.count("refused", why)
        )
        site = GatedSite(
            runner, host, port, self.gate, backlog=config.listen_backlog, head_timeout=config.header_timeout,
            on_exhausted=server_log.exhausted,
        )
        try:
            await site.start()
            self.port = runner.addresses[0][1] if runner.addresses else port
            shown = f"[{host}]" if ":" in host else host
            self.url = f"http://{shown}:{self.port}"
            self.origins = own_origins(self.config.public_origin, host, self.port)
            if self.origins is None:
                log.warning("web: public_origin is not set and %s is not loopback: the origin check trusts the Host header",
                            host)
            else:
                bound = {f"{shown}:{self.port}", f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
                self.hosts = frozenset({o.split("://", 1)[1] for o in self.origins} | bound)
            log.info("web: listening on %s", self.url)
            self._listening.set()
            await self._sweep_forever()
        finally:
            self.closing = True
            for client in list(self.clients.by_key.values()):
                client.stay()  # the core ends every session itself
                client.wake()  # open long polls answer `null` at once
            if self.tier is not None:
                await self.tier.stop()
            await runner.cleanup()

    async def ready(self) -> None:
        """Returns once the server is listening (then `port` and `url` are set)."""
        await self._listening.wait()

    async def deliver(self, room: Room, event: Event) -> None:
        """Queue the protocol events showing `event` for the room's client and wake its poll."""
        client = self.clients.by_key.get(room.id)
        if client is None or client.ended:
            if client is None and isinstance(event, _ALIVE) and not self.closing:
                self.submit(room, Disconnected())
            return
        picture = None
        final = False
        if event.__class__ is Message:  # most events: no notice, no end, no answer to a start
            line = self.name_line(room, client, event)
            if event.image is not None and self.config.images and client.rich:  # type: ignore[attr-defined]
                picture = self.clients.pictures.keep(client.key, event.image, line)  # type: ignore[attr-defined]
        else:
            if isinstance(event, ServerNotice) and not client.answered:
                # The core answers a start it refuses (a ban with the time left, starting too often,
                # an invalid start) with a notice and nothing else: show it, and end the client, so
                # no page or Omegle client is left searching forever.
                self.refused(client, event.text)
                return
            if isinstance(event, (Waiting, Connected, Disconnected)):
                client.answered = True
            line = self.name_line(room, client, event)
            final = ends_chat(event)
        if client.nojs:
            self.nojs.deliver(client, event, line, picture)
            return
        if final:
            client.ended = True
        shown = render(event, spy=client.spy, wants_likes=client.wants_likes, rich=client.rich, line=line, image=picture)
        if self.shared_api is not None:
            await self.shared_api.push(client, shown, force=final, final=final)
            return
        if self.clients.push(client, shown, force=final):
            self.count("dropped", "queue_full")
        if final:
            self.clients.settle(client)  # between polls: retire now, keep only the last events

    def name_line(self, room: Room, client: Client, event: Event) -> str | None:
        """A stranger's message gets a line id of this client, which the core is told (Posted),
        so its later edits, deletions and reactions come back naming that line; None for other
        events. Every client gets them: plain Omegle clients are shown the text fallback of edits."""
        if event.__class__ is not Message:
            if isinstance(event, Retract):
                client.lines().forget_deleted(event.ref)
                self.clients.pictures.drop_line(client.key, event.ref)
            if not isinstance(event, Message):
                return None
        if event.ref is None:  # type: ignore[attr-defined]
            return None
        line = (client.book or client.lines()).stranger_line()
        self.submit(room, Posted(event.ref, line))  # type: ignore[attr-defined]
        return line

    def refused(self, client: Client, text: str) -> None:
        """End a client whose start the core refused, showing why (Omegle clients: serverMessage
        then strangerDisconnected, which python-omegle handles; the page shows the notice only)."""
        client.answered = client.ended = True
        self.count("refused", "start")
        # Should the core have a search going after all, it ends with the client (a refused start
        # has none: the core then only answers a notice, which a gone client never gets).
        self.submit(self.room(client), Disconnected())
        if client.nojs:
            self.nojs.refused(client, text)
            return
        items = [["serverMessage", text], ["strangerDisconnected"]]
        if self.shared_api is not None:
            self.spawn(self.shared_api.push(client, items, force=True, final=True))
            return
        self.clients.push(client, items, force=True)
        self.clients.settle(client)

    async def flush(self) -> None:
        """Give clients that are polling a moment to fetch their last events (shutdown notices)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE
        while loop.time() < deadline:
            now = time.monotonic()
            live = any(c.has_news() and now - c.last_seen < ACTIVE for c in self.clients.by_key.values())
            if not live and not any(now - r.seen < ACTIVE for r in self.clients.retired.values()):
                return
            await asyncio.sleep(0.05)

    # ---- the server --------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application (also usable on its own in tests)."""
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[guard(self)])
        if self.shared_api is not None:  # first: the first route of a path answers it
            self.shared_api.add_routes(app.router)
        self.api.add_routes(app.router)
        self.rich_api.add_routes(app.router)
        self.health.add_routes(app.router)
        self.nojs.add_routes(app.router)
        app.router.add_get("/favicon.ico", self.on_favicon)
        app.router.add_get(PATH + "{token}", self.on_picture, allow_head=False)
        for path in self._files:
            app.router.add_get(path, self.on_file)
        return app

    async def on_file(self, request: web.Request) -> web.Response:
        """The chat page and its script and style sheet."""
        body, ctype = self._files[request.path]
        response = web.Response(body=body, content_type=ctype, charset="utf-8")
        response.headers["Cache-Control"] = "no-cache"
        if request.path == "/":  # the chat page: both the JS chat and the no-JS form start from it
            identity = await self.identities.for_page(request.cookies.get(COOKIE), self.address(request))
            if identity.cookie is not None:
                self.set_key_cookie(response, identity.cookie)
        return response

    def set_key_cookie(self, response: web.StreamResponse, value: str) -> None:
        """The browser's key: HttpOnly, SameSite=Lax (a link from elsewhere to the page still
        carries it, so following a link does not mint a new key), Secure on an https origin;
        kept two rotation periods (a cookie older than that no longer verifies)."""
        secure = (self.config.public_origin or "").startswith("https://")
        max_age = int(2 * self.config.key_rotation_days * 86_400)
        response.set_cookie(COOKIE, value, path="/", httponly=True, samesite="Lax", secure=secure, max_age=max_age)

    def user_for(self, request: web.Request, client: Client) -> tuple[str, str | None]:
        """The (user, pairing) keys a start carries: the browser's cookie key, else the hashed
        address network with the client's own key for pairing (see Identities.for_protocol)."""
        return self.identities.for_protocol(request.cookies.get(COOKIE), self.address(request), client.key)

    async def on_picture(self, request: web.Request) -> web.Response:
        """GET /image/TOKEN: a picture shown to a live client (re-encoded by the core, so no
        metadata); the token is the only name it has, and it dies with the client."""
        return served(self.clients.pictures.get(request.match_info["token"]))

    async def on_favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)  # no icon; spares browsers a logged 404

    # ---- what the handlers share -----------------------------------------------------------

    def address(self, request: web.Request) -> str:
        """The client address a request counts against."""
        header = self.config.trusted_proxy_header
        return client_address(request.remote, request.headers.get(header) if header else None)

    async def read_form(self, request: web.Request) -> dict[str, str]:
        """The request's form body (bounded by client_max_size: 413 beyond; by body_timeout: 408)."""
        if _payload(request).is_eof():  # the whole body is here already (a small form, one packet): nothing to wait for
            body = await request.read()
            return parse_form(body, request.headers.get("Content-Type", "")) if body else {}
        try:
            async with asyncio.timeout(self.config.body_timeout):
                body = await request.read()
        except TimeoutError:
            self.count("refused", "slow_body")
            raise web.HTTPRequestTimeout() from None
        return parse_form(body, request.headers.get("Content-Type", ""))

    async def find_client(self, request: web.Request) -> tuple[Client | None, dict[str, str]]:
        """The client named by the form's `id` (None if unknown), and the form."""
        form = await self.read_form(request)
        client = self.clients.find(form.get("id"))
        if client is None:
            self.count("refused", "unknown_id")
        else:
            client.last_seen = time.monotonic()
            if client.leaving is not None:
                client.stay()
        return client, form

    def room(self, client: Client) -> Room:
        """The client's room (made once: every action of the client submits with it)."""
        room = client.room
        if room is None:
            room = client.room = Room(self.name, client.key)
        return room

    def count(self, name: str, label: str) -> None:
        """Count in the core's metrics: web_refused{reason}, web_started{mode}, web_expired{reason},
        web_dropped{reason} (events not queued for a client: its queue was full)."""
        self.metrics.inc(f"web_{name}", platform=self.name, **{_LABELS[name]: label})

    def counted(self, name: str, label: str) -> int:
        """What `count` counted so far."""
        return self.metrics.counter(f"web_{name}", platform=self.name, **{_LABELS[name]: label})

    # ---- housekeeping ------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        timeout = self.config.client_timeout
        interval = max(0.2, min(5.0, timeout / 4))
        while True:
            await asyncio.sleep(interval)
            if self.shared_api is None:
                self.sweep(time.monotonic())
            else:
                try:
                    now = time.monotonic()
                    self.sweep(now, await self.shared_api.sweep(now, timeout))
                except Exception as exc:  # Redis away: the next sweep looks again
                    log.info("web: sweeping the shared clients failed (%s)", type(exc).__name__)
            if self.tier is not None:
                with contextlib.suppress(Exception):  # Redis away: the next sweep looks again
                    await self.identities.refresh()
            await self.identities.rotate_if_due()

    def sweep(self, now: float, stale: list[Client] | None = None) -> int:
        """End and forget clients that stopped polling (`stale`: these, found in Redis mode); returns how many."""
        self.clients.expire(now)
        if stale is None:
            stale = self.clients.stale(now, self.config.client_timeout)
        for client in stale:
            if not client.ended:
                with contextlib.suppress(Exception):
                    self.submit(self.room(client), Disconnected())
            self.clients.forget(client)
            if self.tier is not None:
                self.spawn(self.tier.forget(client.key, client.address))
            self.count("expired", "timeout")
        if stale:
            log.info("web: %d clients stopped polling and were ended", len(stale))
        return len(stale)
