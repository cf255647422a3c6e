"""The remandzana backend: one streaming GET per chat, each message a POST /send (thin asyncio I/O)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp
from pydantic import Field, field_validator
from yarl import URL

from bridge.abc import Backend, Chat, PluginConfig
from bridge.chatstream import ChatEvents
from bridge.events import (
    Connected,
    Disconnected,
    Event,
    Message,
    Mode,
    Reason,
    ServerNotice,
    Start,
    Waiting,
)
from bridge.hygiene import clean

from .protocol import (
    MAX_MESSAGE,
    ChatLine,
    Garbage,
    Kind,
    ProtocolError,
    SendForm,
    StreamParser,
    SystemLine,
    classify,
    encode_send,
    is_own,
    own_name,
    parse_form,
)

__all__ = ["RemandzanaBackend", "RemandzanaChat", "RemandzanaConfig", "lobby_path"]

log = logging.getLogger(__name__)

Lobby = Literal["two", "three", "question", "any", "global"]
READ_SIZE = 16 * 1024  # per read: bounds how many lines one read can queue at once
QUEUE_LIMIT = 256  # events read ahead of the session; past this the stream waits (TCP back-pressure)
FORM_REFRESH = 12 * 3600.0  # seconds before the form is renewed from a /send answer (valid 24 h)
MAX_ANSWER = 64 * 1024  # a /send answer is a 2 KiB form page; read no more than this
GROUP_LABELS = ("Stranger 1", "Stranger 2")  # who is Alice/Bob/Charlie is only known after our first line
ASKER_LABELS = ("Alice", "Bob")  # what the asker's page calls the two discussers


class RemandzanaConfig(PluginConfig):
    """[backends.NAME] with plugin = "remandzana"."""

    url: str  # base URL of the server, e.g. "https://remandzana.example" (a path prefix is kept)
    lobby: Lobby = "two"  # used when the user's Start names no mode (random chat)
    connect_timeout: float = Field(10.0, gt=0)  # seconds to open the stream and get the page
    send_timeout: float = Field(10.0, gt=0)  # seconds one POST /send may take
    heartbeat_timeout: float = Field(20.0, gt=0)  # no byte for this long = connection lost (server fills every 0.5-6 s)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")


def lobby_path(lobby: Lobby, start: Start) -> str:
    """The page to stream for a Start: its mode wins, else the configured lobby.

    ASK → /question/ask, ANSWER (or answer_questions) → /question/discuss, GROUP → /three.
    The "question" lobby never uses /question itself (a random redirect that may make us the
    asker without a question): it asks when the Start carries a question and discusses otherwise.
    """
    if start.mode is Mode.ASK:
        return "/question/ask"
    if start.mode is Mode.ANSWER or (start.mode is Mode.RANDOM and start.answer_questions):
        return "/question/discuss"
    if start.mode is Mode.GROUP:
        return "/three"
    if lobby == "question":
        return "/question/ask" if start.question else "/question/discuss"
    return "/" + lobby


class RemandzanaChat(Chat):
    """One person on a remandzana server: the stream is read by a task that queues events."""

    handle = None  # leaving is closing the stream, so a chat cannot outlive the process

    def __init__(self, backend: RemandzanaBackend, start: Start, path: str) -> None:
        self.config: RemandzanaConfig = backend.config
        self.http = backend.http
        self.start = start
        self.url = URL(self.config.url + path)
        self.asker = path == "/question/ask"
        self.queue = ChatEvents(low_water=QUEUE_LIMIT // 2)
        self.form: SendForm | None = None
        self.action: URL | None = None
        self.form_at = 0.0  # monotonic time the form was taken
        self.room: Kind | None = None  # the PAIRED_* kind once in a room
        self.me: str | None = None  # our name in a three-person room, once our echo showed it
        self.left: set[str] = set()
        self.pending: collections.deque[str] = collections.deque(maxlen=64)  # texts whose echo is due
        self.asked = False
        self.closed = False
        self.garbage = 0
        self.response: aiohttp.ClientResponse | None = None
        self._backend = backend
        self.queue.emit(Waiting())
        self.task = asyncio.get_running_loop().create_task(self._read())

    # ---- the Chat interface ------------------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Waiting, Connected, lines as they come, then one final Disconnected."""
        return aiter(self.queue)

    async def send(self, event: Event) -> None:
        """Post a Message; remandzana has no typing indicator and no report, so those are ignored."""
        if type(event) is not Message or self.queue.final or self.closed:
            return
        if self.form is None or self.action is None or self.room is Kind.PAIRED_ASKER:
            self._emit(ServerNotice("Your message was not delivered: the chat is not open for writing."))
            return
        text = event.text
        if not 1 <= len(text) <= MAX_MESSAGE:
            self._emit(ServerNotice(f"Your message was not delivered: remandzana takes 1 to {MAX_MESSAGE} characters."))
            return
        self.pending.append(text)  # before posting: the echo can reach the stream before the answer
        status = await self._post(text)
        if status == 200:
            return
        with contextlib.suppress(ValueError):
            self.pending.remove(text)
        if status == 403:
            self._end("The remandzana server refused your message (HTTP 403).", Reason.REFUSED)
        elif status == 413:
            self._emit(ServerNotice("Your message was not delivered: the server refused its length (HTTP 413)."))
        elif status is None:
            self._emit(ServerNotice("Your message may not have been delivered: the remandzana server did not answer."))
        else:
            self._emit(ServerNotice(f"Your message was not delivered: the remandzana server answered HTTP {status}."))

    async def aclose(self) -> None:
        """Leave: close the stream (the server tells the others within about 0.5 s). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        self._close_stream()
        self.queue.finish()
        self._backend.chats.discard(self)

    # ---- the stream --------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            await self._stream()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must end this chat, never the daemon
            log.exception("remandzana: stream reader failed")
            self._end(None)
        finally:
            self._close_stream()

    async def _stream(self) -> None:
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                self.response = await self.http.get(self.url, allow_redirects=False, headers={"Accept": "text/html"})
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("remandzana: cannot open %s: %r", self.url.path, exc)
            self._end("The remandzana server cannot be reached.")
            return
        status = self.response.status
        if status != 200:
            log.info("remandzana: %s answered HTTP %s", self.url.path, status)
            self._end(f"The remandzana server answered HTTP {status}.", Reason.REFUSED if 400 <= status < 500 else Reason.ERROR)
            return
        parser = StreamParser()
        content = self.response.content
        while not self.queue.final:
            if self.queue.qsize() >= QUEUE_LIMIT:  # a flood: stop reading until the session catches up
                await self.queue.drained()
                continue
            try:
                # The server writes filler every 0.5-6 s, so silence means a dead connection.
                async with asyncio.timeout(cfg.heartbeat_timeout):
                    data = await content.read(READ_SIZE)
            except TimeoutError:
                self._end(f"The remandzana server sent nothing for {cfg.heartbeat_timeout:g} s.")
                return
            except (aiohttp.ClientError, OSError) as exc:
                log.info("remandzana: stream failed: %r", exc)
                self._end(None)
                return
            if not data:  # the server ended the page without saying anyone left
                self._end(None if parser.started else "The server did not send a remandzana chat page (it ended early).")
                return
            try:
                items = parser.feed(data)
            except ProtocolError as exc:
                self._end(f"The server did not send a remandzana chat page ({exc}).")
                return
            for item in items:
                await self._on_item(item)

    async def _on_item(self, item: object) -> None:
        match item:
            case SendForm():
                self._take_form(item)
            case SystemLine():
                await self._on_system(item)
            case ChatLine(sender=sender, text=text):
                self._on_chat(sender, text)
            case Garbage(size=size):
                self.garbage += size
                log.debug("remandzana: skipped %s characters of unknown markup", size)

    def _take_form(self, form: SendForm) -> None:
        action = self.url.join(URL(form.action))
        if action.origin() != self.url.origin():  # never post the user's words to another host
            log.warning("remandzana: the send form posts to another origin; ignored")
            return
        self.form, self.action, self.form_at = form, action, time.monotonic()

    async def _on_system(self, line: SystemLine) -> None:
        found = classify(line)
        match found.kind:
            case Kind.SEARCHING | Kind.ASK_ACCEPTED:
                pass  # Waiting was already shown; the asker knows the question
            case Kind.ASK_WAITING:
                await self._ask()
            case Kind.ASK_REJECTED:
                self._end(line.text, Reason.REFUSED)
            case Kind.PAIRED_TWO:
                self._paired(found.kind, Connected())
            case Kind.PAIRED_THREE:
                self._paired(found.kind, Connected(strangers=GROUP_LABELS))
            case Kind.PAIRED_ASKER:
                self._paired(found.kind, Connected(question=self.start.question, strangers=ASKER_LABELS))
            case Kind.PAIRED_DISCUSS:
                self._paired(found.kind, Connected(question=found.value))
            case Kind.PAIRED_GLOBAL:
                self._paired(found.kind, Connected())
                self._emit(ServerNotice(line.text))
            case Kind.LEFT:
                self._on_left(found.value or "Stranger", line.text)
            case _:
                self._emit(ServerNotice(line.text))

    def _paired(self, kind: Kind, event: Connected) -> None:
        if self.room is None:
            self.room = kind
            self._emit(event)

    def _on_left(self, who: str, text: str) -> None:
        if self.room is Kind.PAIRED_THREE:
            if who == self.me:
                return
            self.left.add(who)
            # The room lives while two remain; after the second leave the server ends our page.
            self._emit(Disconnected(stranger=who, reason=Reason.STRANGER, final=len(self.left) >= 2))
        elif self.room is Kind.PAIRED_DISCUSS and who == "OP":
            self._emit(ServerNotice("The person who asked the question left; the discussion goes on."))
        elif self.room is Kind.PAIRED_ASKER:
            # One discusser alone has nobody to discuss with: the watch is over.
            self._end(None, Reason.STRANGER, stranger=who)
        elif self.room is Kind.PAIRED_GLOBAL:
            self._emit(ServerNotice(text))
        else:
            self._end(None, Reason.STRANGER)

    def _on_chat(self, sender: str, text: str) -> None:
        if is_own(sender):
            self.me = self.me or own_name(sender)
            with contextlib.suppress(ValueError):
                self.pending.remove(text)
            return
        if self.room is Kind.PAIRED_GLOBAL and text in self.pending:
            # Everyone is "Anonymous" in the global room: our echo is known only by its text.
            self.pending.remove(text)
            return
        labelled = self.room in (Kind.PAIRED_THREE, Kind.PAIRED_ASKER)
        self._emit(Message(text, clean(sender, 32) if labelled else None))

    async def _ask(self) -> None:
        if not self.asker or self.asked:
            return
        self.asked = True
        question = (self.start.question or "").strip()
        if not question or self.form is None or not self.form.setup:
            self._end("The server wants a question, but there is none to ask.", Reason.REFUSED)
            return
        status = await self._post(question[:MAX_MESSAGE])
        if status != 200:  # a rejected question is told on the stream; this is a refused request
            self._end(f"The remandzana server did not take the question (HTTP {status or 'timeout'}).", Reason.REFUSED)

    async def _post(self, message: str) -> int | None:
        """POST /send; the status, or None when the server did not answer in time."""
        assert self.form is not None and self.action is not None
        body = encode_send(self.form, message)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            async with asyncio.timeout(self.config.send_timeout):
                async with self.http.post(self.action, data=body, headers=headers, allow_redirects=False) as resp:
                    page = await _read_some(resp, MAX_ANSWER)
                    status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("remandzana: send failed: %r", exc)
            return None
        if status == 200 and not self.form.setup and time.monotonic() - self.form_at > FORM_REFRESH:
            # Hidden fields are valid for 24 h; each answer carries a fresh form to take in time.
            fresh = parse_form(page.decode("utf-8", "replace"))
            if fresh is not None and not fresh.setup:
                self._take_form(fresh)
        return status

    # ---- output ------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if not self.closed:  # aclose() finishes the queue only once the reader stopped
            self.queue.emit(event)

    def _end(self, notice: str | None, reason: str = Reason.ERROR, stranger: str | None = None) -> None:
        if not self.closed:
            self.queue.end(notice, reason, stranger)
        self._close_stream()

    def _close_stream(self) -> None:
        if self.response is not None:
            self.response.close()  # close, not release: draining an endless page would never end


async def _read_some(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        data = await resp.content.read(limit - size)
        if not data:
            break
        chunks.append(data)
        size += len(data)
    return b"".join(chunks)


class RemandzanaBackend(Backend):
    """Client of a remandzana server: two, three, question (ask/discuss), any and global lobbies."""

    Config = RemandzanaConfig
    max_message_length = MAX_MESSAGE

    def __init__(self, name, config, state=None) -> None:
        super().__init__(name, config, state)
        self.http: aiohttp.ClientSession | None = None
        self.chats: set[RemandzanaChat] = set()

    async def start(self) -> None:
        """Open the shared HTTP client: no cookies (an "exiled" cookie must not spread), no pool cap."""
        if self.http is None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self.http = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout),
            )

    async def stop(self) -> None:
        """Leave every chat still open, then close the HTTP client."""
        for chat in list(self.chats):
            await chat.aclose()
        if self.http is not None:
            await self.http.close()
            self.http = None

    async def connect(self, start: Start) -> Chat:
        """Open the stream of the lobby the Start asks for; events begin with Waiting."""
        await self.start()
        chat = RemandzanaChat(self, start, lobby_path(self.config.lobby, start))
        self.chats.add(chat)
        return chat
