"""A Store that times every call into the one it wraps, for the `store_seconds` histogram."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from .events import Room
from .metrics import Metrics
from .store import SessionRecord, Store

__all__ = ["TimedStore"]


class TimedStore(Store):
    """Delegates to `inner`; each call is observed as store_seconds{op=...}, failures included."""

    def __init__(self, inner: Store, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    @contextlib.contextmanager
    def _timed(self, op: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.metrics.observe("store_seconds", time.perf_counter() - started, op=op)

    async def save_session(self, record: SessionRecord) -> None:
        with self._timed("save_session"):
            await self.inner.save_session(record)

    async def delete_session(self, room: Room) -> None:
        with self._timed("delete_session"):
            await self.inner.delete_session(room)

    async def sessions(self) -> list[SessionRecord]:
        with self._timed("sessions"):
            return await self.inner.sessions()

    async def get(self, namespace: str, key: str) -> str | None:
        with self._timed("get"):
            return await self.inner.get(namespace, key)

    async def set(self, namespace: str, key: str, value: str | None) -> None:
        with self._timed("set"):
            await self.inner.set(namespace, key, value)

    async def add(self, namespace: str, key: str, amount: int = 1) -> int:
        with self._timed("add"):
            return await self.inner.add(namespace, key, amount)

    async def compare_and_set(self, namespace: str, key: str, expected: str | None, value: str | None) -> bool:
        with self._timed("compare_and_set"):
            return await self.inner.compare_and_set(namespace, key, expected, value)

    async def spend_shared(self, limit: str, key: str, rate: float, burst: float, cooldown: float = 0.0) -> float | None:
        with self._timed("spend_shared"):
            return await self.inner.spend_shared(limit, key, rate, burst, cooldown)

    def share_figures(self, source) -> None:
        self.inner.share_figures(source)

    def cluster(self) -> dict | None:
        return self.inner.cluster()

    def problem(self) -> str | None:
        return self.inner.problem()

    async def close(self) -> None:
        await self.inner.close()
