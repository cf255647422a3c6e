"""Opening a Redis store: the server's version and Streams checked, the key prefix marked as
stranger-bridge's, and refused when it holds keys some other program wrote."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from typing import Any

from redis import exceptions as rx

from .base import StoreError
from .url import PASSWORD_ENV, StoreURL

__all__ = ["APP", "DOWN", "MIN_VERSION", "PrefixMarker", "SCHEMA", "glob_escape", "plain", "redis_version"]

APP = "stranger-bridge"
SCHEMA = "1"  # the key layout of bridge.store.redis; a Redis marked with another is refused
MIN_VERSION = (5, 0)  # Streams (XADD, consumer groups) came with Redis 5
# Connection-level failures: the command did nothing we can rely on, and Redis is treated as down.
DOWN = (rx.ConnectionError, rx.TimeoutError, OSError, asyncio.TimeoutError)


def redis_version(info: dict[str, Any]) -> tuple[int, int]:
    """(major, minor) from `INFO server`."""
    parts = re.findall(r"\d+", str(info.get("redis_version", "0")))
    return (int(parts[0]) if parts else 0, int(parts[1]) if len(parts) > 1 else 0)


class PrefixMarker:
    """The checks a RedisStore makes before it writes anything, and the marker `<prefix>meta`."""

    def __init__(self, redis: Any, url: StoreURL, prefix: str) -> None:
        self.redis = redis
        self.url = url
        self.prefix = prefix

    async def check_server(self) -> None:
        where = self.url.redacted()
        try:
            info = await self.redis.info("server")
        except rx.AuthenticationError as exc:
            if self.url.password is None:
                problem = f"it requires a password: set {PASSWORD_ENV} or put it in the URL"
            else:
                problem = f"it refused the password ({plain(exc)}); check {PASSWORD_ENV} or the URL"
            raise StoreError(f"bridge.store: Redis at {where}: {problem}") from None
        except rx.ResponseError as exc:
            raise StoreError(f"bridge.store: Redis at {where} refused the connection: {plain(exc)}") from None
        except DOWN as exc:
            raise StoreError(f"bridge.store: cannot reach Redis at {where}: {plain(exc)}") from None
        if redis_version(info) < MIN_VERSION:
            raise StoreError(
                f"bridge.store: Redis at {where} is version {info.get('redis_version')}, too old: "
                f"scale-out needs Streams (Redis {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer)"
            )

    @property
    def probe_key(self) -> str:
        return f"{self.prefix}probe"

    async def check_streams(self) -> None:
        """XADD and DEL one entry under our own (checked) prefix: a disabled or missing XADD is refused."""
        try:
            await self.redis.xadd(self.probe_key, {"probe": "1"}, maxlen=1)
        except rx.ResponseError:
            raise StoreError(
                f"bridge.store: Redis at {self.url.redacted()} has no XADD: scale-out needs Streams "
                f"(Redis {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer, with the stream commands enabled)"
            ) from None
        finally:
            with contextlib.suppress(rx.RedisError):
                await self.redis.delete(self.probe_key)

    async def check_prefix(self, own: tuple[str, ...] = ()) -> bool:
        """Refuse a prefix holding keys stranger-bridge did not write. True: nothing is there yet (unmarked).

        `own`: key names (after the prefix) starting with these are this program's layout, written
        by this process's own tasks in the moment since Redis came back empty (the hub's streams).
        """
        where = f"Redis at {self.url.redacted()}"
        if await self._marked(where):
            return False
        async for key in self.redis.scan_iter(match=glob_escape(self.prefix) + "*", count=500):
            if key == f"{self.prefix}meta":
                continue  # the marker another instance is writing at this moment (its content was read above)
            if key == self.probe_key and await self.redis.type(key) in ("stream", "none"):
                # our own probe: left by a run that stopped between XADD and DEL, or another instance
                # starting at this moment (gone again by the time its type is asked: "none")
                continue
            if own and key[len(self.prefix):].startswith(own):
                continue
            if await self._marked(where):
                # Another instance marked the prefix after the marker was read above, and wrote its
                # keys (it writes none before its marker): ours, not another program's.
                return False
            raise StoreError(
                f"bridge.store: {where} holds keys under the prefix {self.prefix!r} that stranger-bridge "
                f"did not write (e.g. {key!r}); they were left untouched. Give [bridge] store_prefix "
                "another value or use another database"
            )
        return True

    async def _marked(self, where: str) -> bool:
        """True when the prefix carries our marker; a marker of another program or schema is refused."""
        meta = await self.redis.hgetall(f"{self.prefix}meta")
        if not meta:
            return False
        if meta.get("app") != APP or meta.get("schema") != SCHEMA:
            raise StoreError(
                f"bridge.store: {where} marks the prefix {self.prefix!r} as {meta.get('app')!r} schema "
                f"{meta.get('schema')!r}, not {APP!r} schema {SCHEMA!r}; nothing was touched. "
                "Give [bridge] store_prefix another value or use another database"
            )
        return True

    async def epoch(self) -> str:
        """The token written when the prefix was marked: another one means Redis lost its data since."""
        meta_key = f"{self.prefix}meta"
        await self.redis.hsetnx(meta_key, "epoch", uuid.uuid4().hex)  # a prefix marked by an older version
        return str(await self.redis.hget(meta_key, "epoch"))

    async def mark(self) -> None:
        meta_key = f"{self.prefix}meta"
        # One MULTI: an instance starting at the same moment reads no marker or a whole one, never
        # a half-written one (it took that for another schema and refused to start).
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(meta_key, "app", APP)
        pipe.hsetnx(meta_key, "schema", SCHEMA)
        pipe.hsetnx(meta_key, "epoch", uuid.uuid4().hex)
        await pipe.execute()
        if await self.check_prefix():  # still unmarked: the marker did not stick
            raise StoreError(f"bridge.store: the prefix {self.prefix!r} could not be marked as stranger-bridge's")


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def plain(exc: BaseException) -> str:
    """An exception as one short line (redis-py's messages hold host and port, never the password)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
