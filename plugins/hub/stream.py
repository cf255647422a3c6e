"""The relay between hub instances: one Redis stream per instance read through a consumer group, at least once,
each envelope taking effect once (deduplicated by its id)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from redis import exceptions as rx

from bridge.backoff import Backoff
from bridge.dedupe import SeenIds

__all__ = ["GROUP", "StreamRelay"]

log = logging.getLogger(__name__)

GROUP = "hub"
READ_BLOCK_MS = 1000  # below the store client's 2 s socket timeout, so a quiet stream is not "Redis down"
READ_COUNT = 512
MAXLEN = 100_000  # entries kept for an instance that is away (approximate trim); handled ones are deleted
SEEN = 65_536  # envelope ids remembered to drop a redelivered one
RETRY = Backoff(0.05, cap=2.0, attempts=None, jitter=0.3)
_DOWN = (rx.ConnectionError, rx.TimeoutError, OSError, asyncio.TimeoutError)


class StreamRelay:
    """Sends envelopes (JSON-ready dicts with a unique "id") to other instances and hands this
    instance's to `handle`, in the order each sender wrote them.

    Every envelope is written with XADD to `<prefix>hub:stream:<instance>`; a write that fails is
    retried with the same id (a reply lost after the write went through makes a duplicate, which
    the reader drops). The reader takes its own stream through the consumer group GROUP, so entries
    read but not acknowledged when a process died are read again by the process restarted under
    that name. `lossy` envelopes (typing) are dropped instead of retried.
    """

    def __init__(self, redis: Any, *, prefix: str, instance: str, handle: Callable[[dict[str, Any]], None]) -> None:
        self.redis = redis
        self.prefix = prefix
        self.instance = instance
        self.handle = handle
        self.seen: SeenIds[str, None] = SeenIds(SEEN)
        self.sent = 0
        self.received = 0
        self.duplicates = 0
        self._out: collections.deque[tuple[str, str, bool]] = collections.deque()  # (instance, payload, lossy)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._acks: set[asyncio.Task] = set()
        self._discards = 0
        self._writing = False  # a batch is out of the queue and on its way
        self._closed = False

    def key(self, instance: str) -> str:
        """The stream that instance `instance` reads."""
        return f"{self.prefix}hub:stream:{instance}"

    async def start(self) -> None:
        """Create this instance's stream and group (kept when they exist), then read and write."""
        try:
            await self.redis.xgroup_create(self.key(self.instance), GROUP, id="0", mkstream=True)
        except rx.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(), name="hub stream reader"),
            loop.create_task(self._write(), name="hub stream writer"),
        ]

    def send(self, instance: str, envelope: dict[str, Any], *, lossy: bool = False) -> None:
        """Queue `envelope` for `instance`; written in order with everything queued before it."""
        self._out.append((instance, json.dumps(envelope, separators=(",", ":")), lossy))
        self._wake.set()

    def discard(self) -> int:
        """Drop everything not written yet (the chats it belongs to were ended); how many."""
        dropped = len(self._out)
        self._out.clear()
        self._discards += 1  # a batch being written now is not put back if it fails
        return dropped

    async def drain(self, timeout: float) -> bool:
        """Wait (up to `timeout`) until everything queued was written; True when it was."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._out or self._writing:
                    await asyncio.sleep(0.01)
        return not self._out

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._acks:  # what was handled is acknowledged, so a restart does not read it again
            await asyncio.wait(list(self._acks), timeout=2)

    # ---- writing -----------------------------------------------------------------------------

    async def _write(self) -> None:
        retrying = RETRY.retrying()
        while not self._closed:
            if not self._out:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(self._out)
            self._out.clear()
            discards = self._discards
            pipe = self.redis.pipeline(transaction=False)
            for instance, payload, _ in batch:
                pipe.xadd(self.key(instance), {"e": payload}, maxlen=MAXLEN, approximate=True)
            self._writing = True
            try:
                await pipe.execute()
            except asyncio.CancelledError:
                raise
            except (rx.RedisError, *_DOWN) as exc:
                self._writing = False
                # Nothing of the batch is known to be written: put it back (typing aside), in order, and retry.
                log.warning("hub relay: writing %d envelopes failed (%s); retrying", len(batch), type(exc).__name__)
                if discards == self._discards:
                    self._out.extendleft(reversed([item for item in batch if not item[2]]))
                await retrying.wait()
                continue
            self._writing = False
            retrying.succeeded()
            self.sent += len(batch)

    # ---- reading -----------------------------------------------------------------------------

    async def _read(self) -> None:
        key = self.key(self.instance)
        retrying = RETRY.retrying()
        cursor = "0"  # first what this consumer read before and never acknowledged (a crash), then new ones
        while not self._closed:
            try:
                reply = await self.redis.xreadgroup(
                    GROUP, self.instance, {key: cursor}, count=READ_COUNT, block=None if cursor == "0" else READ_BLOCK_MS
                )
            except asyncio.CancelledError:
                raise
            except rx.ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis lost the stream (restarted empty): make it again
                    with contextlib.suppress(rx.RedisError, *_DOWN):
                        await self.redis.xgroup_create(key, GROUP, id="0", mkstream=True)
                    continue
                log.warning("hub relay: reading failed (%s); retrying", exc)
                await retrying.wait()
                continue
            except (rx.RedisError, *_DOWN) as exc:
                log.debug("hub relay: reading failed (%s); retrying", type(exc).__name__)
                cursor = "0"  # a reply lost on the way (a timeout) left its entries pending for this consumer
                await retrying.wait()
                continue
            retrying.succeeded()
            entries = reply[0][1] if reply else []
            if not entries:
                cursor = ">"
                continue
            ids = []
            for entry_id, fields in entries:
                ids.append(entry_id)
                if fields is None:  # deleted while pending
                    continue
                self._take(fields.get("e"))
            # Acknowledged beside the next read, not before it: the next envelope waits for nothing.
            task = asyncio.get_running_loop().create_task(self._ack(key, ids))
            self._acks.add(task)
            task.add_done_callback(self._acks.discard)

    async def _ack(self, key: str, ids: list[str]) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(key, GROUP, *ids)
            pipe.xdel(key, *ids)
            await pipe.execute()
        except (rx.RedisError, *_DOWN) as exc:  # read again after a restart, and dropped then as seen
            log.debug("hub relay: acknowledging failed (%s)", type(exc).__name__)

    def _take(self, payload: str | None) -> None:
        try:
            envelope = json.loads(payload or "")
            eid = str(envelope["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("hub relay: an unreadable envelope was dropped")
            return
        if not self.seen.first_time(eid):
            self.duplicates += 1
            return
        self.received += 1
        try:
            self.handle(envelope)
        except Exception:
            log.exception("hub relay: handling an envelope failed")
