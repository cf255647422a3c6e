"""The default store: one SQLite file, used from one worker thread so no call blocks the event loop."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..events import Room
from .base import SessionRecord, Store, StoreError

__all__ = ["SQLiteStore", "SharedStateFile", "held_by_a_daemon"]

log = logging.getLogger(__name__)

BACKLOG = 256  # calls waiting for the worker before the event loop waits for it

T = TypeVar("T")

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
_SAVE = ("INSERT OR REPLACE INTO sessions (platform, room, state, backend, handle, start, created, updated, refs) "
         "VALUES (?,?,?,?,?,?,?,?,?)")  # fmt: skip


class SQLiteStore(Store):
    """One SQLite file (WAL, no fsync per write). Opening checks the file at once (it raises StoreError
    and touches nothing when the file is not ours); every later call runs on the store's one worker
    thread, in the order the calls were made, through the one connection.

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
        # One thread: the connection is never used by two threads at once, and calls keep their order.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._closed = False
        # Group commit: the calls that queue up while the worker is busy run as one batch, writes in
        # one transaction, so a burst of session churn costs one commit and one wake-up, not one per
        # call (with a commit each, a busy daemon queued writes faster than the file took them, and
        # every session waiting on its write stayed in memory).
        self._pending: list[tuple[bool, Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._pending_lock = threading.Lock()
        self._batch_queued = False

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
        if "refs" not in {row[1] for row in db.execute("PRAGMA table_info(sessions)")}:
            db.execute("ALTER TABLE sessions ADD COLUMN refs TEXT")  # files from before the rich relay
        db.execute("INSERT OR IGNORE INTO meta VALUES ('app', ?)", (_APP_ID,))
        # A write now, so a file that can be read but not written is found at start, not later.
        db.execute("INSERT OR REPLACE INTO meta VALUES ('opened', ?)", (repr(time.time()),))

    async def _call(self, fn: Callable[..., T], *args: Any, batch: bool = True) -> T:
        """Run `fn(*args)` on the worker, in call order; `batch=False` for calls that manage their own transaction."""
        if self._closed:
            raise StoreError(f"{self.path}: the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._pending_lock:
            self._pending.append((batch, fn, args, future))
            start = not self._batch_queued
            self._batch_queued = True
        if start:
            loop.run_in_executor(self._worker, self._run_batch, loop)
        elif len(self._pending) >= BACKLOG:
            # Back-pressure: the event loop waits (GIL released) until the worker has taken the
            # queue, instead of accepting work faster than the file can take it. Under a busy
            # loop the worker otherwise waits for the GIL after every statement.
            self._worker.submit(_nothing).result()
        return await future

    def _run_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        # On the worker thread: take what queued up so far; later calls start the next batch.
        with self._pending_lock:
            items, self._pending = self._pending, []
            self._batch_queued = False
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        db, open_tx, locked_out = self._db, False, False
        for batch, fn, args, future in items:
            if batch and not open_tx and not locked_out:
                # IMMEDIATE: the write lock from the start, so a tool writing the file beside this
                # daemon (SharedStateFile) waits for the batch instead of making its reads stale.
                try:
                    db.execute("BEGIN IMMEDIATE")
                    open_tx = True
                except sqlite3.OperationalError:  # busy past the timeout: these calls commit one by one
                    locked_out = True
                    log.warning("%s: the state file stayed locked by another process; writing without a batch", self.path)
            elif not batch and open_tx:
                db.execute("COMMIT")
                open_tx = False
            try:
                results.append((future, fn(*args), None))
            except Exception as exc:  # that call fails alone (SQLite rolls back only its statement)
                results.append((future, None, exc))
        if open_tx:
            try:
                db.execute("COMMIT")
            except Exception as exc:
                results = [(f, None, exc) for f, _, _ in results]
        loop.call_soon_threadsafe(_settle, results)

    async def save_session(self, record: SessionRecord) -> None:
        record.updated = time.time()
        # The row is built now: the caller may change the record while the write waits its turn.
        row = (
            record.room.platform,
            record.room.id,
            record.state,
            record.backend,
            record.handle,
            json.dumps(record.start),
            record.created,
            record.updated,
            record.refs,
        )
        await self._call(self._db.execute, _SAVE, row)

    async def delete_session(self, room: Room) -> None:
        await self._call(self._db.execute, "DELETE FROM sessions WHERE platform=? AND room=?", (room.platform, room.id))

    async def sessions(self) -> list[SessionRecord]:
        return await self._call(self._read_sessions, batch=False)

    def _read_sessions(self) -> list[SessionRecord]:
        rows = self._db.execute(
            "SELECT rowid, platform, room, state, backend, handle, start, created, updated, refs FROM sessions ORDER BY created"
        ).fetchall()
        records, bad = [], []
        for rowid, p, r, state, backend, handle, start, created, updated, refs in rows:
            try:
                data = json.loads(start)
                if not isinstance(data, dict):
                    raise ValueError(f"start is a {type(data).__name__}, not an object")
                records.append(SessionRecord(Room(p, r), state, backend, handle, data, created, updated, refs=refs))
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
        return await self._call(_kv_get, self._db, namespace, key)

    async def set(self, namespace: str, key: str, value: str | None) -> None:
        await self._call(_kv_set, self._db, namespace, key, value)

    async def add(self, namespace: str, key: str, amount: int = 1) -> int:
        return await self._call(_kv_add, self._db, namespace, key, amount)

    async def compare_and_set(self, namespace: str, key: str, expected: str | None, value: str | None) -> bool:
        return await self._call(_kv_compare_and_set, self._db, namespace, key, expected, value)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued calls finish first (the worker runs them in order), then the file and its lock are let go.
        await asyncio.get_running_loop().run_in_executor(self._worker, self._db.close)
        self._worker.shutdown(wait=True)
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

    async def add(self, namespace: str, key: str, amount: int = 1) -> int:
        return _kv_add(self._db, namespace, key, amount)

    async def compare_and_set(self, namespace: str, key: str, expected: str | None, value: str | None) -> bool:
        return _kv_compare_and_set(self._db, namespace, key, expected, value)

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


def _nothing() -> None:
    return None


def _settle(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in results:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


def _kv_get(db: sqlite3.Connection, namespace: str, key: str) -> str | None:
    row = db.execute("SELECT value FROM kv WHERE namespace=? AND key=?", (namespace, key)).fetchone()
    return row[0] if row else None


def _kv_add(db: sqlite3.Connection, namespace: str, key: str, amount: int) -> int:
    # One statement: the daemon and a tool beside it (SharedStateFile) never lose an increment.
    row = db.execute(
        "INSERT INTO kv VALUES (?,?,?) ON CONFLICT (namespace, key) DO UPDATE "
        "SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT) RETURNING value",
        (namespace, key, str(amount), amount),
    ).fetchone()
    return int(row[0])


def _kv_compare_and_set(db: sqlite3.Connection, namespace: str, key: str, expected: str | None, value: str | None) -> bool:
    # One statement each: atomic also against the other process on the file (the daemon's batches
    # hold the write lock from their start, see _run_batch, so no read of theirs goes stale inside).
    where = (namespace, key)
    if expected is None and value is None:
        return _kv_get(db, namespace, key) is None
    if expected is None:
        return db.execute("INSERT INTO kv VALUES (?,?,?) ON CONFLICT (namespace, key) DO NOTHING", (*where, value)).rowcount == 1
    if value is None:
        return db.execute("DELETE FROM kv WHERE namespace=? AND key=? AND value=?", (*where, expected)).rowcount == 1
    return db.execute("UPDATE kv SET value=? WHERE namespace=? AND key=? AND value=?", (value, *where, expected)).rowcount == 1


def _kv_set(db: sqlite3.Connection, namespace: str, key: str, value: str | None) -> None:
    if value is None:
        db.execute("DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key))
    else:
        db.execute("INSERT OR REPLACE INTO kv VALUES (?,?,?)", (namespace, key, value))
