"""The shared store of scale-out mode: sessions per owning instance and plugin state in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..backoff import Backoff
from ..events import Room
from .base import SessionRecord, Store, StoreError, StoreUnavailable
from .lease import InstanceDown, InstanceLease
from .records import decode_record, encode_record, room_field
from .url import PASSWORD_ENV, StoreURL

__all__ = ["APP", "MIN_VERSION", "RECONNECT", "RedisStore", "SCHEMA", "redis_version"]

log = logging.getLogger(__name__)

T = TypeVar("T")

APP = "stranger-bridge"
SCHEMA = "1"  # the key layout below; a Redis marked with another is refused
MIN_VERSION = (5, 0)  # Streams (XADD, consumer groups) came with Redis 5
RECONNECT = Backoff(0.1, cap=5.0, attempts=None, jitter=0.5)  # while Redis cannot be reached
POOL_SIZE = 64  # connections to Redis per instance (the hub's stream reader holds one)
TIMEOUT = 2.0  # seconds one command (or connecting) may take before Redis counts as unreachable
# Key names (after the prefix) of this program's layout that its tasks may write again at once when
# Redis came back empty, before the prefix is marked again: the instance leases and the hub's keys.
OWN_KEYS = ("hub:", "pool:", "instance", "sessions:", "kv:", "web:")
# Connection-level failures: the command did nothing we can rely on, and Redis is treated as down.
_DOWN = (rx.ConnectionError, rx.TimeoutError, OSError, asyncio.TimeoutError)


def redis_version(info: dict[str, Any]) -> tuple[int, int]:
    """(major, minor) from `INFO server`."""
    parts = re.findall(r"\d+", str(info.get("redis_version", "0")))
    return (int(parts[0]) if parts else 0, int(parts[1]) if len(parts) > 1 else 0)


class RedisStore(Store):
    """Sessions in `<prefix>sessions:<instance>` (one hash per owner; `sessions()` is this instance's),
    plugin state in `<prefix>kv:<namespace>`, the marker `<prefix>meta`, leases `<prefix>instance:<name>`.

    Open with `await RedisStore.open(...)`. While Redis cannot be reached every call raises
    StoreUnavailable at once (`problem()` says why) and one task reconnects with the RECONNECT backoff.
    """

    shared = True

    def __init__(self, url: StoreURL, *, prefix: str, instance: str, lease: float, on_instance_down: InstanceDown | None = None) -> None:
        self.url = url
        self.prefix = prefix
        self.instance = instance
        self.lease_seconds = lease
        self.on_instance_down = on_instance_down or _log_down
        self.on_data_lost: Callable[[], Awaitable[None]] | None = None  # Redis came back without our keys
        # A bounded pool that makes a call wait for a free connection: a burst of sessions must
        # queue for Redis, not fail ("too many connections") and have the store taken for down.
        pool = aioredis.BlockingConnectionPool(
            connection_class=aioredis.SSLConnection if url.scheme == "rediss" else aioredis.Connection,
            max_connections=POOL_SIZE,
            timeout=None,  # each command is bounded by socket_timeout instead
            host=url.host,
            port=url.port,
            db=url.db,
            username=url.username,
            password=url.password,
            decode_responses=True,
            socket_connect_timeout=TIMEOUT,
            socket_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # fail fast: reconnecting is this store's job, with the shared backoff
            client_name=f"stranger-bridge:{instance}",
        )
        self.redis = aioredis.Redis.from_pool(pool)
        self.lease = InstanceLease(self.redis, prefix, instance, lease, self._sessions_key)
        self.epoch = ""  # the prefix's marking token (see _epoch), read at open
        self._down: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._reconnecting: asyncio.Task | None = None
        self._closed = False

    @classmethod
    async def open(cls, url: StoreURL, *, prefix: str, instance: str, lease: float = 10.0, on_instance_down: InstanceDown | None = None) -> RedisStore:
        """Connect, check the server and the prefix, take the instance lease, start heartbeat and watcher.

        Raises StoreError naming `bridge.store` (unreachable, wrong password, too old, foreign keys) or
        `bridge.instance` (another live instance has this name); nothing is written before the checks pass.
        """
        store = cls(url, prefix=prefix, instance=instance, lease=lease, on_instance_down=on_instance_down)
        try:
            await store._check_server()
            fresh = await store._check_prefix()  # read-only: refuses a prefix that holds foreign keys
            await store._check_streams()
            if fresh:
                await store._mark_prefix()
            store.epoch = await store._epoch()
            await store.lease.acquire()
        except (rx.RedisError, *_DOWN) as exc:  # Redis went away or refused a command half-way
            await store.redis.aclose()
            raise StoreError(f"bridge.store: Redis at {url.redacted()} failed while opening the store: {_plain(exc)}") from None
        except BaseException:
            await store.redis.aclose()
            raise
        loop = asyncio.get_running_loop()
        store._tasks = [
            loop.create_task(store._heartbeat(), name=f"redis lease {instance}"),
            loop.create_task(store._watch(), name="redis instance watcher"),
        ]
        return store

    # ---- opening -----------------------------------------------------------------------------

    async def _check_server(self) -> None:
        where = self.url.redacted()
        try:
            info = await self.redis.info("server")
        except rx.AuthenticationError as exc:
            if self.url.password is None:
                problem = f"it requires a password: set {PASSWORD_ENV} or put it in the URL"
            else:
                problem = f"it refused the password ({_plain(exc)}); check {PASSWORD_ENV} or the URL"
            raise StoreError(f"bridge.store: Redis at {where}: {problem}") from None
        except rx.ResponseError as exc:
            raise StoreError(f"bridge.store: Redis at {where} refused the connection: {_plain(exc)}") from None
        except _DOWN as exc:
            raise StoreError(f"bridge.store: cannot reach Redis at {where}: {_plain(exc)}") from None
        if redis_version(info) < MIN_VERSION:
            raise StoreError(
                f"bridge.store: Redis at {where} is version {info.get('redis_version')}, too old: "
                f"scale-out needs Streams (Redis {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer)"
            )

    @property
    def _probe_key(self) -> str:
        return f"{self.prefix}probe"

    async def _check_streams(self) -> None:
        """XADD and DEL one entry under our own (checked) prefix: a disabled or missing XADD is refused."""
        try:
            await self.redis.xadd(self._probe_key, {"probe": "1"}, maxlen=1)
        except rx.ResponseError:
            raise StoreError(
                f"bridge.store: Redis at {self.url.redacted()} has no XADD: scale-out needs Streams "
                f"(Redis {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer, with the stream commands enabled)"
            ) from None
        finally:
            with contextlib.suppress(rx.RedisError):
                await self.redis.delete(self._probe_key)

    async def _check_prefix(self, own: tuple[str, ...] = ()) -> bool:
        """Refuse a prefix holding keys stranger-bridge did not write. True: nothing is there yet (unmarked).

        `own`: key names (after the prefix) starting with these are this program's layout, written
        by this process's own tasks in the moment since Redis came back empty (the hub's streams).
        """
        where = f"Redis at {self.url.redacted()}"
        meta = await self.redis.hgetall(f"{self.prefix}meta")
        if meta:
            if meta.get("app") != APP or meta.get("schema") != SCHEMA:
                raise StoreError(
                    f"bridge.store: {where} marks the prefix {self.prefix!r} as {meta.get('app')!r} schema "
                    f"{meta.get('schema')!r}, not {APP!r} schema {SCHEMA!r}; nothing was touched. "
                    "Give [bridge] store_prefix another value or use another database"
                )
            return False
        async for key in self.redis.scan_iter(match=_glob_escape(self.prefix) + "*", count=500):
            if key == f"{self.prefix}meta":
                continue  # the marker another instance is writing at this moment (its content was read above)
            if key == self._probe_key and await self.redis.type(key) in ("stream", "none"):
                # our own probe: left by a run that stopped between XADD and DEL, or another instance
                # starting at this moment (gone again by the time its type is asked: "none")
                continue
            if own and key[len(self.prefix):].startswith(own):
                continue
            raise StoreError(
                f"bridge.store: {where} holds keys under the prefix {self.prefix!r} that stranger-bridge "
                f"did not write (e.g. {key!r}); they were left untouched. Give [bridge] store_prefix "
                "another value or use another database"
            )
        return True

    async def _epoch(self) -> str:
        """The token written when the prefix was marked: another one means Redis lost its data since."""
        meta_key = f"{self.prefix}meta"
        await self.redis.hsetnx(meta_key, "epoch", uuid.uuid4().hex)  # a prefix marked by an older version
        return str(await self.redis.hget(meta_key, "epoch"))

    async def _mark_prefix(self) -> None:
        meta_key = f"{self.prefix}meta"
        await self.redis.hsetnx(meta_key, "app", APP)
        await self.redis.hsetnx(meta_key, "schema", SCHEMA)
        await self.redis.hsetnx(meta_key, "epoch", uuid.uuid4().hex)
        if await self._check_prefix():  # still unmarked: the marker did not stick
            raise StoreError(f"bridge.store: the prefix {self.prefix!r} could not be marked as stranger-bridge's")

    # ---- faults ------------------------------------------------------------------------------

    def problem(self) -> str | None:
        if self.lease.lost:
            return f"store: another process took the lease of instance {self.instance!r}"
        return self._down

    async def _do(self, call: Callable[[], Awaitable[T]], *, lease: bool = False) -> T:
        """One call into Redis; refused at once while Redis is down or (unless `lease`) the name is lost."""
        if self._closed:
            raise StoreError("the Redis store is closed")
        problem = self._down if lease else self.problem()
        if problem is not None:  # with the name lost, another process writes these sessions now
            raise StoreUnavailable(problem)
        try:
            return await call()
        except _DOWN as exc:
            self._mark_down(exc)
            raise StoreUnavailable(self._down or "store: Redis unreachable") from None

    def _mark_down(self, exc: BaseException) -> None:
        if self._down is None:
            self._down = f"store: Redis at {self.url.redacted()} unreachable ({_plain(exc)})"
            log.error("%s; store calls fail until it is back, reconnecting", self._down)
        if self._reconnecting is None and not self._closed:
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(), name="redis reconnect")

    async def _reconnect(self) -> None:
        retrying = RECONNECT.retrying()
        try:
            while not self._closed:
                await retrying.wait()
                try:
                    await self.redis.ping()
                    # The idle pooled connections are from before the outage: a restarted Redis closed
                    # them, and the first call on each would fail and mark Redis down again.
                    await self.redis.connection_pool.disconnect(inuse_connections=False)
                    await self._after_outage()
                except _DOWN:
                    continue
                except (StoreError, rx.RedisError) as exc:
                    self._down = f"store: Redis at {self.url.redacted()} is back but unusable: {_plain(exc)}"
                    log.error("%s", self._down)
                    continue
                log.info("Redis at %s is reachable again after %d tries", self.url.redacted(), retrying.failures)
                self._down = None
                return
        finally:
            self._reconnecting = None

    async def _after_outage(self) -> None:
        unmarked = await self._check_prefix(own=OWN_KEYS)
        if unmarked:
            await self._mark_prefix()
        # Lost also when another instance came back first and marked the emptied prefix again.
        epoch = await self._epoch()
        lost, self.epoch = epoch != self.epoch, epoch
        if not await self.lease.renew():  # problem() says so; the heartbeat takes it back once it is free
            log.error("instance %s: another process took its lease while Redis was unreachable", self.instance)
        if lost:
            log.error("Redis at %s came back without stranger-bridge's keys: the sessions it held are gone", self.url.redacted())
            if self.on_data_lost is not None:
                try:
                    await self.on_data_lost()
                except Exception:  # the store is usable again whatever the hook does
                    log.exception("the hook for lost Redis data failed")

    async def _heartbeat(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.lease_seconds / 3)
            if self._down is not None:
                continue  # the reconnect task renews the lease when Redis is back
            was_lost = self.lease.lost
            try:
                held = await self._do(self.lease.renew, lease=True)
            except StoreUnavailable:
                continue
            if not held and not was_lost:
                log.error("instance %s: another process holds its lease now; store calls are refused until it is free", self.instance)
            elif held and was_lost:
                log.warning("instance %s: its lease is free again and held by this process", self.instance)

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.lease_seconds / 3)
            if self._down is not None:
                continue
            try:
                await self._do(lambda: self.lease.watch_once(self.on_instance_down))
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("instance watcher: a look at the other instances failed")

    # ---- the Store interface ------------------------------------------------------------------

    def _sessions_key(self, instance: str) -> str:
        return f"{self.prefix}sessions:{instance}"

    async def save_session(self, record: SessionRecord) -> None:
        record.owner = self.instance
        record.updated = time.time()
        field, value = room_field(record.room), encode_record(record)
        await self._do(lambda: self.redis.hset(self._sessions_key(self.instance), field, value))

    async def delete_session(self, room: Room) -> None:
        field = room_field(room)
        await self._do(lambda: self.redis.hdel(self._sessions_key(self.instance), field))

    async def sessions(self) -> list[SessionRecord]:
        return await self.sessions_of(self.instance)

    async def sessions_of(self, instance: str) -> list[SessionRecord]:
        """The sessions `instance` owns, oldest first (an unreadable entry is logged and left alone)."""
        raw = await self._do(lambda: self.redis.hgetall(self._sessions_key(instance)))
        records = []
        for value in raw.values():
            try:
                records.append(decode_record(value, instance))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("instance %s: an unreadable session entry was skipped (%s)", instance, type(exc).__name__)
        return sorted(records, key=lambda r: r.created)

    async def instances(self) -> dict[str, bool]:
        """Every instance that shares this store, and whether its lease is live."""
        return await self._do(self.lease.instances)

    async def get(self, namespace: str, key: str) -> str | None:
        return await self._do(lambda: self.redis.hget(f"{self.prefix}kv:{namespace}", key))

    async def set(self, namespace: str, key: str, value: str | None) -> None:
        name = f"{self.prefix}kv:{namespace}"
        if value is None:
            await self._do(lambda: self.redis.hdel(name, key))
        else:
            await self._do(lambda: self.redis.hset(name, key, value))

    async def add(self, namespace: str, key: str, amount: int = 1) -> int:
        return int(await self._do(lambda: self.redis.hincrby(f"{self.prefix}kv:{namespace}", key, amount)))

    async def close(self) -> None:
        """Stop heartbeat and watcher, give the lease up (a restart need not wait), disconnect."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._tasks, *([self._reconnecting] if self._reconnecting else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._down is None and not self.lease.lost:
            try:
                await self.lease.release()
            except (rx.RedisError, *_DOWN) as exc:
                log.warning("instance %s: could not release its lease (%s); it expires by itself", self.instance, _plain(exc))
        await self.redis.aclose()


async def _log_down(name: str, sessions: int) -> None:
    log.warning(
        "instance %s stopped renewing its lease; its %d sessions stay in the store until it restarts under that name",
        name,
        sessions,
    )


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _plain(exc: BaseException) -> str:
    """An exception as one short line (redis-py's messages hold host and port, never the password)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
