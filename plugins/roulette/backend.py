"""The chat-roulette backend: one TCP connection per chat, pongs first, at most 8 lines/s (thin asyncio I/O)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field, field_validator

from bridge.abc import Backend, Chat, PluginConfig
from bridge.backoff import Backoff
from bridge.bucket import TokenBucket
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
from bridge.delivery import Item, OutboxPolicy, Permanent, merge_marker
from bridge.outbox import Outbox

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
    encode_text,
    exit_line,
    make_uco,
    parse_line,
    pong_line,
)

__all__ = ["RouletteBackend", "RouletteChat", "RouletteConfig"]

log = logging.getLogger(__name__)

MERGE_NOTICE_EVERY = 10.0  # seconds between two notices that the user's messages were merged
MERGE_PACE = " (The chat-roulette server takes about 8 lines a second: more may be merged while you keep this pace.)"
# The line rate makes every text wait its turn, so all texts waiting behind the one being sent
# leave merged as one line (merge_backlog=2). 2,000 characters stay under the server's 32,768-byte
# line even when each needs a doubly escaped surrogate pair. No retries: a write fails only when the
# connection broke, and the reader ends the chat then. Typing is state: sent when it changes.
OUTBOX = OutboxPolicy(
    platform="roulette", retry=Backoff(0.0, attempts=1), merge_backlog=2, merge_limit=2000, typing_every=30.0, typing_off=True
)

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


class RouletteChat(Chat):
    """One connection to the server: a reader task that queues events and answers pings at once, and
    an outbox (bridge.outbox) whose sender is this chat, writing texts and typing within the line rate."""

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
        self.registered = asyncio.Event()  # the server acknowledged us: lines may leave
        # Pongs are written by the reader at once (they spend from the bucket without waiting);
        # texts and typing leave through the outbox, each waiting for the bucket.
        self.bucket = TokenBucket(config.max_lines_per_second, config.burst)
        self.outbox = Outbox("roulette", self, OUTBOX)  # the name in its logs: never the uco
        self.sent_typing = False
        self.merge_told = float("-inf")
        self.heard = 0.0  # loop time of the server's last line
        self.watchdog: asyncio.TimerHandle | None = None  # the heartbeat's timer, once registered
        self.queue.emit(Waiting())
        self.task = asyncio.get_running_loop().create_task(self._run())

    # ---- the Chat interface ------------------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Waiting, Connected at the first pair, messages and notices, then one final Disconnected."""
        return aiter(self.queue)

    async def send(self, event: Event) -> None:
        """Queue a Message, or set our typing state; the outbox sends within the line rate."""
        if self.queue.final or self.closed:
            return
        kind = type(event)
        if kind is Message:
            if self.outbox.typing.typists:
                self.outbox.typing_stop(everyone=True)
            self.sent_typing = False  # the message says the typing is over: no line for that
            self.outbox.put_text(None, event.text)  # type: ignore[union-attr]
        elif kind is Typing:
            self.outbox.typing_start()
        elif kind is StoppedTyping:
            self.outbox.typing_stop()
        # Report: the server cannot block anyone

    async def aclose(self) -> None:
        """Say exit and close the connection. Idempotent."""
        if self.closed:
            return
        self.closed = True
        writer = self.writer
        self.outbox.close()
        if self.task is not asyncio.current_task():
            self.task.cancel()
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
        self.registered.set()
        # The heartbeat is one timer that looks at when the last line came (`_watch`), not a
        # deadline made and cancelled around every line read: a ping a second and every message.
        loop = asyncio.get_running_loop()
        self.heard = loop.time()
        self.watchdog = loop.call_later(cfg.heartbeat_timeout, self._watch)
        try:
            while not self.queue.final:
                raw = await reader.readline()
                if not raw:
                    raise EOFError("closed by the server")
                self.heard = loop.time()
                self._on_line(parse_line(raw))
        except ProtocolError:
            log.info("roulette: unreadable line from the server")
            self.queue.end("The chat-roulette server sent something unreadable.")
        except (OSError, EOFError, ValueError) as exc:  # ValueError: a line over the reader's limit
            log.info("roulette: connection lost: %r", exc)
            self.queue.end(None)
        finally:
            self.watchdog.cancel()
            self.outbox.close()

    def _watch(self) -> None:
        """No line for heartbeat_timeout seconds (the server pings every second): the chat has ended."""
        loop = asyncio.get_running_loop()
        left = self.heard + self.config.heartbeat_timeout - loop.time()
        if left > 0:
            self.watchdog = loop.call_later(left, self._watch)
            return
        self.queue.end("The chat-roulette server stopped answering.")
        self.task.cancel()  # the read that waits for nothing; its finally closes the outbox

    @staticmethod
    async def _readline(reader: asyncio.StreamReader) -> bytes:
        line = await reader.readline()
        if not line:
            raise EOFError("closed by the server")
        return line

    def _on_line(self, line: object) -> None:
        match line:
            case Ping():
                if self.writer is not None:
                    self.bucket.spend(1)  # first, whatever waits: a late pong gets us declared dead
                    self.writer.write(pong_line(self.ids))
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

    # ---- writing: the outbox's Sender ----------------------------------------------------------

    async def _paced(self) -> asyncio.StreamWriter:
        """Wait for registration and for a token of the line rate, spend it; the writer to use."""
        if not self.registered.is_set():  # set once, long before most lines: no wait made for them
            await self.registered.wait()
        bucket = self.bucket
        while not bucket.allow():  # a token taken at once when there is one (most lines)
            await asyncio.sleep(bucket.wait_time())
        if self.writer is None or self.writer.is_closing():
            raise Permanent("the connection is closed")
        return self.writer

    async def send_text(self, room: Any, item: Item) -> None:
        """One (maybe merged) message as one comm line; tell the user once per burst that texts were merged."""
        writer = await self._paced()
        try:
            writer.write(comm_line(self.ids, encode_text(item.text)))
            await writer.drain()
        except OSError as exc:  # the reader ends the chat on the same broken connection
            raise Permanent(f"write failed: {exc!r}") from exc
        self.sent_typing = False
        if item.count > 1 and time.monotonic() - self.merge_told > MERGE_NOTICE_EVERY:
            self.merge_told = time.monotonic()  # one notice per burst, not one per merged line
            self.queue.emit(ServerNotice(merge_marker(item.count, "you") + MERGE_PACE))

    async def send_payload(self, room: Any, item: Item) -> None:
        """Nothing but texts is queued."""

    async def send_typing(self, room: Any, on: bool) -> None:
        """Our typing state, when it changed (and is still wanted once a token is there)."""
        if on == self.sent_typing or (on and not self.outbox.typing.typists):
            return
        writer = await self._paced()
        if on == self.sent_typing or (on and not self.outbox.typing.typists):
            return  # a message or a stop came while we waited
        self.sent_typing = on
        try:
            writer.write(comm_line(self.ids, encode_payload(Typing() if on else StoppedTyping())))
            await writer.drain()
        except OSError as exc:
            log.info("roulette: write failed: %r", exc)


class RouletteBackend(Backend):
    """Strangers from a chat-roulette-python server; each pair is a conversation, re-pairings are announced."""

    Config = RouletteConfig
    # A 2,000-character text stays under the server's 32,768-byte line even when every
    # character needs a doubly escaped surrogate pair.
    max_message_length = 2000

    async def connect(self, start: Start) -> Chat:
        """Open a connection for this chat; interests, language and modes do not exist on this server."""
        return RouletteChat(self.config)
