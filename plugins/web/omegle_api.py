"""The Omegle-protocol endpoints: /start, /events, /send, /typing, /disconnect, /status and the rest."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.events import Disconnected, Event, Report, StoppedTyping, Typing

from .clients import Client
from .middleware import WIN, fail, json_answer, null, text
from .protocol import ProtocolError, StartRequest, parse_ack, parse_start, status_payload
from .rich import EMOJI, RichError
from .rich_api import message_from

if TYPE_CHECKING:
    from .platform import WebPlatform

__all__ = ["FIRST_EVENTS_WAIT", "LEAVE_GRACE", "OmegleApi", "gone", "read_start", "start_answer", "start_refusal"]

FIRST_EVENTS_WAIT = 0.25  # seconds /start?firstevents=1 waits for the first event (usually "waiting")
LEAVE_GRACE = 5.0  # seconds a page that went away (/disconnect with `grace`) has to come back (a reload)


def gone(request: web.Request) -> bool:
    """Whether the client of `request` has closed its connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _answer(events: list[list], base: int | None) -> web.Response:
    """An /events answer: the bare array, or for an acknowledging client {"seq": n, "events"},
    n being the sequence number of the first event."""
    return json_answer(events if base is None else {"seq": base, "events": events})


async def read_start(platform: WebPlatform, request: web.Request) -> StartRequest:
    """What a /start asks for: a GET's query, or a POST's query and form (ProtocolError: malformed)."""
    params = {k: request.query.getone(k) for k in request.query}
    if request.method == "POST":
        params.update(await platform.read_form(request))
    return parse_start(params)


def start_refusal(platform: WebPlatform, live: int) -> web.Response | None:
    """The answer refusing a /start, or None: `live` ids of its address already (on every instance
    in Redis mode), or this server full."""
    config = platform.config
    if live >= config.max_sessions_per_address:
        platform.count("refused", "sessions_per_address")
        return fail(429)
    if len(platform.clients) >= config.max_clients:
        platform.count("refused", "clients")
        return fail(503)
    return None


def start_answer(platform: WebPlatform, client: Client, events: list[list], wanted: StartRequest) -> web.Response:
    """The answer to /start?firstevents=1: the id, its first events and the status."""
    config, count = platform.config, platform.metrics.online()
    status = [["statusInfo", status_payload(count)], ["count", count]]
    answer: dict = {"clientID": client.secret, "events": events + status}
    if wanted.acks:  # the status is not part of the acknowledged sequence
        answer["next"] = len(events)
    if wanted.rich:  # what the page may do with lines: react with these, send pictures or not
        answer["rich"] = {"emoji": list(EMOJI), "images": config.images, "image_max_bytes": config.image_max_bytes}
    return json_answer(answer)


