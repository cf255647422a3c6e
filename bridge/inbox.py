"""A small bounded FIFO for one consumer task: asyncio.Queue's job at a fraction of its memory."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Bounded for `put_nowait` (raises asyncio.QueueFull); `put` waits for room instead.

    One task consumes with `get`. Thousands exist at once (one per room), so it keeps no
    per-instance futures until somebody actually waits.
    """

    __slots__ = ("_items", "_maxsize", "_getter", "_putters")

    def __init__(self, maxsize: int = 0) -> None:
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._getter: asyncio.Future | None = None
        self._putters: deque[asyncio.Future] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def peek(self) -> T | None:
        """The next item `get` would return, or None when empty."""
        return self._items[0] if self._items else None

    def full(self) -> bool:
        return 0 < self._maxsize <= len(self._items)

    def put_nowait(self, item: T) -> None:
        if self.full():
            raise asyncio.QueueFull
        self._items.append(item)
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    async def put(self, item: T) -> None:
        while self.full():
            if self._putters is None:
                self._putters = deque()
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._putters:
                    self._putters.remove(waiter)
        self.put_nowait(item)

    async def get(self) -> T:
        while not self._items:
            getter = self._getter = asyncio.get_running_loop().create_future()
            try:
                await getter
            finally:
                if self._getter is getter:
                    self._getter = None
        item = self._items.popleft()
        putters = self._putters
        if putters:
            waiter = putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        return item
