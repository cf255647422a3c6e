"""One chat through an Omegle-protocol server: /start, the long-poll loop, the actions, the end."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp

from bridge.abc import Chat
from bridge.events import Disconnected, Event, Message, Mode, Reason, Report, ServerNotice, Start, StoppedTyping, Typing, Waiting

from .protocol import ConnectionDied, ProtocolError, action_ok, parse_events, parse_start
from .query import random_id, start_params
from .translate import Translator

if TYPE_CHECKING:
    from .backend import OmegleBackend

__all__ = ["MAX_BODY", "OmegleChat", "RequestFailed", "RequestRefused", "answer", "failure"]

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # bytes of one answer; a server sending more is broken or hostile


class RequestFailed(Exception):
    """A request failed in a way worth retrying (no answer, reset, 5xx)."""

    def __init__(self, notice: str) -> None:
        super().__init__(notice)
        self.notice = notice


class RequestRefused(Exception):
    """The server answered 4xx: retrying will not help."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


async def answer(resp: aiohttp.ClientResponse) -> str:
    """The body text of an answer; RequestFailed when it is over MAX_BODY bytes."""
    raw = await resp.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise RequestFailed("The stranger service sent an oversized answer.")
    return raw.decode("utf-8", "replace")


def failure(exc: BaseException, method: str, server: str, path: str) -> RequestFailed:
    """What a request that got no answer (a timeout, an aiohttp.ClientError) tells the user."""
    if isinstance(exc, TimeoutError):
        return RequestFailed("The stranger service did not answer in time.")
    log.debug("omegle: %s %s%s: %s", method, server, path, exc.__class__.__name__)
    return RequestFailed("The connection to the stranger service was lost.")


class _Ending:
    """How a chat ends before it began: the notice shown, and the reason."""

    __slots__ = ("notice", "reason")

    def __init__(self, notice: str, reason: Reason) -> None:
        self.notice, self.reason = notice, reason


class OmegleChat(Chat):
    """One conversation through an Omegle-protocol server: /start, then a long-poll loop."""

    # Slots: a thousand waiting chats each hold one, and no __dict__ (Chat has empty slots).
    __slots__ = ("_likes_timer", "backend", "client_id", "closed", "handle", "server", "start", "translator")

    def __init__(self, backend: OmegleBackend, start: Start | None, server: str, client_id: str | None = None) -> None:
        self.backend = backend
        self.start = start  # None: a resumed chat
        self.server = server
        self.client_id = client_id
        self.translator = Translator(spy=start is not None and start.mode is Mode.ASK)
        self.closed = False
        self._likes_timer: asyncio.Task | None = None
        self.handle = None if client_id is None else _handle(server, client_id)  # the slot hides Chat.handle

    def __repr__(self) -> str:  # never show the client id
        return f"<OmegleChat {self.server} {'connected' if self.translator.connected else 'searching'}>"

    @property
    def dead(self) -> bool:
        """The server has forgotten (or will forget) the id: nothing more to say to it."""
        return self.translator.done

    async def events(self) -> AsyncIterator[Event]:
        # The /start, then the long-poll loop, in this one generator: a waiting chat holds one
        # generator's frame, not a second one for the loop (bench_omegle's 1,000 chats).
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
            # The long polls. A resumed chat's first answer tells whether the server still knows it.
            first_tells = resumed
            cfg = self.backend.config
            failures = 0
            empties = 0
            while not self.closed:
                began = time.monotonic()
                body = batch = event = resp = None  # a chat waiting for its next answer holds nothing of the last
                try:
                    # backend.request written in: a waiting chat holds this one frame, not also request's.
                    try:
                        async with self.backend.exchange(
                            "POST", self.server, "/events", data={"id": self.client_id}, timeout=cfg.poll_timeout
                        ) as resp:
                            status, body = resp.status, await answer(resp)
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        raise failure(exc, "POST", self.server, "/events") from None
                    if status >= 500:
                        raise RequestFailed(f"The stranger service failed (HTTP {status}).")
                    if status >= 400:
                        raise RequestRefused(status)
                    batch = parse_events(body)
                except RequestFailed as exc:
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
                except (RequestRefused, ProtocolError) as exc:
                    log.warning("omegle: polling %s: %s; ending the chat", self.server, exc)
                    self.translator.done = True
                    if not first_tells:
                        yield ServerNotice(
                            "The stranger service no longer knows this chat."
                            if isinstance(exc, RequestRefused)
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
                    raise RequestFailed(f"The stranger service failed (HTTP {status}).")
                if status >= 400:  # too many sessions from here, a bad language: retrying will not help
                    return _Ending(f"The stranger service refused to start a chat (HTTP {status}).", Reason.REFUSED)
                answer = parse_start(body)
            except RequestFailed as exc:
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
            except (RequestFailed, RequestRefused) as exc:
                log.info("omegle: /stoplookingforcommonlikes failed: %s", exc)

    def _cancel_timer(self) -> None:
        timer, self._likes_timer = self._likes_timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _action(self, path: str, retries: int = 0, **fields: str) -> bool:
        """POST a form action with our id; True on `win`. Raises RequestFailed/RequestRefused when it never got through."""
        cfg = self.backend.config
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(self.backend.retry.delay(attempt))
            try:
                status, body = await self.backend.request("POST", self.server, path, data={"id": self.client_id, **fields})
            except RequestFailed:
                if attempt == retries:
                    raise
                continue
            if status >= 500:
                if attempt == retries:
                    raise RequestFailed(f"HTTP {status}")
                continue
            if status >= 400:
                raise RequestRefused(status)
            return action_ok(body)
        return False

    async def send(self, event: Event) -> None:
        """Relay a user's Message, Typing or StoppedTyping; Report cannot travel (Omegle cannot block)."""
        if self.closed or self.dead or self.client_id is None or type(event) is Report:
            return
        if type(event) is Message:
            try:
                ok = await self._action("/send", retries=self.backend.config.retries, msg=event.text)
            except (RequestFailed, RequestRefused) as exc:
                raise ConnectionError(f"the stranger service did not take the message: {exc}") from None
            if not ok:  # the chat is ending (the next poll says why)
                log.debug("omegle: /send answered fail")
        elif type(event) in (Typing, StoppedTyping):
            path = "/typing" if type(event) is Typing else "/stoppedtyping"
            try:
                await self._action(path)
            except (RequestFailed, RequestRefused) as exc:  # typing is a hint: never end a chat over it
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
        except (RequestFailed, RequestRefused) as exc:
            log.info("omegle: /disconnect on %s failed: %s", self.server, exc)


def _handle(server: str, client_id: str) -> str:
    return json.dumps({"server": server, "id": client_id}, separators=(",", ":"))