class OmegleApi:
    """The protocol's handlers over the platform's clients."""

    def __init__(self, platform: WebPlatform) -> None:
        self.web = platform
        self.actions = self._actions()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/start", self.on_start, allow_head=False)
        router.add_post("/start", self.on_start)
        router.add_post("/events", self.on_events)
        router.add_post("/send", self.on_send)
        router.add_post("/typing", self.on_typing)
        router.add_post("/stoppedtyping", self.on_stopped_typing)
        router.add_post("/disconnect", self.on_disconnect)
        router.add_post("/report", self.on_report)
        router.add_post("/stoplookingforcommonlikes", self.on_stop_looking)
        router.add_get("/status", self.on_status)
        router.add_post("/status", self.on_status)
        router.add_get("/count", self.on_count)

    async def on_start(self, request: web.Request) -> web.Response:
        """GET or POST /start: a new client id looking for a stranger."""
        platform, clients = self.web, self.web.clients
        wanted = await read_start(platform, request)
        address = platform.address(request)
        if platform.closing:
            return fail(503)
        refusal = start_refusal(platform, clients.sessions[address])
        if refusal is not None:
            return refusal
        client = clients.create(address, spy=wanted.spy, wants_likes=wanted.wants_likes, rich=wanted.rich)
        if wanted.acks:
            client.sent = []
        user, pairing = platform.user_for(request, client)
        start = dataclasses.replace(wanted.start, user=user, pairing=pairing)
        if not platform.submit(platform.room(client), start):
            clients.forget(client)
            return fail(503)
        platform.count("started", start.mode.value)
        if not wanted.firstevents:
            return json_answer(client.secret)
        if not client.has_answer():
            await client.wait(FIRST_EVENTS_WAIT)
        events = clients.take(client) if client.has_answer() else []
        return start_answer(platform, client, events, wanted)

    async def on_events(self, request: web.Request) -> web.Response:
        """POST /events: the client's pending events, or `null` after the poll window (in Redis mode,
        SharedApi's answers instead; this one for events kept in memory while Redis was away).
        (The coroutine keeps few locals: one is suspended in every open long poll.)"""
        client, form = await self.web.find_client(request)
        admitted = self._admit(request, client, form)
        if admitted.__class__ is not str:
            return admitted  # type: ignore[return-value]
        assert client is not None
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.web.config.poll_window
            while not self.web.closing and self.web.clients.get(client.key) is client:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await client.wait(remaining):
                    break
                if gone(request):
                    # The poller went away (a crashed bridge, a closed tab): leave the events queued
                    # for its next poll instead of writing them to a dead connection.
                    return null()
                if client.has_answer():
                    return self._take(client)
            return null()
        finally:
            self._leave_poll(client, admitted)  # type: ignore[arg-type]

    def _admit(self, request: web.Request, client: Client | None, form: dict[str, str]) -> web.Response | str:
        """/events before its wait: the answer when there is one now (retired events, queued ones,
        a refusal), else the address the long poll counts against (it is counted)."""
        platform, clients = self.web, self.web.clients
        ack = parse_ack(form.get("ack"))
        if client is None:
            retired = clients.claim(form.get("id"), ack)
            return fail(400) if retired is None else _answer(retired.events, retired.base)
        if ack is not None and not (client.acking and client.acknowledge(ack)):
            raise ProtocolError("ack is not a sequence number this chat answered")
        if client.has_answer():
            return self._take(client)
        address = platform.address(request)
        polls = clients.polls
        if polls[address] >= platform.config.max_polls_per_address:
            platform.count("refused", "polls_per_address")
            return fail(429)
        polls[address] += 1
        return address

    def _leave_poll(self, client: Client, address: str) -> None:
        """A long poll of `client` counted against `address` is answered."""
        clients = self.web.clients
        polls = clients.polls
        polls[address] -= 1
        if polls[address] <= 0:
            del polls[address]
        client.last_seen = time.monotonic()
        clients.settle(client)  # its end came while this poll was leaving unanswered

    async def on_send(self, request: web.Request) -> web.Response:
        # `_action` for "/send" written out: most requests are this one.
        client, form = await self.web.find_client(request)
        if client is None or client.ended:
            return fail(400)
        return self.send(client, form)

    async def on_typing(self, request: web.Request) -> web.Response:
        return await self._action(request, "/typing")

    async def on_stopped_typing(self, request: web.Request) -> web.Response:
        return await self._action(request, "/stoppedtyping")

    async def on_disconnect(self, request: web.Request) -> web.Response:
        return await self._action(request, "/disconnect")

    async def on_report(self, request: web.Request) -> web.Response:
        return await self._action(request, "/report")

    async def on_stop_looking(self, request: web.Request) -> web.Response:
        return await self._action(request, "/stoplookingforcommonlikes")

    async def _action(self, request: web.Request, path: str) -> web.Response:
        client, form = await self.web.find_client(request)
        if path == "/disconnect" and client is not None:  # an ended one too: its id dies now
            return self.disconnect(client, form)
        if client is None or client.ended:
            if path == "/disconnect" and self.web.clients.discard(form.get("id")):
                return text(WIN)
            return fail(400)
        return self.actions[path](client, form)

    def _actions(self) -> dict[str, Callable[[Client, dict[str, str]], web.Response]]:
        """The endpoints that act on a live client, by path: each takes the client and its form (also
        what another instance forwards to this one, the client's owner, in Redis mode)."""
        return {
            "/send": self.send, "/typing": lambda c, _: self._act(c, Typing()),
            "/stoppedtyping": lambda c, _: self._act(c, StoppedTyping()), "/disconnect": self.disconnect,
            "/report": lambda c, _: self._act(c, Report()), "/stoplookingforcommonlikes": lambda c, _: text(WIN),
        }  # fmt: skip

    def send(self, client: Client, form: dict[str, str]) -> web.Response:
        """POST /send: id, msg; from a rich client also `ref` (the page's id of the line) and
        `reply` (the line it answers)."""
        try:
            message = message_from(client, form)
        except RichError as exc:
            self.web.count("refused", "bad_request")
            return text(f"fail: {exc}", exc.status)
        return self._act(client, message)

    def disconnect(self, client: Client, form: dict[str, str]) -> web.Response:
        """POST /disconnect: leave; the id is dead at once (the partner is told by the core).

        With `grace` (our page, as it unloads; Omegle clients never send it): leave unless the id
        is used again within LEAVE_GRACE seconds, so a reloaded page takes its chat up again.
        POST /report (our own endpoint; Omegle had none) reports the stranger of a live chat: the
        core ends it as a report and tells the client what follows. POST
        /stoplookingforcommonlikes answers `win` only: web starts never have strict interests, so
        the backend already falls back to a random stranger by itself (the hub after its
        interest_fallback); restarting the search here could race a pairing in flight."""
        if "grace" in form:
            client.stay()
            # The wall-clock time the page went away: a poll on any instance after it means it came back.
            client.leaving = asyncio.get_running_loop().call_later(LEAVE_GRACE, self.leave_unless_back, client, time.time())
            return text(WIN)
        self.leave(client)
        return text(WIN)

    def leave_unless_back(self, client: Client, went_away: float) -> None:
        """The grace of a page that went away (at `went_away`, wall clock) is over: it leaves (in
        Redis mode, unless another instance saw it poll since). Since then, not since the grace's
        length ago: a timer that fires late (a busy loop) must not miss a poll that came back early."""
        tier = self.web.tier
        if tier is None:
            self.leave(client)
            return
        client.leaving = None
        self.web.spawn(self.web.shared_api.leave_unless_seen(client, went_away))

    def leave(self, client: Client) -> None:
        client.leaving = None
        if self.web.clients.get(client.key) is not client:
            return
        if not client.ended:
            self.web.submit(self.web.room(client), Disconnected())
        self.web.clients.forget(client)
        if self.web.tier is not None:
            self.web.spawn(self.web.tier.forget(client.key, client.address))

    def _take(self, client: Client) -> web.Response:
        base = client.base
        return _answer(self.web.clients.take(client), base if client.acking else None)

    def _act(self, client: Client, event: Event) -> web.Response:
        if client.ended:
            return fail(400)
        client.answered = True  # a notice from now on answers this, not the start
        web_platform = self.web
        if not web_platform.submit(client.room or web_platform.room(client), event):
            web_platform.count("refused", "core")
            return fail(503)
        return text(WIN)

    async def on_status(self, request: web.Request) -> web.Response:
        """GET /status: Omegle's status object; count = people searching or chatting."""
        return json_answer(status_payload(self.web.metrics.online()))

    async def on_count(self, request: web.Request) -> web.Response:
        return text(str(self.web.metrics.online()))
