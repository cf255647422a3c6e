"""The omegle backend: a client of any Omegle-protocol server (another stranger-bridge included); chats in `chat`."""

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
from bridge.events import Disconnected, Event, Mode, Reason, ServerNotice, Start, Waiting

from .chat import OmegleChat, RequestFailed, answer, failure
from .protocol import ProtocolError, parse_start, parse_status
from .query import random_id

__all__ = ["OmegleBackend", "OmegleConfig"]

log = logging.getLogger(__name__)

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
        self._limits: dict[float, aiohttp.ClientTimeout] = {}

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

    def exchange(self, method: str, server: str, path: str, *, params=None, data=None, timeout: float | None = None):
        """The HTTP exchange of `request`, not yet awaited: aiohttp's context manager giving the
        response. A caller that awaits it in its own frame (the long poll) reads the body with
        `answer` and turns a timeout or aiohttp.ClientError into RequestFailed with `failure`."""
        seconds = timeout or self.config.request_timeout
        limit = self._limits.get(seconds)
        if limit is None:  # one per deadline used (two): a waiting poll holds it, and it is immutable
            limit = self._limits[seconds] = aiohttp.ClientTimeout(total=seconds)
        return self._session().request(method, server + path, params=params, data=data, timeout=limit, allow_redirects=False)

    async def request(self, method: str, server: str, path: str, *, params=None, data=None, timeout: float | None = None):
        """One HTTP exchange with a deadline: (status, body text). Raises RequestFailed on no answer."""
        try:
            async with self.exchange(method, server, path, params=params, data=data, timeout=timeout) as resp:
                return resp.status, await answer(resp)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise failure(exc, method, server, path) from None

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
            except (RequestFailed, ProtocolError):
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
        except (RequestFailed, ProtocolError) as exc:
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
