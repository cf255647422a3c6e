"""Forwarded actions applied once on their owner: numbered by their forwarder, recorded as applied in Redis first, acknowledged in the stream after."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis import exceptions as rx

from bridge.backoff import Backoff
from plugins.hub.stream import StreamRelay

__all__ = ["DOWN", "Once", "WebRelay", "redis_ms"]

log = logging.getLogger(__name__)

DOWN = (rx.RedisError, OSError, asyncio.TimeoutError)  # Redis did not do what was asked (unreachable, refused)
MARKING = Backoff(0.05, cap=2.0, attempts=None, jitter=0.3)  # retrying to record forwarded actions as applied


async def redis_ms(redis: Any) -> int:
    """Redis's clock, in ms (one clock for every instance)."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


class WebRelay(StreamRelay):
    """The hub's stream relay on the web tier's own per-instance streams (`<prefix>web:stream:<instance>`);
    what it read is acknowledged once `settle` says the forwarded actions read so far took effect."""

    def __init__(self, *args: Any, settle: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settle = settle

    def key(self, instance: str) -> str:
        return f"{self.prefix}web:stream:{instance}"

    async def _ack(self, key: str, ids: list[str]) -> None:
        await self.settle()  # acknowledged before being applied, an action lost with a killed owner would be lost for good
        await super()._ack(key, ids)


class Once:
    """Forwarded actions are numbered (this run's epoch, a counter) by the instance that forwards
    them; the owner records per forwarder the newest it applied, in the hash `key`, before applying,
    so an action the stream delivers again (after the owner was killed before acknowledging it)
    takes effect once, even across the owner's restart. Each forwarder's actions come in the order
    it wrote them (one stream per owner), so the newest number is all there is to remember."""

    def __init__(self, redis: Any, key: str, handle: Callable[[dict[str, Any]], None]) -> None:
        self.redis = redis
        self.key = key
        self.handle = handle
        self.epoch = 0
        self.forwarded = 0
        self.applied: dict[str, tuple[int, int]] = {}  # forwarder -> the newest (epoch, number) applied here
        self.replayed = 0  # forwarded actions delivered again and dropped
        self._actions: list[dict[str, Any]] = []  # forwarded actions read, not yet recorded and applied
        self._more = asyncio.Event()
        self._read_actions = self._done_actions = 0  # forwarded actions read, and recorded and applied (or dropped)
        self._progress = asyncio.Event()
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        # Redis's clock when this run began: later than any earlier run's, even after Redis lost its data
        self.epoch = await redis_ms(self.redis)
        for sender, mark in (await self.redis.hgetall(self.key)).items():
            epoch, _, number = mark.partition(":")
            self.applied[sender] = (int(epoch), int(number))
        self._worker = asyncio.get_running_loop().create_task(self._apply_forwarded(), name="web forwarded actions")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    def number(self) -> list[int]:
        """The number of an action this instance forwards now."""
        self.forwarded += 1
        return [self.epoch, self.forwarded]

    def take(self, envelope: dict[str, Any]) -> None:
        """A forwarded action read from this instance's stream: applied in order, once."""
        self._actions.append(envelope)
        self._read_actions += 1
        self._more.set()

    async def _apply_forwarded(self) -> None:
        """Apply forwarded actions in the order they were read, each once: the newest number of each
        forwarder is recorded in Redis before the batch is applied (a restart between the two loses
        that batch rather than applying it twice; the stream's redelivery is what it guards against)."""
        retrying = MARKING.retrying()
        while True:
            if not self._actions:
                self._more.clear()
                await self._more.wait()
                continue
            batch, fresh, marks = self._actions, [], {}
            self._actions = []
            for envelope in batch:
                mark = _mark(envelope)
                sender = str(envelope.get("r"))
                if mark is not None:
                    if mark <= marks.get(sender, self.applied.get(sender, (0, 0))):
                        self.replayed += 1
                        log.info("web: a forwarded action delivered again was dropped")
                        continue
                    marks[sender] = mark
                fresh.append(envelope)
            if marks or any("u" in envelope for envelope in fresh):
                try:
                    if any("u" in envelope for envelope in fresh):
                        now = await redis_ms(self.redis)
                        late = [e for e in fresh if int(e.get("u", now)) < now]
                        if late:
                            log.info("web: %d forwarded actions came after their askers were told they failed", len(late))
                            fresh = [e for e in fresh if e not in late]
                    if marks:
                        await self.redis.hset(self.key, mapping={s: f"{e}:{n}" for s, (e, n) in marks.items()})
                except DOWN as exc:
                    log.warning("web: recording forwarded actions failed (%s); retrying", type(exc).__name__)
                    self._actions[:0] = batch
                    await retrying.wait()
                    continue
                retrying.succeeded()
                self.applied.update(marks)
            for envelope in fresh:
                try:
                    self.handle(envelope)
                except Exception:
                    log.exception("web: a forwarded action failed")
            self._done_actions += len(batch)
            self._progress.set()

    async def settle(self) -> None:
        """Wait until every forwarded action read so far was recorded and applied (or dropped)."""
        target = self._read_actions
        while self._done_actions < target:
            self._progress.clear()
            await self._progress.wait()


def _mark(envelope: dict[str, Any]) -> tuple[int, int] | None:
    """A forwarded action's (epoch, number), or None (an instance of an older version sends none)."""
    try:
        epoch, number = envelope["n"]
        return int(epoch), int(number)
    except (KeyError, TypeError, ValueError):
        return None
