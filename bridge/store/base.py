"""The store interface: session records, each plugin's key/value space, the errors, and an in-memory store."""

from __future__ import annotations

import abc
import asyncio
import inspect
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from ..events import Room

__all__ = ["Change", "MemoryStore", "PluginState", "SessionRecord", "Store", "StoreError", "StoreUnavailable", "UPDATE_TRIES"]

T = TypeVar("T")

#: What `Store.update` calls with a key's current value (None: unset): the new value (None: delete)
#: and what `update` returns. It may be called again with a newer value; it must not act outside.
Change = Callable[[str | None], tuple[str | None, T] | Awaitable[tuple[str | None, T]]]
UPDATE_TRIES = 200  # attempts of one update before it gives up (others kept changing the key)


class StoreError(RuntimeError):
    """The state store cannot be used (unreadable, corrupt, of another program, misconfigured)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (Redis down or cut off); the call did nothing. Retry later."""


@dataclass(slots=True)
class SessionRecord:
    """What survives a restart of one room's session."""

    room: Room
    state: str  # "searching" | "chatting" (idle sessions are not stored)
    backend: str
    handle: str | None = None  # the backend's chat handle, for Backend.resume
    start: dict[str, Any] = field(default_factory=dict)  # the Start that began it, as JSON data
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    owner: str | None = None  # the instance that runs it (set by stores shared between instances)
    refs: str | None = None  # the chat's message reference map (bridge.refs, encoded), for resumable chats


class Store(abc.ABC):
    """Where sessions and plugin state persist: SQLite for one process, Redis for several."""

    #: True when several instances share this store (Redis): backends that can (the hub) pair and
    #: relay through it with every instance (`scale_out`).
    shared: ClassVar[bool] = False

    @abc.abstractmethod
    async def save_session(self, record: SessionRecord) -> None:
        """Insert or replace the record of `record.room`."""

    @abc.abstractmethod
    async def delete_session(self, room: Room) -> None:
        """Forget the session of `room` (it is idle)."""

    @abc.abstractmethod
    async def sessions(self) -> list[SessionRecord]:
        """Every session this process runs (with a shared store: this instance owns), oldest first."""

    @abc.abstractmethod
    async def get(self, namespace: str, key: str) -> str | None:
        """A plugin's value, or None."""

    @abc.abstractmethod
    async def set(self, namespace: str, key: str, value: str | None) -> None:
        """Set (or with None, delete) a plugin's value."""

    async def add(self, namespace: str, key: str, amount: int = 1) -> int:
        """Add `amount` to the integer value of `key` (0 when unset) and return the new value, in
        one step that other processes sharing the store cannot interleave with (a counter that
        several instances bump). Default: get then set, for stores that only one task writes."""
        value = int(await self.get(namespace, key) or 0) + amount
        await self.set(namespace, key, str(value))
        return value

    @abc.abstractmethod
    async def compare_and_set(self, namespace: str, key: str, expected: str | None, value: str | None) -> bool:
        """Set `key` to `value` (None: delete) only if it still holds `expected` (None: unset), in one
        step that other processes sharing the store cannot interleave with. True when it was set."""

    async def update(self, namespace: str, key: str, change: Change[T]) -> T:
        """Change one key's value atomically, however many instances change it at once: read it,
        compute the new value with `change(old)` (sync or async), write it only if nobody wrote in
        between (`compare_and_set`), else read again and recompute. Returns what `change` returned
        on the attempt that took effect. Never a read-modify-write that can lose another's update."""
        for attempt in range(UPDATE_TRIES):
            old = await self.get(namespace, key)
            outcome = change(old)
            new, result = await outcome if inspect.isawaitable(outcome) else outcome
            if new == old or await self.compare_and_set(namespace, key, old, new):
                return result
            if attempt >= 2:  # contended: step out of lockstep with the other writer
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))
        raise StoreError(f"store: {namespace}/{key} changed by others {UPDATE_TRIES} times in a row; the change was not made")

    async def close(self) -> None:
        """Flush and release. Default: nothing."""

    async def spend_shared(self, limit: str, key: str, rate: float, burst: float, cooldown: float = 0.0) -> float | None:
        """A limit that every instance sharing this store counts together (starts per person behind a
        load balancer): one token bucket of `burst` and `rate` per second for `key` under `limit`, and
        at least `cooldown` seconds between two spends. 0.0 when a token was taken; else the seconds
        to wait (nothing taken). None: nobody shares this store, the caller's own limit decides."""
        return None

    def share_figures(self, source: Callable[[], dict[str, Any]]) -> None:
        """Publish `source()` (this instance's live counts) to the instances sharing this store, now
        and then. A store of one process has nobody to tell: it keeps nothing."""

    def cluster(self) -> dict[str, dict[str, Any]] | None:
        """The other live instances' published figures by name (as of a few seconds ago), or None
        when nobody shares this store or it cannot be reached."""
        return None

    def problem(self) -> str | None:
        """Why the store cannot be used right now (for /healthz), or None when it can."""
        return None

    def state_for(self, namespace: str) -> PluginState:
        """The key/value space handed to the plugin named `namespace`."""
        return PluginState(self, namespace)


@dataclass(frozen=True, slots=True)
class PluginState:
    """One plugin's view of the store (implements bridge.abc.KeyValue)."""

    store: Store
    namespace: str

    async def get(self, key: str) -> str | None:
        return await self.store.get(self.namespace, key)

    async def set(self, key: str, value: str | None) -> None:
        await self.store.set(self.namespace, key, value)

    async def add(self, key: str, amount: int = 1) -> int:
        return await self.store.add(self.namespace, key, amount)

    async def update(self, key: str, change: Change[T]) -> T:
        return await self.store.update(self.namespace, key, change)

    async def spend_shared(self, key: str, rate: float, burst: float, cooldown: float = 0.0) -> float | None:
        return await self.store.spend_shared(self.namespace, key, rate, burst, cooldown)


class MemoryStore(Store):
    """A store that forgets everything at exit; for tests and benchmarks."""

    def __init__(self) -> None:
        self._sessions: dict[Room, SessionRecord] = {}
        self._kv: dict[tuple[str, str], str] = {}

    async def save_session(self, record: SessionRecord) -> None:
        self._sessions[record.room] = record

    async def delete_session(self, room: Room) -> None:
        self._sessions.pop(room, None)

    async def sessions(self) -> list[SessionRecord]:
        return sorted(self._sessions.values(), key=lambda r: r.created)

    async def get(self, namespace: str, key: str) -> str | None:
        return self._kv.get((namespace, key))

    async def set(self, namespace: str, key: str, value: str | None) -> None:
        if value is None:
            self._kv.pop((namespace, key), None)
        else:
            self._kv[(namespace, key)] = value

    async def compare_and_set(self, namespace: str, key: str, expected: str | None, value: str | None) -> bool:
        if self._kv.get((namespace, key)) != expected:  # no await in between: one step for every task
            return False
        await self.set(namespace, key, value)
        return True
