"""State store: room ↔ session records and each plugin's key/value state; SQLite by default, Redis to scale out."""

from __future__ import annotations

import asyncio
import os

from .base import MemoryStore, PluginState, SessionRecord, Store, StoreError, StoreUnavailable
from .lease import InstanceDown
from .url import PASSWORD_ENV, StoreURL, parse_store_url

__all__ = [
    "MemoryStore",
    "PASSWORD_ENV",
    "PluginState",
    "SQLiteStore",
    "SessionRecord",
    "SharedStateFile",
    "Store",
    "StoreError",
    "StoreURL",
    "StoreUnavailable",
    "held_by_a_daemon",
    "open_store",
    "open_tool_store",
    "parse_store_url",
]


async def open_store(
    url: StoreURL,
    *,
    prefix: str,
    instance: str,
    lease: float,
    environ: dict[str, str] | None = None,
    on_instance_down: InstanceDown | None = None,
) -> Store:
    """The store a configuration names. A Redis password comes from PASSWORD_ENV when it is set."""
    if not url.is_redis:
        assert url.path is not None
        from .sqlite import SQLiteStore

        return await asyncio.to_thread(SQLiteStore, url.path)  # its integrity check reads the whole file
    try:
        from .redis import RedisStore
    except ImportError as exc:
        raise StoreError(f"bridge.store: a Redis store needs the redis package (pip install 'stranger-bridge[redis]'): {exc}") from None
    url = url.with_password_from(os.environ if environ is None else environ)
    return await RedisStore.open(url, prefix=prefix, instance=instance, lease=lease, on_instance_down=on_instance_down)


async def open_tool_store(url: StoreURL, *, prefix: str, environ: dict[str, str] | None = None) -> Store:
    """A Redis store opened for a command-line tool beside the daemons: checked like theirs, holding no lease."""
    from .redis import RedisStore

    url = url.with_password_from(os.environ if environ is None else environ)
    return await RedisStore.open_tool(url, prefix=prefix)


def __getattr__(name: str):
    # sqlite3 (and its thread pool) only when a SQLite store is asked for: a Redis or memory store never loads it
    if name in ("SQLiteStore", "SharedStateFile", "held_by_a_daemon"):
        from . import sqlite

        return getattr(sqlite, name)
    raise AttributeError(name)
