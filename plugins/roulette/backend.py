"""The chat-roulette backend: one TCP connection per chat, pongs first, at most 8 lines/s (thin asyncio I/O)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator

from pydantic import Field, field_validator

from bridge.abc import Backend, Chat, PluginConfig
from bridge.chatstream import ChatEvents, close_writer
from bridge.events import (
    Connected,
    Event,
    Message,
    ServerNotice,
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)

from .protocol import (
    MAX_LINE,
    TYPE_MESSAGE,
    Ack,
    Bounced,
    Comm,
    Exit,
    Ids,
    Pair,
    Ping,
    ProtocolError,
    ServerError,
    comm_line,
    connect_line,
    decode_payload,
    encode_payload,
    exit_line,
    make_uco,
    parse_line,
    pong_line,
)

__all__ = ["RouletteBackend", "RouletteChat", "RouletteConfig"]

log = logging.getLogger(__name__)

LINE_BUDGET = MAX_LINE - 768  # room under the server's limit for a merged line
MERGE_NOTICE_EVERY = 10.0  # seconds between two "sent together" notices

NEW_STRANGER = "You have a new stranger (the server re-pairs everyone every 30 s)."
NOT_DELIVERED = "Your message was not delivered: nobody is paired with you right now (the server re-pairs every 30 s)."


class RouletteConfig(PluginConfig):
    """[backends.NAME] with plugin = "roulette"."""

    host: str  # the chat-roulette-python server
    port: int = Field(44333, ge=1, le=65535)
    uco_prefix: str = "sb"  # start of our random per-chat uco (alphanumerics; the partner sees the uco)
    connect_timeout: float = Field(10.0, gt=0)  # seconds to connect and get the ack
    heartbeat_timeout: float = Field(10.0, gt=0)  # no line (the server pings every second) this long = lost
    max_lines_per_second: float = Field(8.0, gt=0, le=10)  # the server reads 10 lines/s, pongs included
    burst: int = Field(4, ge=1, le=10)  # lines that may leave back to back before the rate applies

    @field_validator("uco_prefix")
    @classmethod
    def _alnum(cls, value: str) -> str:
        if not (value.isascii() and value.isalnum()) or len(value) > 16:
            raise ValueError("must be 1 to 16 ASCII letters or digits")
        return value


class _Bucket:
    """Token bucket for outgoing lines; pongs spend without waiting, so it may go negative."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self) -> float:
        """Seconds until one line may leave."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def spend(self, n: int = 1) -> None:
        self._refill()
        self.tokens -= n


class RouletteChat(Chat):
    """One connection to the server: a reader task that queues events and a rate-limited writer task."""

    handle = None  # the server forgets a uco whose connection closed: nothing to resume

    def __init__(self, config: RouletteConfig) -> None:
        self.config = config
        self.ids = Ids(
            uco=make_uco(config.uco_prefix, secrets.token_hex(12)),
            session=secrets.token_hex(6),
            nonce=secrets.token_hex(6),
        )
        self.queue = ChatEvents()
        self.partner: str | None = None
        self.closed = False
        self.writer: asyncio.StreamWriter | None = None
        # Outgoing: pongs jump the queue; ("text", str) and ("typing", bool) items wait for the rate.
        self.pongs = 0
        self.out: collections.deque[tuple[str, str | bool]] = collections.deque()
        self.sent_typing = False
        self.merge_told = float("-inf")
        self.wake = asyncio.Event()
        self.bucket = _Bucket(config.max_lines_per_second, config.burst)
        self.write_task: asyncio.Task | None = None
        self.queue.emit(Waiting())
        self.task = asyncio.get_running_loop().create_task(self._run())

    # ---- the Chat interface ------------------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Waiting, Connected at the first pair, messages and notices, then one final Disconnected."""
        return aiter(self.queue)

    async def send(self, event: Event) -> None:
        """Queue a Message, Typing or StoppedTyping; the writer sends it within the line rate."""
        if self.queue.final or self.closed:
            return
        kind = type(event)
        if kind is Message:
            self.out.append(("text", event.text))  # type: ignore[union-attr]
        elif kind is Typing or kind is StoppedTyping:
            self.out.append(("typing", kind is Typing))
        else:
            return  # Report: the server cannot block anyone
        self.wake.set()

    async def aclose(self) -> None:
        """Say exit and close the connection. Idempotent."""
        if self.closed:
            return
        self.closed = True
        writer = self.writer
        for task in (self.task, self.write_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if writer is not None:
            await close_writer(writer, exit_line(self.ids))
        self.queue.finish()

    # ---- reading -----------------------------------------------------------------------------

    async def _run(self) -> None:
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                reader, writer = await asyncio.open_connection(cfg.host, cfg.port, limit=2 * MAX_LINE)
                self.writer = writer
                writer.write(connect_line(self.ids))
                await writer.drain()
                while not isinstance(parse_line(await self._readline(reader)), Ack):
                    pass  # a ping may come before the ack; the pong waits until we are registered
        except (OSError, TimeoutError, ProtocolError, EOFError) as exc:
            log.info("roulette: could not register at %s:%s: %r", cfg.host, cfg.port, exc)
            self.queue.end("The chat-roulette server could not be reached.")
            return
        self.write_task = asyncio.get_running_loop().create_task(self._write_loop(writer))
        try:
            while not self.queue.final:
                try:
                    async with asyncio.timeout(cfg.heartbeat_timeout):
                        raw = await self._readline(reader)
                except TimeoutError:
                    self.queue.end("The chat-roulette server stopped answering.")
                    break
                self._on_line(parse_line(raw))
        except ProtocolError:
            log.info("roulette: unreadable line from the server")
            self.queue.end("The chat-roulette server sent something unreadable.")
        except (OSError, EOFError, ValueError) as exc:  # ValueError: a line over the reader's limit
            log.info("roulette: connection lost: %r", exc)
            self.queue.end(None)
        finally:
            if self.write_task is not None:
                self.write_task.cancel()

    @staticmethod
    async def _readline(reader: asyncio.StreamReader) -> bytes:
        line = await reader.readline()
        if not line:
            raise EOFError("closed by the server")
        return line

    def _on_line(self, line: object) -> None:
        match line:
            case Ping():
                self.pongs += 1
                self.wake.set()
            case Pair(uco=uco):
                if self.partner is None:
                    self.queue.emit(Connected())
                elif uco != self.partner:
                    self.queue.emit(StoppedTyping())  # whatever the last one was doing is over
                    self.queue.emit(ServerNotice(NEW_STRANGER))
                self.partner = uco
            case Comm(data=data):
                event = decode_payload(data)
                if event is not None:
                    self.queue.emit(event)
            case Bounced(kind=kind):
                if kind == TYPE_MESSAGE:
                    self.queue.emit(ServerNotice(NOT_DELIVERED))
            case ServerError(text=text):
                log.info("roulette: server error %r", text[:200])
            case Exit():
                self.queue.end("The chat-roulette server closed the connection.")
            case _:
                pass  # ack repeats, unknown objects: nothing to show

    # ---- writing -----------------------------------------------------------------------------

    async def _write_loop(self, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                if self.pongs:
                    n, self.pongs = self.pongs, 0
                    self.bucket.spend(n)
                    writer.write(pong_line(self.ids) * n)
                    await writer.drain()
                    continue
                if not self.out:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                delay = self.bucket.wait_time()
                if delay > 0:
                    self.wake.clear()  # a ping arriving meanwhile wakes us: its pong must not wait
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self.wake.wait()
                    continue
                line, merged = self._next_line()
                if line is None:
                    continue
                self.bucket.spend(1)
                writer.write(line)
                await writer.drain()
                if merged > 1 and time.monotonic() - self.merge_told > MERGE_NOTICE_EVERY:
                    self.merge_told = time.monotonic()  # one notice per burst, not one per merged line
                    self.queue.emit(
                        ServerNotice(
                            f"You wrote faster than the chat-roulette server accepts, so {merged} messages "
                            "were sent to the stranger together as one (and so on while you keep this pace)."
                        )
                    )
        except (OSError, RuntimeError) as exc:
            log.info("roulette: write failed: %r", exc)

    def _next_line(self) -> tuple[bytes | None, int]:
        """The next line to send: every queued text that fits, merged; typing only if still current."""
        out = self.out
        texts: list[str] = []
        typing_after: bool | None = None
        while out:
            kind, value = out[0]
            if kind == "typing":
                typing_after = bool(value)  # superseded by any later text or typing state
                out.popleft()
                continue
            candidate = [*texts, str(value)]
            if texts and len(comm_line(self.ids, encode_payload(Message("\n".join(candidate))))) > LINE_BUDGET:
                break
            texts = candidate
            typing_after = None
            out.popleft()
        if texts:
            if typing_after is not None:
                out.appendleft(("typing", typing_after))
            self.sent_typing = False  # a message means the typing is over
            return comm_line(self.ids, encode_payload(Message("\n".join(texts)))), len(texts)
        if typing_after is None or typing_after == self.sent_typing:
            return None, 0
        self.sent_typing = typing_after
        payload = encode_payload(Typing() if typing_after else StoppedTyping())
        return comm_line(self.ids, payload), 1


class RouletteBackend(Backend):
    """Strangers from a chat-roulette-python server; each pair is a conversation, re-pairings are announced."""

    Config = RouletteConfig
    # A 2,000-character text stays under the server's 32,768-byte line even when every
    # character needs a doubly escaped surrogate pair.
    max_message_length = 2000

    async def connect(self, start: Start) -> Chat:
        """Open a connection for this chat; interests, language and modes do not exist on this server."""
        return RouletteChat(self.config)
