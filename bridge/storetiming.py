"""A Store that times every call into the one it wraps, for the `store_seconds` histogram."""

from __future__ import annotations

import time

from .events import Room
from .metrics import Metrics
from .store import SessionRecord, Store

__all__ = ["TimedStore"]


class TimedStore(Store):
    """Delegates to `inner`; each call is observed as store_seconds{op=...}, failures included."""

    def __init__(self, inner: Store, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    # Each call written out (try/finally, no context manager): the core saves a record per state
    # change and a chat's reference map about once a second, so this wraps a hot path.

    async def save_session(self, record: SessionRecord) -> None:
        started = time.perf_counter()
        try:
            await self.inner.save_session(record)
        finally:
            self.metrics.observe("store_seconds", time.perf_counter() - started, op="save_session")

    async def delete_session(self, room: Room) -> None:
        started = time.perf_counter()
        try:
            await self.inner.delete_session(room)
        finally:
            self.metrics.observe("store_seconds", time.perf_counter() - started, op="delete_session")

    async def sessions(self) -> list[SessionRecord]:
        started = time.perf_counter()
        try:
            return await self.inner.sessions()
        finally:
            self.metrics.observe("store_seconds", time.perf_counter() - started, op="sessions")

    async def get(self, namespace: str, key: str) -> str | None:
        started = time.perf_counter()
        try:
            return await self.inner.get(namespace, key)
        finally:
            self.metrics.observe("store_seconds", time.perf_counter() - started, op="get")

    async def set(self, namespace: str, key: str, value: str | None) -> None:
        started = time.perf_counter()
        try:
            await self.inner.set(namespace, key, value)
        finally:
            self.metrics.observe("store_seconds", time.perf_counter() - started, op="set")

    async def add(self, namespace: str, key: str, amount: int = 1) -> int:
        started = time.perf_counter()
        try:
            return await self.inner.add(namespace, key, amount)
        finally:
            self.metrics.observe("store_seconds", time.perf_counter() - started, op="add")

    async def compare_and_set(self, namespace: str, key: str, expected: str | None, value: str | None) -> bool:
        started = time.perf_counter()
        try:
            return await self.inner.compare_and_set(namespace, key, expected, value)
        finally:
            self.metrics.observe("store_seconds", time.perf_counter() - started, op="compare_and_set")

    async def spend_shared(self, limit: str, key: str, rate: float, burst: float, cooldown: float = 0.0) -> float | None:
        started = time.perf_counter()
        try:
            return await self.inner.spend_shared(limit, key, rate, burst, cooldown)
        finally:
            self.metrics.observe("store_seconds", time.perf_counter() - started, op="spend_shared")

    def share_figures(self, source) -> None:
        self.inner.share_figures(source)

    def cluster(self) -> dict | None:
        return self.inner.cluster()

    def problem(self) -> str | None:
        return self.inner.problem()

    async def close(self) -> None:
        await self.inner.close()
