"""The pychat backend: redirect port, then a room connection per chat; joins serialised (thin asyncio I/O)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator

from pydantic import Field, field_validator

from bridge.abc import Backend, Chat, PluginConfig
from bridge.backoff import Backoff
from bridge.chatstream import ChatEvents
from bridge.events import Connected, Event, Message, Reason, ServerNotice, Start, Waiting
from bridge.hygiene import split

from .closing import Closings
from .protocol import (
    CHUNK,
    Framer,
    Joined,
    Left,
    ProtocolError,
    Said,
    Text,
    classify,
    defuse,
    join_line,
    message_line,
    parse_redirect,
    quit_line,
    to_ascii,
    valid_name,
)

__all__ = ["PychatBackend", "PychatChat", "PychatConfig"]

log = logging.getLogger(__name__)

NOTHING_ASCII = "Your message was not sent: pychat carries only plain ASCII text, and nothing of it was left."
SOME_DROPPED = "pychat carries only plain ASCII text: accents were removed and other characters left out."
ANOTHER_JOINED = "Another person joined this pychat room (its rooms sometimes hold more than two)."
ONE_LEFT = "One person left this pychat room; the others are still here."
LOST = "The connection to the pychat server was lost."
ROOM_RETRY = Backoff(0.05, cap=0.4, attempts=None)  # a refused room connection, until room_retry runs out


class PychatConfig(PluginConfig):
    """[backends.NAME] with plugin = "pychat"."""

    host: str  # the pychat server
    port: int = Field(1025, ge=1, le=65535)  # its redirect port
    name: str = "Stranger"  # our display name in every room: printable ASCII, no colon, at most 32
    connect_timeout: float = Field(10.0, gt=0)  # seconds for the redirect answer and the room connection
    redirect_settle: float = Field(0.2, gt=0)  # the port has no terminator: wait this long for more digits
    room_retry: float = Field(2.0, ge=0)  # the room starts listening just after its port is told
    join_gap: float = Field(0.3, ge=0)  # hold the join lock this long after joining, so the server counts us
    framing_wait: float = Field(0.05, gt=0)  # wait for the rest of a chunk cut at 1,024 bytes
    leave_grace: float = Field(0.5, ge=0)  # a finished chat's connection closes 1-2 (3-4, if the stranger left) graces later
    alone_check: float = Field(60.0, gt=0)  # alone in a room: ask the redirect this often where newcomers go

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not valid_name(value):
            raise ValueError("must be 1 to 32 printable ASCII characters without a colon")
        return value


class PychatChat(Chat):
    """One member of a pychat room: a task reads and frames the room, send() writes lines."""

    handle = None  # a pychat room is a TCP connection: nothing survives a restart

    def __init__(self, backend: PychatBackend) -> None:
        self.config: PychatConfig = backend.config
        self.backend = backend
        self.lock = backend.join_lock
        self.name = self.config.name
        self.queue = ChatEvents()
        self.framer = Framer()
        self.members: dict[str, str | None] = {}  # name → label shown ("Stranger 1") once several
        self.connected = False
        self.closed = False
        self.told_dropped = False
        self.emptied = False  # the room is known empty (the last other member left) or the connection is gone
        self.port: int | None = None  # the room's port, once the redirect told it
        self.elsewhere = 0  # alone checks in a row at which the redirect sent newcomers to another room
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.queue.emit(Waiting())
        self.task = asyncio.get_running_loop().create_task(self._run())

    # ---- the Chat interface ------------------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        """Waiting, Connected at another member's join line (or first words), messages, one final Disconnected."""
        return aiter(self.queue)

    async def send(self, event: Event) -> None:
        """Send a Message as `NAME: text` in ASCII; pychat has no typing indicator and no report."""
        if type(event) is not Message or self.queue.final or self.closed or self.writer is None:
            return
        text, dropped = to_ascii(event.text)  # type: ignore[union-attr]
        text = defuse(text, {self.name, *self.members}).strip()
        if not text:
            self.queue.emit(ServerNotice(NOTHING_ASCII))
            return
        if dropped and not self.told_dropped:
            self.told_dropped = True
            self.queue.emit(ServerNotice(SOME_DROPPED))
        room = CHUNK - len(self.name) - 2  # one line per server read: it forwards 1,024 bytes at a time
        try:
            for part in split(text, room, 8):
                self.writer.write(message_line(self.name, part))
            await self.writer.drain()
        except OSError as exc:  # the reader sees the same broken connection: the chat ends once, here or there
            log.info("pychat: write failed: %r", exc)
            self.emptied = True
            self.queue.end(LOST)

    async def aclose(self) -> None:
        """Send the quit line unless the room is known empty; the connection closes later, in the background.

        Returns at once (the user's notice never waits for the server). Idempotent.
        """
        if self.closed:
            return
        self.closed = True
        if self.task is not asyncio.current_task():
            self.task.cancel()
        if self.reader is not None and self.writer is not None:
            self._leave_room(self.task)
        self.queue.finish()

    def _leave_room(self, reader_task: asyncio.Task | None) -> None:
        """Say goodbye unless the room is known empty; the connection closes later, in the background.

        Why later, and never a word into an emptied room: the server's threaded cleanup (closing.Closings).
        """
        assert self.reader is not None and self.writer is not None
        # After our quit line we close 1-2 graces later (at random, so that two members who
        # leave together do not close together); when the other left first, 3-4 graces after
        # their quit line, so at least a grace after them even if they linger as we do.
        grace = self.config.leave_grace
        if self.emptied:
            wait = 3 * grace + grace * random.random()
        else:
            wait = grace + grace * random.random()
            with contextlib.suppress(Exception):
                self.writer.write(quit_line(self.name))
        self.backend.closings.later(self.port, reader_task, self.reader, self.writer, wait)

    # ---- joining -----------------------------------------------------------------------------

    async def _redirect(self) -> int:
        """Ask the redirect port for a room port; read it whole before closing."""
        cfg = self.config
        async with asyncio.timeout(cfg.connect_timeout):
            reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
        try:
            data, eof = b"", False
            while (port := parse_redirect(data, eof)) is None:
                wait = cfg.redirect_settle if data.strip() else cfg.connect_timeout
                try:
                    async with asyncio.timeout(wait):
                        chunk = await reader.read(64)
                except TimeoutError:
                    if not data.strip():
                        raise
                    eof = True  # digits and then silence: the answer is complete
                    continue
                data += chunk
                eof = not chunk
                if len(data) > 64:
                    raise ProtocolError("redirect answer too long")
            return port
        finally:
            writer.close()

    async def _enter(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.room_retry
        retrying = ROOM_RETRY.retrying()
        while True:
            try:
                async with asyncio.timeout(cfg.connect_timeout):
                    return await asyncio.open_connection(cfg.host, port)
            except ConnectionRefusedError:
                left = deadline - loop.time()
                if left <= 0:
                    raise
                await asyncio.sleep(min(left, retrying.failed() or 0.0))

    async def _run(self) -> None:
        if not await self._join():
            return
        while await self._read() and await self._join(alone=True):
            pass

    async def _join(self, alone: bool = False) -> bool:
        """Join a room: True, or False once the chat ended (the server could not be reached).

        `alone`: nobody joined or spoke in our room for alone_check seconds. We stay unless the
        redirect sent newcomers to another room at this check and the one before (once can be
        someone who connected and is still typing their name): then our room is one the server's
        cleanup race left dead (counted as holding someone, so nobody comes), or someone waits
        elsewhere. We move there; our member leaving the room alone deletes it.
        """
        cfg = self.config
        try:
            while True:
                # One join at a time: the server counts a room's members only once they connected,
                # so concurrent joins get rooms of their own (dead) or of three.
                async with self.lock:
                    port = await self._redirect()
                    if alone:
                        self.elsewhere = self.elsewhere + 1 if port != self.port else 0
                        if self.elsewhere < 2:
                            return True
                    leaving = self.backend.closings.leaving(port)
                    if leaving is None:
                        if alone:
                            log.info("pychat: newcomers go to another room than ours (%s): moving there", self.port)
                            self._leave_room(None)
                            self.reader = self.writer = None
                            self.framer = Framer()
                            self.elsewhere, alone = 0, False
                        self.port = port
                        reader, writer = await self._enter(port)
                        self.reader, self.writer = reader, writer
                        writer.write(join_line(self.name))
                        await writer.drain()
                        await asyncio.sleep(cfg.join_gap)
                        return True
                # A member of ours is still leaving that room (our user went on at once): with it
                # the room would look full to the next arrival, who would get a room of their own.
                # Ask again once it is out.
                await asyncio.wait([leaving])
        except (OSError, TimeoutError, ProtocolError) as exc:
            log.info("pychat: could not join at %s:%s: %r", cfg.host, cfg.port, exc)
            if alone:
                return True  # still in our room: wait there
            self.emptied = True
            self.queue.end("The pychat server could not be reached.")
            return False

    async def _read(self) -> bool:
        """Read the room until the chat ends (False), or until nobody joined or spoke for alone_check seconds (True)."""
        cfg = self.config
        reader = self.reader
        assert reader is not None
        loop = asyncio.get_running_loop()
        alone_until = loop.time() + cfg.alone_check
        try:
            while not self.queue.final:
                if self.framer.pending:
                    wait: float | None = cfg.framing_wait
                elif not self.connected:
                    wait = max(0.0, alone_until - loop.time())
                else:
                    wait = None
                try:
                    async with asyncio.timeout(wait):
                        chunk = await reader.read(4 * CHUNK)
                except TimeoutError:
                    if not self.framer.pending:
                        return True  # still alone
                    self._on_segments(self.framer.flush())
                    continue
                if not chunk:
                    self._on_segments(self.framer.flush())
                    self.emptied = True
                    self.queue.end("The pychat server closed the connection.")
                    return False
                self._on_segments(self.framer.feed(chunk.decode("ascii", "replace")))
        except OSError as exc:
            log.info("pychat: connection lost: %r", exc)
            self.emptied = True
            self.queue.end(LOST)
        return False

    # ---- reading -----------------------------------------------------------------------------

    def _connect(self) -> None:
        if not self.connected:
            self.connected = True
            self.queue.emit(Connected())

    def _add_member(self, name: str) -> None:
        if name in self.members:
            return
        self.framer.learn(name)
        self.members[name] = None
        if len(self.members) > 1:  # label everyone from now on, by order of arrival
            for n, member in enumerate(self.members, start=1):
                self.members[member] = f"Stranger {n}"

    def _on_segments(self, segments: list[str]) -> None:
        for segment in segments:
            line = classify(segment, self.framer.names)
            match line:
                case Joined(name=name):
                    was = len(self.members)
                    self._add_member(name)
                    if self.connected and len(self.members) > was:
                        self.queue.emit(ServerNotice(ANOTHER_JOINED))
                    self._connect()
                case Left(name=name):
                    if not self.connected:
                        continue  # someone who was here before us left; the room takes a newcomer
                    self.members.pop(name, None)
                    if not self.members:
                        self.emptied = True  # a quit line now would go into a room being cleaned up
                        self.queue.end(None, Reason.STRANGER)
                        return
                    self.queue.emit(ServerNotice(ONE_LEFT))
                case Said(name=name, text=text):
                    if name not in self.members and self.members:
                        # Only a first speaker we never saw join is learnt from "NAME: " alone;
                        # later, an unknown "x: y" is text (the rest of a cut line, or a colon).
                        self._connect()
                        self.queue.emit(Message(segment))
                        continue
                    if name not in self.members:
                        self._add_member(name)
                        parts = self.framer.split(segment)
                        if len(parts) > 1:  # merged lines of the speaker we just learnt
                            self._on_segments(parts)
                            continue
                    self._connect()
                    if text.strip():
                        self.queue.emit(Message(text, self.members.get(name)))
                case Text(text=text):
                    self._connect()
                    if text.strip():
                        self.queue.emit(Message(text))


class PychatBackend(Backend):
    """Strangers from a pychat server; the display name is the one configured, never the user's."""

    Config = PychatConfig
    max_message_length = 2000  # sent as several lines of at most 1,024 bytes each

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.join_lock = asyncio.Lock()
        self.closings = Closings(self.config.leave_grace, self.config.connect_timeout)

    async def stop(self) -> None:
        """Close the connections of finished chats still in their grace period."""
        await self.closings.stop()

    async def connect(self, start: Start) -> Chat:
        """Join a room; interests, language and modes do not exist on pychat."""
        return PychatChat(self)

