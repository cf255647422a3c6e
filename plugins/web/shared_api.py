"""The web endpoints in Redis mode: /start, /events and the actions on any instance, over the shared tier."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.events import Disconnected, Reason

from .clients import ID_LENGTH, Client
from .middleware import WIN, fail, json_answer, null, text
from .omegle_api import FIRST_EVENTS_WAIT, gone, read_start, start_answer, start_refusal
from .protocol import ProtocolError, parse_ack
from .nojs_shared import CLOSED as NOJS_CLOSED
from .nojs_shared import SEND as NOJS_SEND
from .nojs_shared import NoJsShared
from .pictures import PATH, SharedPictures, served
from .render import render
from .rich_api import UPLOAD
from .shared import DOWN, RECHECK, SharedTier, Taken
from .shared_owner import NOTICE, OwnerQueue
from .shared_polls import polling

if TYPE_CHECKING:
    from .platform import WebPlatform

__all__ = ["SharedApi"]

log = logging.getLogger(__name__)

RICH_PATHS = frozenset({"/edit", "/delete", "/react"})


def _answer(taken: Taken) -> web.Response:
    return json_answer({"seq": taken.base, "events": taken.events} if taken.acking else taken.events)


class SharedApi:
    """The handlers that replace OmegleApi's /start, /events and actions when the store is Redis."""

    def __init__(self, platform: WebPlatform, tier: SharedTier) -> None:
        self.web = platform
        self.tier = tier
        self.pictures = SharedPictures(tier.redis, tier.prefix)
        self.owner = OwnerQueue(platform, tier, self.pictures)
        platform.clients.pictures = self.pictures  # type: ignore[assignment]  # the same interface, in Redis
        self.nojs = platform.nojs.shared = NoJsShared(platform, platform.nojs, tier)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Registered before OmegleApi's and RichApi's: the first route of a path wins."""
        router.add_get("/start", self.on_start, allow_head=False)
        router.add_post("/start", self.on_start)
        router.add_post("/events", self.on_events)
        router.add_get(PATH + "{token}", self.on_picture, allow_head=False)
        for path in ("/send", "/typing", "/stoppedtyping", "/disconnect", "/report", "/stoplookingforcommonlikes", *sorted(RICH_PATHS)):
            router.add_post(path, self._handler(path))

    def _handler(self, path: str):
        async def handle(request: web.Request) -> web.Response:
            return await self.on_action(request, path)

        return handle

    async def push(self, client: Client, items: list[list], *, force: bool = False, final: bool = False) -> None:
        """Queue events for a client this instance owns (see OwnerQueue.push)."""
        await self.owner.push(client, items, force=force, final=final)

    def on_forwarded(self, envelope: dict[str, Any]) -> None:
        """An action another instance took for a client this one owns: it takes effect here."""
        client = self.web.clients.get(str(envelope.get("k")))
        path, form = str(envelope.get("p")), envelope.get("f")
        if path in (NOJS_SEND, NOJS_CLOSED):
            self._on_nojs(envelope, client, path, form if isinstance(form, dict) else {})
            return
        action = self._action(path)
        if client is None or action is None or not isinstance(form, dict) or (client.ended and path != "/disconnect"):
            self.tier.answer(envelope, 400, "fail")
            return
        client.last_seen = time.monotonic()
        client.stay()
        response = action(client, {str(k): str(v) for k, v in form.items()})
        if path == UPLOAD:  # answered once its picture can be fetched from any instance
            self.web.spawn(self._answer_when_written(envelope, client.key, response))
            return
        self.tier.answer(envelope, response.status, response.text or "")

    def _on_nojs(self, envelope: dict[str, Any], client: Client | None, path: str, form: dict) -> None:
        if client is None or not client.nojs:
            if path == NOJS_SEND:
                self.tier.answer(envelope, 400, "ended")
            return
        client.last_seen = time.monotonic()
        if path == NOJS_CLOSED:
            self.nojs.closed(client)
            return
        status, outcome = self.web.nojs.act(client, {str(k): str(v) for k, v in form.items()})
        self.tier.answer(envelope, status, outcome)

    async def _answer_when_written(self, envelope: dict[str, Any], key: str, response: web.Response) -> None:
        await self.pictures.written(key)
        self.tier.answer(envelope, response.status, response.text or "")

    def _action(self, path: str) -> Any:
        if path == UPLOAD:
            return self.web.rich_api.forwarded_upload
        return self.web.api.actions.get(path) or self.web.rich_api.actions.get(path)

    async def leave_unless_seen(self, client: Client, since: float) -> None:
        """A page's grace after unloading is over: it leaves unless some instance saw it since."""
        [seen] = await self.tier.seen([client.key], polled=True)
        if seen > since and self.web.clients.get(client.key) is client:
            client.last_seen = time.monotonic()
            return
        self.web.api.leave(client)

    async def adopt(self, keys: list[str]) -> int:
        """Take back the clients a previous run of this instance left (their chats are resumed)."""
        adopted = 0
        for key, raw in await self.tier.records(keys):
            client = self.web.clients.adopt(
                key, raw.get("a", ""), spy=raw.get("sp") == "1", wants_likes=raw.get("l") == "1", rich=raw.get("r") == "1",
            )  # fmt: skip
            if raw.get("nj") == "1":
                self.nojs.adopted(client, raw, await self.tier.transcripts.length(key))
            if raw.get("k") == "1":
                client.sent = []
            client.answered = True
            client.pushed = int(raw.get("t") or 0)  # not known fetched: memory waits behind them (see _from_memory)
            adopted += 1
        return adopted

    async def sweep(self, now: float, timeout: float) -> list[Client]:
        """The clients this instance owns that no instance saw for `timeout` seconds (plus a poll window)."""
        stale = self.web.clients.stale(now, timeout)
        if not stale:
            return []
        seen = await self.tier.seen([c.key for c in stale])
        wall, out = time.time(), []
        for client, at in zip(stale, seen):
            idle = wall - at
            if at and idle <= timeout + self.web.config.poll_window:
                client.last_seen = now - idle  # polled elsewhere: look again when that is old
            else:
                out.append(client)
        return out

    # ---- any instance ------------------------------------------------------------------------

    def key_of(self, secret: str | None) -> str | None:
        if not secret or len(secret) != ID_LENGTH:
            return None
        return self.web.clients.key_of(secret)

    async def on_start(self, request: web.Request) -> web.Response:
        """GET or POST /start: this instance owns the new client (and runs its session)."""
        platform, clients = self.web, self.web.clients
        wanted = await read_start(platform, request)
        address = clients.key_of(platform.address(request))  # counted everywhere under its keyed hash
        if platform.closing:
            return fail(503)
        shared = not self.tier.down()
        try:
            live = await self.tier.sessions(address) if shared else clients.sessions[address]
        except DOWN:
            shared, live = False, clients.sessions[address]
        refusal = start_refusal(platform, live)
        if refusal is not None:
            return refusal
        client = clients.create(address, spy=wanted.spy, wants_likes=wanted.wants_likes, rich=wanted.rich)
        if wanted.acks:
            client.sent = []
        if shared:
            try:
                await self.tier.create(client.key, address, spy=client.spy, likes=client.wants_likes, rich=client.rich, acking=client.acking)
            except DOWN:
                shared = False  # known to this instance only (its start is refused: the pool is away too)
        user, pairing = platform.user_for(request, client)
        start = dataclasses.replace(wanted.start, user=user, pairing=pairing)
        if not platform.submit(platform.room(client), start):
            clients.forget(client)
            if shared:
                self.web.spawn(self.tier.forget(client.key, address))
            return fail(503)
        platform.count("started", start.mode.value)
        if not wanted.firstevents:
            return json_answer(client.secret)
        events = await self._first_events(client, request) if shared else []
        if not events:  # Redis away: what came meanwhile waits here
            if not client.has_answer():
                await client.wait(FIRST_EVENTS_WAIT)
            events = clients.take(client) if client.has_answer() else []
        return start_answer(platform, client, events, wanted)

    async def _first_events(self, client: Client, request: web.Request) -> list[list]:
        try:
            taken = await self._poll(client.key, None, FIRST_EVENTS_WAIT, request, client)
        except DOWN:
            return []
        return taken.events if taken is not None else []

    async def on_events(self, request: web.Request) -> web.Response:
        """POST /events on any instance: one atomic take from the client's queue in Redis."""
        platform = self.web
        form = await platform.read_form(request)
        ack = parse_ack(form.get("ack"))
        key = self.key_of(form.get("id"))
        if key is None:
            platform.count("refused", "unknown_id")
            return fail(400)
        client = platform.clients.get(key)
        if client is None:
            retired = platform.clients.claim(form.get("id"), ack)  # an end kept here while Redis was away
            if retired is not None:
                return json_answer(retired.events if retired.base is None else {"seq": retired.base, "events": retired.events})
        else:  # this instance owns it
            client.last_seen = time.monotonic()
            client.stay()
            # A push whose reply was lost is settled before any take: what it queued may be served from memory already.
            if self.tier.down() or ((client.has_answer() or client.unsure) and not await self.owner.flush(client)):
                return await self._from_memory(request, client, ack)
        async with self.polling(platform.address(request)) as slot:
            if slot is None:
                return fail(429)
            try:
                taken = await self._poll(key, ack, platform.config.poll_window, request, client)
            except DOWN:
                taken = Taken("down")
        status = "none" if taken is None else taken.status
        if client is not None and platform.clients.get(key) is client and not gone(request):
            if status == "down":  # Redis went away meanwhile: its events wait in memory here
                return await self._from_memory(request, client, ack)
            if status == "unknown":  # no record in Redis (made while it was away, or lost with it): all in memory
                return await platform.api.on_events(request)
        if status == "down":
            return fail(503)
        if status == "unknown" and client is not None and not gone(request):
            retired = platform.clients.claim(form.get("id"), ack)  # it ended here meanwhile, Redis away
            if retired is not None:
                return json_answer(retired.events if retired.base is None else {"seq": retired.base, "events": retired.events})
        if taken is None:
            return null()
        if taken.status == "unknown":
            platform.count("refused", "unknown_id")
            return fail(400)
        return _answer(taken)

    def polling(self, address: str, lease: float | None = None) -> contextlib.AbstractAsyncContextManager[str | None]:
        """One open poll (or no-JS stream) of `address`, counted on every instance (see shared_polls.polling)."""
        return polling(self.web, self.tier, address, lease)

    async def _from_memory(self, request: web.Request, client: Client, ack: int | None) -> web.Response:
        """A poll of a client this instance owns while Redis is away: its events kept in memory, once
        every event it had in Redis is known fetched (else they wait, in order, until Redis is back)."""
        if client.fetched >= client.pushed:
            return await self.web.api.on_events(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.web.config.poll_window
        while not self.web.closing and loop.time() < deadline and self.tier.down() and not gone(request):
            await asyncio.sleep(0.1)
        return null()

    async def _poll(
        self, key: str, ack: int | None, window: float, request: web.Request, client: Client | None = None,
    ) -> Taken | None:
        """The client's events once there are any within `window` (None: none came, a newer poll
        took over, or the poller went away and they stay queued); Taken("unknown") for a dead id.
        `client`: this instance owns it (what its polls fetched is counted)."""
        tier, token = self.tier, uuid.uuid4().hex
        taken = await tier.take(key, token=token, ack=ack, begin=True)
        if taken.status == "badack":
            raise ProtocolError("ack is not a sequence number this chat answered")
        if taken.status == "unknown":
            return taken
        if taken.status == "ok":
            await tier.end_poll(key, token)
            return await self._answered(key, taken, request, client)
        if taken.previous and taken.previous != tier.instance:
            tier.wake(taken.previous, key)  # the older poll on that instance answers null
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        try:
            while not self.web.closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                await tier.wait(key, min(remaining, RECHECK))
                if gone(request):
                    return None  # the events stay queued for the next poll
                taken = await tier.take(key, token=token)
                if taken.status == "ok":
                    return await self._answered(key, taken, request, client)
                if taken.status != "empty":
                    return None
            return None
        finally:
            await tier.end_poll(key, token)

    async def _answered(self, key: str, taken: Taken, request: web.Request, client: Client | None) -> Taken | None:
        """A take's events, to be written; None when the poller went away while Redis answered (a
        plain client's go back to the head of its queue; an acknowledging one's stay unacknowledged)."""
        if gone(request):
            if not taken.acking:
                await self.tier.give_back(key, taken.events)
            return None
        if client is not None:
            client.fetched = max(client.fetched, taken.total)
        return taken

    async def on_action(self, request: web.Request, path: str) -> web.Response:
        """An action: done here if this instance owns the client, else forwarded to its owner;
        answered as the protocol says either way."""
        platform = self.web
        client, form = await platform.find_client(request)
        if client is not None:
            action = platform.api.actions.get(path) or platform.rich_api.actions.get(path)
            if path == "/disconnect" or not client.ended:
                return action(client, form)
            return fail(400)
        key = self.key_of(form.get("id"))
        try:
            record = await self.tier.find(key) if key is not None else None
        except DOWN:
            return fail(503)
        if record is None or record.owner == self.tier.instance:
            return fail(400)
        if record.ended:
            if path == "/disconnect":  # the end was not fetched: the id dies now
                await self.tier.forget(record.key, "")
                return text(WIN)
            return fail(400)
        if path in RICH_PATHS and (not record.rich or record.spy):
            return platform.rich_api.refuse_not_rich()
        if path == "/send" and form.get("msg") is None:
            platform.count("refused", "bad_request")
            return text("fail: msg is missing", 400)
        answer = await self.tier.forward(record.owner, record.key, path, form)
        if answer is None:  # the owner is restarting: the action takes effect when it is back
            return text(WIN)
        return text(answer[1], answer[0])

    async def on_picture(self, request: web.Request) -> web.Response:
        """GET /image/TOKEN on any instance: a picture shown to a live client, from Redis."""
        try:
            return served(await self.pictures.fetch(request.match_info["token"]))
        except DOWN:
            return fail(503)

    async def end_owned_by(self, instance: str) -> int:
        """Tell the clients of an instance that is gone for good that their chats ended (once each)."""
        ended = 0
        for key, spy, nojs in await self.tier.orphans(instance):
            if nojs:
                await self.nojs.end_orphan(key)
                ended += 1
                continue
            items = render(Disconnected(reason=Reason.ERROR), spy=spy)
            await self.tier.push(key, "", items, force=True, final=True, news=True, notice=NOTICE)
            ended += 1
        return ended
