"""A small bounded FIFO for one consumer task: asyncio.Queue's job at a fraction of its memory."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Inbox"]

T = TypeVar("T")


class _State:
    """Wraps a state item (`put_state`): it is never refused and never counts toward the bound."""

    __slots__ = ("item",)

    def __init__(self, item: object) -> None:
        self.item = item


class Inbox(Generic[T]):
    """Bounded for `put_nowait` (raises asyncio.QueueFull); `put` waits for room instead.

    State items (`put_state`, e.g. typing indicators) replace a queued state item of the same
    kind at the tail, so the newest state wins and they never take an item's place.

    One task consumes with `get`. Thousands exist at once (one per room), so it keeps no
    per-instance futures until somebody actually waits.
    """

    __slots__ = ("_items", "_maxsize", "_states", "_getter", "_putters")

    def __init__(self, maxsize: int = 0) -> None:
        self._items: deque = deque()
        self._maxsize = maxsize
        self._states = 0  # how many of _items are state items
        self._getter: asyncio.Future | None = None
        self._putters: deque[asyncio.Future] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def peek(self) -> T | None:
        """The next item `get` would return, or None when empty."""
        if not self._items:
            return None
        head = self._items[0]
        return head.item if type(head) is _State else head  # type: ignore[return-value]

    def full(self) -> bool:
        return 0 < self._maxsize <= len(self._items) - self._states

    def put_nowait(self, item: T) -> None:
        # Every message passes here up to three times: full() and _wake() are written out.
        items = self._items
        if 0 < self._maxsize <= len(items) - self._states:
            raise asyncio.QueueFull
        items.append(item)
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    def offer(self, item: T) -> bool:
        """`put_nowait` that never overtakes: False, and nothing queued, when full or while a `put`
        waits for room (that item came first)."""
        if self._putters or 0 < self._maxsize <= len(self._items) - self._states:
            return False
        self._items.append(item)
        if self._getter is not None:
            self._wake()
        return True

    def put_state(self, item: T, same: Callable[[T], bool]) -> None:
        """Queue a state change: it replaces the newest queued item if that is a state item for
        which `same` is true, else it is appended. Never refused, never counted toward the bound.
        """
        items = self._items
        if items and type(items[-1]) is _State and same(items[-1].item):
            items[-1] = _State(item)
            return
        items.append(_State(item))
        self._states += 1
        self._wake()

    def offer_state(self, item: T, same: Callable[[T], bool]) -> bool:
        """`put_state` that never overtakes: False, and nothing queued, while a `put` waits."""
        if self._putters:
            return False
        self.put_state(item, same)
        return True

    def _wake(self) -> None:
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
        if type(item) is _State:
            self._states -= 1
            return item.item  # type: ignore[return-value]
        putters = self._putters
        if putters:
            # Wake the first put still waiting. A woken one stays listed until it runs (its
            # `finally`), so `offer` cannot take the room it was woken for.
            for waiter in putters:
                if not waiter.done():
                    waiter.set_result(None)
                    break
        return item
