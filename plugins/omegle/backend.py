"""The omegle backend: a client of any Omegle-protocol server (another stranger-bridge included)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from pydantic import Field, field_validator

from bridge.abc import Backend, Chat, PluginConfig
from bridge.backoff import Backoff
from bridge.events import Disconnected, Event, Message, Mode, Reason, Report, ServerNotice, Start, StoppedTyping, Typing, Waiting

from .protocol import ConnectionDied, ProtocolError, action_ok, parse_events, parse_start, parse_status
from .query import random_id, start_params
from .translate import Translator

__all__ = ["OmegleBackend", "OmegleChat", "OmegleConfig"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # bytes of one answer; a server sending more is broken or hostile
BACKOFF_CAP = 10.0  # seconds
STATUS_MAX_AGE = 60.0  # seconds an online count stays fresh


class OmegleConfig(PluginConfig):
    """[backends.NAME] with plugin = "omegle"."""

    servers: tuple[str, ...] = Field(min_length=1)  # base URLs, tried in turn when one fails
    request_timeout: float = Field(10.0, gt=0)  # seconds for /start, /send and the other actions
    poll_timeout: float = Field(75.0, gt=0)  # seconds for one /events long poll (servers hold 20-60 s)
    retries: int = Field(2, ge=0, le=10)  # further attempts of a failed request, with backoff
    backoff: float = Field(0.5, ge=0)  # seconds before the first retry; doubles each time
    min_poll_interval: float = Field(0.5, ge=0)  # an empty poll answered faster than this waits
    stop_common_likes_after: float | None = Field(10.0, ge=0)  # 0 (or None): only strangers with common likes
    caps: str | None = "recaptcha2"  # advertised like python-omegle; None sends no caps/rcs
    max_connections: int = Field(4096, ge=1)  # HTTP connections of the shared client session

    @field_validator("servers")
    @classmethod
    def _urls(cls, servers: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for url in servers:
            url = url.strip().rstrip("/")
            if not url.startswith(("http://", "https://")) or len(url) < 10:
                raise ValueError(f"not an http(s) base URL: {url!r}")
            out.append(url)
        return tuple(out)


class _Failure(Exception):
    """A request failed in a way worth retrying (no answer, reset, 5xx)."""

    def __init__(self, notice: str) -> None:
        super().__init__(notice)
        self.notice = notice


class _Refused(Exception):
    """The server answered 4xx: retrying will not help."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class _Ending:
    """How a chat ends before it began: the notice shown, and the reason."""

    __slots__ = ("notice", "reason")

    def __init__(self, notice: str, reason: Reason) -> None:
        self.notice, self.reason = notice, reason


