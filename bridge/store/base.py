"""The store interface: session records, each plugin's key/value space, the errors, and an in-memory store."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..events import Room

__all__ = ["MemoryStore", "PluginState", "SessionRecord", "Store", "StoreError", "StoreUnavailable"]


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

    async def close(self) -> None:
        """Flush and release. Default: nothing."""

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
