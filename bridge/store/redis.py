"""The shared store of scale-out mode: sessions per owning instance and plugin state in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..backoff import Backoff
from ..events import Room
from .base import SessionRecord, Store, StoreError, StoreUnavailable
from .figures import Figures, SharedFigures
from .lease import InstanceDown, InstanceLease
from .marker import APP, MIN_VERSION, SCHEMA, PrefixMarker, redis_version
from .marker import DOWN as _DOWN
from .marker import plain as _plain
from .records import decode_record, encode_record, room_field
from .url import StoreURL

__all__ = ["APP", "MIN_VERSION", "RECONNECT", "RedisStore", "SCHEMA", "redis_version"]

log = logging.getLogger(__name__)

T = TypeVar("T")

RECONNECT = Backoff(0.1, cap=5.0, attempts=None, jitter=0.5)  # while Redis cannot be reached
POOL_SIZE = 64  # connections to Redis per instance (the hub's stream reader holds one)
TIMEOUT = 2.0  # seconds one command (or connecting) may take before Redis counts as unreachable
# Key names (after the prefix) of this program's layout that its tasks may write again at once when
# Redis came back empty, before the prefix is marked again: the instance leases and the hub's keys.
OWN_KEYS = ("hub:", "pool:", "instance", "sessions:", "kv:", "figures:", "limit:", "web:")
# compare_and_set: KEYS[1] the namespace's hash, ARGV: field, whether a value is expected, it,
# whether one is set, it. One script: Redis runs it without any other command in between.
_CAS = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur ~= ARGV[3] then return 0 end
elseif cur then
  return 0
end
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[5]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""

# spend_shared: KEYS[1] the key's bucket, ARGV: rate, burst, cooldown. Redis's own clock, so the
# instances' clocks need not agree; the bucket expires once it is full again and the cooldown over.
_SPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'last')
local tokens, at, last = tonumber(v[1]) or burst, tonumber(v[2]) or now, tonumber(v[3])
if now > at then tokens = math.min(burst, tokens + (now - at) * rate) end
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
if last and cooldown > 0 and last + cooldown - now > wait then wait = last + cooldown - now end
if wait > 0 then return string.format('%.6f', wait) end
tokens = tokens - 1
local stamp = string.format('%.6f', now)  -- tostring keeps 14 digits: a time rounded up would be ahead of the next call's
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', stamp, 'last', stamp)
redis.call('PEXPIRE', KEYS[1], math.ceil(1000 * math.max(cooldown, (burst - tokens) / rate)) + 1000)
return '0'
"""


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
        self._cas = self.redis.register_script(_CAS)  # EVALSHA, loaded again when Redis lost its scripts
        self._spend = self.redis.register_script(_SPEND)
        self.marker = PrefixMarker(self.redis, url, prefix)
        self.lease = InstanceLease(self.redis, prefix, instance, lease, self._sessions_key)
        self.figures = SharedFigures(self.redis, prefix, instance, lease, self.lease.instances_key)
        self.epoch = ""  # the prefix's marking token (see PrefixMarker.epoch), read at open
        self._down: str | None = None
        self._unforgotten: set[str] = set()  # session fields deleted while Redis was unreachable
        self._tasks: list[asyncio.Task] = []
        self._reconnecting: asyncio.Task | None = None
        self._closed = False
        self._tool = False  # opened by open_tool: holds no lease, publishes no figures

    @classmethod
    async def open(cls, url: StoreURL, *, prefix: str, instance: str, lease: float = 10.0, on_instance_down: InstanceDown | None = None) -> RedisStore:
        """Connect, check the server and the prefix, take the instance lease, start heartbeat and watcher.

        Raises StoreError naming `bridge.store` (unreachable, wrong password, too old, foreign keys) or
        `bridge.instance` (another live instance has this name); nothing is written before the checks pass.
        """
        store = cls(url, prefix=prefix, instance=instance, lease=lease, on_instance_down=on_instance_down)
        try:
            await store.marker.check_server()
            fresh = await store.marker.check_prefix()  # read-only: refuses a prefix that holds foreign keys
            await store.marker.check_streams()
            if fresh:
                await store.marker.mark()
            store.epoch = await store.marker.epoch()
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

    @classmethod
    async def open_tool(cls, url: StoreURL, *, prefix: str) -> RedisStore:
        """Open the shared state for a command-line tool beside the daemons (`stranger-bridge mod`):
        the same checks as `open`, but no lease, heartbeat or watcher, and nothing marked, so the
        tool is never taken for an instance and never gives up a daemon's name when it closes."""
        store = cls(url, prefix=prefix, instance="-tool", lease=10.0)
        store._tool = True
        try:
            await store.marker.check_server()
            if await store.marker.check_prefix():
                raise StoreError(f"bridge.store: Redis at {url.redacted()} holds no stranger-bridge state under the prefix {prefix!r}")
        except (rx.RedisError, *_DOWN) as exc:
            await store.redis.aclose()
            raise StoreError(f"bridge.store: Redis at {url.redacted()} failed while opening the store: {_plain(exc)}") from None
        except BaseException:
            await store.redis.aclose()
            raise
        return store

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
                    # Idle pooled connections are from before the outage: after a Redis restart each
                    # would fail its next command once ("Connection closed by server") and mark Redis
                    # down again just after it came back (a start in that moment was refused).
                    await self.redis.connection_pool.disconnect(inuse_connections=False)
                    await self.redis.ping()
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
        unmarked = await self.marker.check_prefix(own=OWN_KEYS)
        if unmarked:
            await self.marker.mark()
        # Lost also when another instance came back first and marked the emptied prefix again.
        epoch = await self.marker.epoch()
        lost, self.epoch = epoch != self.epoch, epoch
        if not await self.lease.renew():  # problem() says so; the heartbeat takes it back once it is free
            log.error("instance %s: another process took its lease while Redis was unreachable", self.instance)
        elif self._unforgotten:  # before any other call may save again (they are refused until this returns)
            await self.redis.hdel(self._sessions_key(self.instance), *self._unforgotten)
            self._unforgotten.clear()
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
            if held:
                try:
                    await self._do(self.figures.share)
                except StoreUnavailable:
                    continue
                except Exception:  # the totals stay as they were; the lease is what matters here
                    log.exception("instance %s: sharing its live figures failed", self.instance)

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
        self._unforgotten.discard(field)

    async def delete_session(self, room: Room) -> None:
        """While Redis is unreachable the delete is kept and done once it is back: a chat that ended
        in an outage must not be taken up again by the next start as if it were still running."""
        field = room_field(room)
        try:
            await self._do(lambda: self.redis.hdel(self._sessions_key(self.instance), field))
        except StoreUnavailable:
            if self._down is None:
                raise  # the name is lost: these sessions are another process's now
            self._unforgotten.add(field)
            return
        self._unforgotten.discard(field)

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

    async def compare_and_set(self, namespace: str, key: str, expected: str | None, value: str | None) -> bool:
        args = [key, "0" if expected is None else "1", expected or "", "0" if value is None else "1", value or ""]
        return bool(await self._do(lambda: self._cas(keys=[f"{self.prefix}kv:{namespace}"], args=args)))

    async def spend_shared(self, limit: str, key: str, rate: float, burst: float, cooldown: float = 0.0) -> float | None:
        args = [repr(rate), repr(float(burst)), repr(cooldown)]
        return float(await self._do(lambda: self._spend(keys=[f"{self.prefix}limit:{limit}:{key}"], args=args)))

    def share_figures(self, source: Callable[[], Figures]) -> None:
        self.figures.source = source

    def cluster(self) -> dict[str, Figures] | None:
        return None if self.problem() is not None else dict(self.figures.others)

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
        if self._down is None and not self.lease.lost and not self._tool:
            try:
                await self.figures.withdraw()
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