class OmegleChat(Chat):
    """One conversation through an Omegle-protocol server: /start, then a long-poll loop."""

    def __init__(self, backend: OmegleBackend, start: Start | None, server: str, client_id: str | None = None) -> None:
        self.backend = backend
        self.start = start  # None: a resumed chat
        self.server = server
        self.client_id = client_id
        self.translator = Translator(spy=start is not None and start.mode is Mode.ASK)
        self.closed = False
        self._likes_timer: asyncio.Task | None = None
        if client_id is not None:
            self.handle = _handle(server, client_id)

    def __repr__(self) -> str:  # never show the client id
        return f"<OmegleChat {self.server} {'connected' if self.translator.connected else 'searching'}>"

    @property
    def dead(self) -> bool:
        """The server has forgotten (or will forget) the id: nothing more to say to it."""
        return self.translator.done

    async def events(self) -> AsyncIterator[Event]:
        resumed = self.start is None
        try:
            if not resumed:
                yield Waiting()
                outcome = await self._start()
                if isinstance(outcome, _Ending):
                    self.translator.done = True
                    yield ServerNotice(outcome.notice)
                    yield Disconnected(reason=outcome.reason)
                    return
                for event in self._translate(outcome):
                    yield event
                if self.dead:
                    return
                self._schedule_stop_looking()
            async for event in self._poll(first_tells=resumed):
                yield event
        finally:
            self._cancel_timer()

    def _translate(self, batch) -> list[Event]:
        events = self.translator.batch(batch)
        if self.translator.count is not None:
            self.backend.note_count(self.translator.count)
        if self.translator.connected:
            self._cancel_timer()
        return events

    async def _start(self):
        """The first events of a new chat, or how it ends before it began."""
        assert self.start is not None
        query = start_params(self.start, random_id(), caps=self.backend.config.caps)
        notice = "The stranger service did not answer."
        attempts = self.backend.config.retries + 1
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.backend.retry.delay(attempt))
                self.server = self.backend.next_server(self.server)
            try:
                status, body = await self._start_request(query)
                if status >= 500:
                    raise _Failure(f"The stranger service failed (HTTP {status}).")
                if status >= 400:  # too many sessions from here, a bad language: retrying will not help
                    return _Ending(f"The stranger service refused to start a chat (HTTP {status}).", Reason.REFUSED)
                answer = parse_start(body)
            except _Failure as exc:
                notice = exc.notice
                log.warning("omegle: /start on %s failed (%s), attempt %d of %d", self.server, exc.notice, attempt + 1, attempts)
                continue
            except ProtocolError as exc:
                log.warning("omegle: /start on %s: %s", self.server, exc)
                notice = "The stranger service answered something that is not the Omegle protocol."
                continue
            self.client_id = answer.client_id
            self.handle = _handle(self.server, answer.client_id)
            if self.closed:  # the user left while /start was under way
                await self._disconnect()
                return ()
            return answer.events
        return _Ending(notice, Reason.ERROR)

    async def _start_request(self, query) -> tuple[int, str]:
        # A user who leaves while /start is under way must not leave a client queued at the
        # server (someone would be paired with nobody): finish the request, then disconnect.
        request = asyncio.ensure_future(self.backend.request("GET", self.server, "/start", params=query))
        try:
            return await asyncio.shield(request)
        except asyncio.CancelledError:
            self.backend.forget_start(request, self.server)
            raise

    async def _poll(self, first_tells: bool) -> AsyncIterator[Event]:
        cfg = self.backend.config
        failures = 0
        empties = 0
        while not self.closed:
            began = time.monotonic()
            try:
                status, body = await self.backend.request(
                    "POST", self.server, "/events", data={"id": self.client_id}, timeout=cfg.poll_timeout
                )
                if status >= 500:
                    raise _Failure(f"The stranger service failed (HTTP {status}).")
                if status >= 400:
                    raise _Refused(status)
                batch = parse_events(body)
            except _Failure as exc:
                failures += 1
                if failures > cfg.retries:
                    log.warning("omegle: polling %s failed %d times (%s); ending the chat", self.server, failures, exc.notice)
                    self.translator.done = True
                    if not first_tells:
                        yield ServerNotice(exc.notice)
                    yield Disconnected(reason=Reason.RESTART if first_tells else Reason.ERROR)
                    return
                await asyncio.sleep(self.backend.retry.delay(failures))
                continue
            except (_Refused, ProtocolError) as exc:
                log.warning("omegle: polling %s: %s; ending the chat", self.server, exc)
                self.translator.done = True
                if not first_tells:
                    yield ServerNotice(
                        "The stranger service no longer knows this chat."
                        if isinstance(exc, _Refused)
                        else "The stranger service answered something that is not the Omegle protocol."
                    )
                yield Disconnected(reason=Reason.RESTART if first_tells else Reason.ERROR)
                return
            failures = 0
            if first_tells:
                first_tells = False
                if batch and isinstance(batch[0], ConnectionDied):
                    self.translator.done = True
                    yield Disconnected(reason=Reason.RESTART)
                    return
            if not batch:
                # Never spin: a server that answers `null` at once is polled at a bounded rate.
                elapsed = time.monotonic() - began
                if elapsed < cfg.min_poll_interval:
                    empties += 1
                    await asyncio.sleep(self.backend.empty_poll.delay(empties) - elapsed)
                else:
                    empties = 0
                continue
            empties = 0
            for event in self._translate(batch):
                yield event
            if self.dead:
                return

    def _schedule_stop_looking(self) -> None:
        start, after = self.start, self.backend.config.stop_common_likes_after
        if start is None or not after or not start.interests or start.strict_interests:
            return
        if start.mode is not Mode.RANDOM or start.answer_questions or self.translator.connected:
            return
        self._likes_timer = asyncio.get_running_loop().create_task(self._stop_looking(after))

    async def _stop_looking(self, after: float) -> None:
        await asyncio.sleep(after)
        if not self.closed and not self.translator.connected:
            try:
                await self._action("/stoplookingforcommonlikes")
            except (_Failure, _Refused) as exc:
                log.info("omegle: /stoplookingforcommonlikes failed: %s", exc)

    def _cancel_timer(self) -> None:
        timer, self._likes_timer = self._likes_timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _action(self, path: str, retries: int = 0, **fields: str) -> bool:
        """POST a form action with our id; True on `win`. Raises _Failure/_Refused when it never got through."""
        cfg = self.backend.config
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(self.backend.retry.delay(attempt))
            try:
                status, body = await self.backend.request("POST", self.server, path, data={"id": self.client_id, **fields})
            except _Failure:
                if attempt == retries:
                    raise
                continue
            if status >= 500:
                if attempt == retries:
                    raise _Failure(f"HTTP {status}")
                continue
            if status >= 400:
                raise _Refused(status)
            return action_ok(body)
        return False

    async def send(self, event: Event) -> None:
        """Relay a user's Message, Typing or StoppedTyping; Report cannot travel (Omegle cannot block)."""
        if self.closed or self.dead or self.client_id is None or type(event) is Report:
            return
        if type(event) is Message:
            try:
                ok = await self._action("/send", retries=self.backend.config.retries, msg=event.text)
            except (_Failure, _Refused) as exc:
                raise ConnectionError(f"the stranger service did not take the message: {exc}") from None
            if not ok:  # the chat is ending (the next poll says why)
                log.debug("omegle: /send answered fail")
        elif type(event) in (Typing, StoppedTyping):
            path = "/typing" if type(event) is Typing else "/stoppedtyping"
            try:
                await self._action(path)
            except (_Failure, _Refused) as exc:  # typing is a hint: never end a chat over it
                log.debug("omegle: %s failed: %s", path, exc)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        if not self.dead and self.client_id is not None:
            await self._disconnect()

    async def _disconnect(self) -> None:
        self.translator.done = True
        try:
            await self._action("/disconnect")
        except (_Failure, _Refused) as exc:
            log.info("omegle: /disconnect on %s failed: %s", self.server, exc)


