"""Closing finished pychat room connections in the background: after a wait, ours in one room one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .protocol import CHUNK

__all__ = ["Closings"]

log = logging.getLogger(__name__)


class Closings:
    """The room connections of finished chats still open, and, per room, the last of ours to close.

    The server gives each member a thread that, on EOF, closes that member's socket and only
    then, after a slow commit, takes it out of the room. A member that writes into the room in
    that window kills its own thread, and two members closing in it both count the other as
    staying: either way the room is left dead and breaks the next pairing. So the chat never
    writes into a room the other member left, and its connection closes only after a wait (the
    chat picks it): after our quit line, the other may leave at once; when they left first, they
    may be lingering after theirs. The connection is read meanwhile and until the server's EOF,
    because closing with unread data sends a reset, which kills our member's thread the same way.

    Our own members of one room (two users of this bridge who met) close one at a time, each a
    grace after the server closed the one before: timers alone can fire together (after an
    event-loop stall, or with jitter that happens to meet).
    """

    def __init__(self, grace: float, timeout: float) -> None:
        self.grace = grace  # after the server closed one of ours, before the next of ours in that room closes
        self.timeout = timeout  # for the server's EOF after our half-close
        self.tasks: set[asyncio.Task] = set()
        self.last: dict[int | None, asyncio.Task] = {}  # room port → the last of our members there to close

    def later(
        self, port: int | None, reader_task: asyncio.Task | None, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, wait: float
    ) -> None:
        """Close a connection to room `port` `wait` seconds from now (once `reader_task`, its reader, is done)."""
        previous = self.last.get(port)
        task = asyncio.get_running_loop().create_task(self._close(previous, reader_task, reader, writer, wait))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.last[port] = task
        task.add_done_callback(lambda done: self._closed(port, done))

    def leaving(self, port: int) -> asyncio.Task | None:
        """The close of a member of ours still in room `port`, if any: done once it is out."""
        return self.last.get(port)

    async def stop(self) -> None:
        """Close every connection still waiting, now."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _closed(self, port: int | None, task: asyncio.Task) -> None:
        if self.last.get(port) is task:
            del self.last[port]

    async def _close(
        self, previous: asyncio.Task | None, reader_task: asyncio.Task | None, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, wait: float
    ) -> None:
        """Read (and drop) for `wait` seconds and until `previous` is done, then half-close, read to EOF, close."""
        try:
            if reader_task is not None:
                await asyncio.wait([reader_task])  # one reader at a time
            await _discard(reader, wait)
            if previous is not None and not previous.done():
                reading = asyncio.ensure_future(_discard(reader, None))  # still read: closing later sends no reset
                try:
                    await asyncio.wait([previous, reading], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    reading.cancel()
                await asyncio.wait([reading])  # one reader at a time
            if not reader.at_eof():
                writer.write_eof()
                await _discard(reader, self.timeout)
        except OSError as exc:
            log.debug("pychat: closing a finished chat's connection: %r", exc)
        finally:
            writer.close()
        # The server closed us and now cleans up: the next of ours in this room closes after that.
        await asyncio.sleep(self.grace)


async def _discard(reader: asyncio.StreamReader, seconds: float | None) -> None:
    """Read and drop whatever comes for `seconds` (None: no limit), or until EOF or an error."""
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(seconds):
            while await reader.read(4 * CHUNK):
                pass
