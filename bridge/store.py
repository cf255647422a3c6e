"""State store: room ↔ session records and each plugin's key/value state. SQLite by default."""

from __future__ import annotations

import abc
import fcntl
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .events import Room

__all__ = [
    "MemoryStore",
    "PluginState",
    "SQLiteStore",
    "SessionRecord",
    "SharedStateFile",
    "Store",
    "StoreError",
    "held_by_a_daemon",
]

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The state store cannot be used (unreadable, corrupt, or of another program)."""


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


class Store(abc.ABC):
    """Where sessions and plugin state persist. The Redis store of scale-out mode implements this too."""

    @abc.abstractmethod
    async def save_session(self, record: SessionRecord) -> None:
        """Insert or replace the record of `record.room`."""

    @abc.abstractmethod
    async def delete_session(self, room: Room) -> None:
        """Forget the session of `room` (it is idle)."""

    @abc.abstractmethod
    async def sessions(self) -> list[SessionRecord]:
        """Every stored session, oldest first."""

    @abc.abstractmethod
    async def get(self, namespace: str, key: str) -> str | None:
        """A plugin's value, or None."""

    @abc.abstractmethod
    async def set(self, namespace: str, key: str, value: str | None) -> None:
        """Set (or with None, delete) a plugin's value."""

    async def close(self) -> None:
        """Flush and release. Default: nothing."""

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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    platform TEXT NOT NULL, room TEXT NOT NULL, state TEXT NOT NULL, backend TEXT NOT NULL,
    handle TEXT, start TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (platform, room));
CREATE TABLE IF NOT EXISTS kv (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (namespace, key));
CREATE TABLE IF NOT EXISTS quarantine (platform TEXT, room TEXT, state TEXT, backend TEXT, handle TEXT,
    start TEXT, created REAL, updated REAL, problem TEXT NOT NULL, moved REAL NOT NULL);