def _handle(server: str, client_id: str) -> str:
    return json.dumps({"server": server, "id": client_id}, separators=(",", ":"))


class OmegleBackend(Backend):
    """Strangers from Omegle-protocol servers: random, interests, language, spy ask and answer."""

    Config = OmegleConfig
    max_message_length = 4000

    def __init__(self, name, config, state=None) -> None:
        super().__init__(name, config, state)
        # The one backoff policy (bridge.backoff), declared from the config: failed requests, and
        # empty answers that came faster than min_poll_interval (never spin; at most 32 times it).
        self.retry = Backoff(config.backoff, cap=BACKOFF_CAP, attempts=config.retries + 1)
        self.empty_poll = Backoff(config.min_poll_interval, cap=min(BACKOFF_CAP, 32 * config.min_poll_interval), attempts=None)
        self.session: aiohttp.ClientSession | None = None
        self._count: int | None = None
        self._count_at = 0.0
        self._rotation = 0
        self._cleanups: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Open the one HTTP client session every chat shares."""
        connector = aiohttp.TCPConnector(limit=self.config.max_connections, limit_per_host=0)
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def stop(self) -> None:
        """Close the shared HTTP session (open long polls end)."""
        if self._cleanups:  # late /start answers still being disconnected: a short grace
            _, pending = await asyncio.wait(list(self._cleanups), timeout=min(2.0, self.config.request_timeout))
            for task in pending:
                task.cancel()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise RuntimeError("the omegle backend is not started")
        return self.session

    def next_server(self, current: str | None = None) -> str:
        """The server to try next: rotated, so a failing one is not asked twice in a row."""
        servers = self.config.servers
        self._rotation = (self._rotation + 1) % len(servers)
        server = servers[self._rotation]
        if server == current and len(servers) > 1:
            return self.next_server(current)
        return server

    async def request(self, method: str, server: str, path: str, *, params=None, data=None, timeout: float | None = None):
        """One HTTP exchange with a deadline: (status, body text). Raises _Failure on no answer."""
        session = self._session()
        limit = aiohttp.ClientTimeout(total=timeout or self.config.request_timeout)
        try:
            async with session.request(method, server + path, params=params, data=data, timeout=limit, allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_BODY + 1)
                if len(raw) > MAX_BODY:
                    raise _Failure("The stranger service sent an oversized answer.")
                return resp.status, raw.decode("utf-8", "replace")
        except TimeoutError:
            raise _Failure("The stranger service did not answer in time.") from None
        except aiohttp.ClientError as exc:
            log.debug("omegle: %s %s%s: %s", method, server, path, exc.__class__.__name__)
            raise _Failure("The connection to the stranger service was lost.") from None

    async def connect(self, start: Start) -> Chat:
        """A chat that starts at the next server in turn; returns at once (/start runs in events())."""
        if start.mode is Mode.GROUP:
            return _RefusedChat("This stranger service has no group chats; try random, ask or answer.")
        self._session()
        return OmegleChat(self, start, self.config.servers[self._rotation])

    async def resume(self, handle: str) -> Chat | None:
        """Take up a persisted chat; its first poll tells whether the server still knows the id."""
        parsed = _parse_handle(handle, self.config.servers)
        if parsed is None:
            return None
        server, client_id = parsed
        return OmegleChat(self, None, server, client_id)

    async def abandon(self, handle: str) -> None:
        """Tell the server a persisted chat will not be resumed (POST /disconnect)."""
        parsed = _parse_handle(handle, self.config.servers)
        if parsed is None:
            return
        server, client_id = parsed
        chat = OmegleChat(self, None, server, client_id)
        await chat.aclose()

    def forget_start(self, request: asyncio.Future, server: str) -> None:
        """Disconnect the client a cancelled /start creates, once its answer arrives."""

        async def cleanup() -> None:
            try:
                status, body = await request
                client_id = parse_start(body).client_id if status == 200 else None
            except (_Failure, ProtocolError):
                return
            if client_id is not None:
                await OmegleChat(self, None, server, client_id).aclose()

        task = asyncio.get_running_loop().create_task(cleanup())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def note_count(self, count: int) -> None:
        """Keep the last online count a chat saw (statusInfo, count)."""
        self._count, self._count_at = count, time.monotonic()

    async def online(self) -> int | None:
        """The server's online count: the last one a chat saw, else GET /status."""
        if self._count is not None and time.monotonic() - self._count_at < STATUS_MAX_AGE:
            return self._count
        server = self.config.servers[self._rotation]
        try:
            status, body = await self.request("GET", server, "/status", params={"nocache": str(time.time()), "randid": random_id()})
            if status == 200:
                count = parse_status(body)
                if count is not None:
                    self.note_count(count)
        except (_Failure, ProtocolError) as exc:
            log.debug("omegle: /status on %s failed: %s", server, exc)
        return self._count


def _parse_handle(handle: str, servers: tuple[str, ...]) -> tuple[str, str] | None:
    try:
        data = json.loads(handle)
        server, client_id = data["server"], data["id"]
    except (ValueError, KeyError, TypeError):
        return None
    # Only ever talk to configured servers, whatever the stored handle says.
    if server not in servers or not isinstance(client_id, str) or not client_id:
        return None
    return server, client_id


class _RefusedChat(Chat):
    """A chat the backend cannot hold: one notice, then the end."""

    def __init__(self, notice: str) -> None:
        self.notice = notice

    async def events(self) -> AsyncIterator[Event]:
        yield Waiting()
        yield ServerNotice(self.notice)
        yield Disconnected(reason=Reason.REFUSED)

    async def send(self, event: Event) -> None:
        return None

    async def aclose(self) -> None:
        return None
