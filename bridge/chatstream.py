"""Plumbing shared by backend chats: an event queue that ends at the final Disconnected, and closing a stream writer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .events import Disconnected, Event, Reason, ServerNotice

__all__ = ["ChatEvents", "close_writer"]

_END = None  # queued by finish(): the iteration stops there


class ChatEvents:
    """The stranger-side events of one chat, queued by its reader task and iterated by its session.

    Nothing is queued after a final Disconnected (the chat is over) nor after finish() (it was
    closed). Iterating yields the events in order and stops after the final Disconnected or at
    finish(), whichever comes first. A chat composes one and returns `aiter(queue)` from events().
    """

    def __init__(self, low_water: int = 0) -> None:
        """`low_water`: drained() returns once the reader has brought the queue down to this many."""
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._low_water = low_water
        self._drained = asyncio.Event()
        self._final = False
        self._finished = False

    @property
    def final(self) -> bool:
        """A final Disconnected was queued: the chat is over."""
        return self._final

    def qsize(self) -> int:
        """Events queued and not yet taken by the reader."""
        return self._queue.qsize()

    def emit(self, event: Event) -> None:
        """Queue `event`, unless the chat is already over or closed."""
        if self._final or self._finished:
            return
        self._queue.put_nowait(event)
        if type(event) is Disconnected and event.final:
            self._final = True

    def end(self, notice: str | None = None, reason: str = Reason.ERROR, stranger: str | None = None) -> None:
        """End the chat: a ServerNotice(notice) when there is one, then the final Disconnected."""
        if notice is not None:
            self.emit(ServerNotice(notice))
        self.emit(Disconnected(stranger=stranger, reason=reason))

    def finish(self) -> None:
        """Closed: the iteration stops after what is already queued, and nothing more is queued."""
        if not self._finished:
            self._finished = True
            self._queue.put_nowait(_END)

    async def drained(self) -> None:
        """Wait until the reader has taken events down to `low_water` (back-pressure for a flood)."""
        self._drained.clear()
        await self._drained.wait()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self._queue.get()
            if self._queue.qsize() <= self._low_water:
                self._drained.set()
            if event is _END:
                return
            yield event
            if type(event) is Disconnected and event.final:
                return


async def close_writer(writer: asyncio.StreamWriter, last: bytes | None, timeout: float = 1.0) -> None:
    """Write `last` (a goodbye line) if any, then close; each wait bounded by `timeout`, every error ignored.

    A dead or stalled peer must never hold up (or fail) a chat's aclose().
    """
    with contextlib.suppress(Exception):
        if last is not None:
            writer.write(last)
        async with asyncio.timeout(timeout):
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