"""
# SQLite's answers when the file or its directory may be read but not written.
_UNWRITABLE = {"SQLITE_READONLY", "SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN", "SQLITE_PERM"}
_APP_ID = "stranger-bridge/1"


class SQLiteStore(Store):
    """The default store: one SQLite file. Writes are small and synchronous (WAL, no fsync per write).

    One process at a time: an exclusive lock on `<state>.lock` beside the file is held until
    `close` (or until the process dies, since the kernel drops it then).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the state file: {exc}") from exc
        self._lock = self._take_lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            os.close(self._lock)
            raise StoreError(f"{self.path}: cannot open the state file: {exc}") from exc
        try:
            self._check_and_migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            os.close(self._lock)
            if getattr(exc, "sqlite_errorname", None) in _UNWRITABLE:
                raise StoreError(
                    f"{self.path}: the state file cannot be written ({exc}); it was left untouched. "
                    "Check the permissions of the file and of its directory."
                ) from exc
            raise StoreError(
                f"{self.path}: not a stranger-bridge state file ({exc}); it was left untouched. "
                "Move it away or point [bridge] state elsewhere."
            ) from exc

    def _take_lock(self) -> int:
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"{self.path}: the state file cannot be written (its lock file {lock_path}: {exc.strerror})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StoreError(
                f"{self.path}: another stranger-bridge is running on this state file (it holds {lock_path}); "
                "stop it first, or give this one its own [bridge] state"
            ) from exc
        return fd

    def _check_and_migrate(self) -> None:
        db = self._db
        # Reading the schema first fails on a corrupt or non-SQLite file before anything is written.
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise sqlite3.DatabaseError("it holds tables of another program")
        if tables:
            row = db.execute("SELECT value FROM meta WHERE key='app'").fetchone()
            if row is None or row[0] != _APP_ID:
                raise sqlite3.DatabaseError(f"unknown format {row[0] if row else None!r}")
            problem = db.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {problem}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('app', ?)", (_APP_ID,))
        # A write now, so a file that can be read but not written is found at start, not later.
        db.execute("INSERT OR REPLACE INTO meta VALUES ('opened', ?)", (repr(time.time()),))

    async def save_session(self, record: SessionRecord) -> None:
        record.updated = time.time()
        self._db.execute(
            "INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?,?)",
            (
                record.room.platform,
                record.room.id,
                record.state,
                record.backend,
                record.handle,
                json.dumps(record.start),
                record.created,
                record.updated,
            ),
        )

    async def delete_session(self, room: Room) -> None:
        self._db.execute("DELETE FROM sessions WHERE platform=? AND room=?", (room.platform, room.id))

    async def sessions(self) -> list[SessionRecord]:
        rows = self._db.execute(
            "SELECT rowid, platform, room, state, backend, handle, start, created, updated FROM sessions ORDER BY created"
        ).fetchall()
        records, bad = [], []
        for rowid, p, r, state, backend, handle, start, created, updated in rows:
            try:
                data = json.loads(start)
                if not isinstance(data, dict):
                    raise ValueError(f"start is a {type(data).__name__}, not an object")
                records.append(SessionRecord(Room(p, r), state, backend, handle, data, created, updated))
            except (ValueError, TypeError) as exc:
                bad.append((rowid, f"{type(exc).__name__}: {exc}"))
        if bad:
            self._quarantine(bad)
        return records

    def _quarantine(self, bad: list[tuple[int, str]]) -> None:
        # Kept for inspection, out of the way of start-up; the log names no room (ids are private).
        now = time.time()
        db = self._db
        db.execute("BEGIN")
        try:
            for rowid, problem in bad:
                db.execute(
                    "INSERT INTO quarantine SELECT platform, room, state, backend, handle, start, created, updated, ?, ? "
                    "FROM sessions WHERE rowid=?",
                    (problem[:200], now, rowid),
                )
                db.execute("DELETE FROM sessions WHERE rowid=?", (rowid,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        log.warning("%s: %d unreadable session rows moved to its table `quarantine`; start-up goes on", self.path, len(bad))

    async def get(self, namespace: str, key: str) -> str | None:
        return _kv_get(self._db, namespace, key)

    async def set(self, namespace: str, key: str, value: str | None) -> None:
        _kv_set(self._db, namespace, key, value)

    async def close(self) -> None:
        self._db.close()
        if self._lock >= 0:
            os.close(self._lock)  # releases the lock
            self._lock = -1


class SharedStateFile(Store):
    """The state file of a daemon that is running, opened beside it by a tool (`stranger-bridge mod`).

    Only plugin key/value state is read and written (SQLite's own file locking keeps the two
    writers apart, and each write is one statement); sessions stay the daemon's: they can be
    read, not changed. Nothing is migrated: the running daemon already did that.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, isolation_level=None, timeout=5.0)
            row = self._db.execute("SELECT value FROM meta WHERE key='app'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the state file beside the running daemon: {exc}") from exc
        if row is None or row[0] != _APP_ID:
            self._db.close()
            raise StoreError(f"{self.path}: not a stranger-bridge state file; it was left untouched")

    async def save_session(self, record: SessionRecord) -> None:
        raise StoreError("sessions belong to the running daemon; they are not changed from beside it")

    async def delete_session(self, room: Room) -> None:
        raise StoreError("sessions belong to the running daemon; they are not changed from beside it")

    async def sessions(self) -> list[SessionRecord]:
        rows = self._db.execute(
            "SELECT platform, room, state, backend, handle, start, created, updated FROM sessions ORDER BY created"
        ).fetchall()
        return [SessionRecord(Room(p, r), st, b, h, json.loads(start), c, u) for p, r, st, b, h, start, c, u in rows]

    async def get(self, namespace: str, key: str) -> str | None:
        return _kv_get(self._db, namespace, key)

    async def set(self, namespace: str, key: str, value: str | None) -> None:
        _kv_set(self._db, namespace, key, value)

    async def close(self) -> None:
        self._db.close()


def held_by_a_daemon(path: Path | str) -> bool:
    """Whether a running stranger-bridge holds the state file at `path` (its lock is taken)."""
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the lock if it was taken here
    return False


def _kv_get(db: sqlite3.Connection, namespace: str, key: str) -> str | None:
    row = db.execute("SELECT value FROM kv WHERE namespace=? AND key=?", (namespace, key)).fetchone()
    return row[0] if row else None


def _kv_set(db: sqlite3.Connection, namespace: str, key: str, value: str | None) -> None:
    if value is None:
        db.execute("DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key))
    else:
        db.execute("INSERT OR REPLACE INTO kv VALUES (?,?,?)", (namespace, key, value))

