"""The one seen-id set: bounded, insertion-ordered, evicting the oldest, optionally keeping a value per id."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["SeenIds"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SeenIds(Generic[K, V]):
    """The last `limit` ids seen (event ids delivered twice, interactions re-sent, 5xx retries).

    `first_time(id)` is the usual question: True once per id, then False while it is remembered.
    `remember(id, value)` also keeps a value (Discord keeps each message's content, to tell an edit
    from an embed unfurl); remembering a known id updates its value but not its age.
    """

    __slots__ = ("limit", "_items")

    def __init__(self, limit: int, ids: Iterable[K] = ()) -> None:
        if limit < 1:
            raise ValueError(f"a seen-id set needs room for at least one id, not {limit!r}")
        self.limit = limit
        self._items: OrderedDict[K, V | None] = OrderedDict()
        for key in ids:
            self.remember(key)

    def first_time(self, key: K) -> bool:
        """Remember `key`; True if it was not remembered already."""
        items = self._items
        if key in items:
            return False
        items[key] = None  # (remember, inlined: asked for every event a platform receives)
        if len(items) > self.limit:
            items.popitem(last=False)
        return True

    def remember(self, key: K, value: V | None = None) -> None:
        """Remember `key` (with `value`), forgetting the oldest id when full."""
        self._items[key] = value
        if len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value remembered with `key`, or `default` (also when it was remembered without one)."""
        value = self._items.get(key)
        return default if value is None else value

    def newest(self, n: int) -> list[K]:
        """The `n` most recent ids, oldest first (what a platform persists across restarts)."""
        if n <= 0:
            return []
        keys = list(self._items)
        return keys[-n:]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
