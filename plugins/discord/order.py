"""A thread's user events kept in order while a picture downloads, and the pace of a user's reactions."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from bridge.bucket import TokenBucket
from bridge.dedupe import SeenIds

__all__ = ["InOrder", "REACTIONS_BURST", "REACTIONS_PER_SECOND", "REACTIONS_WAITING", "ReactionPace"]

log = logging.getLogger(__name__)

REACTIONS_PER_SECOND = 1.0  # reaction changes one thread hands on per second, sustained (the core allows more)
REACTIONS_BURST = 6
REACTIONS_WAITING = 64  # distinct (message, emoji) changes held back per thread; more are dropped


class _Call:
    __slots__ = ("action",)

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action


class InOrder:
    """Hands a thread's events to `submit` in the order they happened: while an event waits for
    something (a picture download), those after it wait behind it. Nothing else waits."""

    def __init__(self, submit: Callable[[int, Any], None]) -> None:
        self.submit = submit
        self.waiting: dict[int, collections.deque[Any]] = {}
        self.tasks: dict[int, asyncio.Task] = {}

    def now(self, tid: int, event: Any) -> None:
        """Submit `event` now, or after what waits in this thread."""
        queue = self.waiting.get(tid)
        if queue is None:
            self.submit(tid, event)
        else:
            queue.append(event)

    def call(self, tid: int, action: Callable[[], None]) -> None:
        """Run `action` now, or in its place after what waits in this thread (a notice about a
        later message stays after the notices about earlier ones)."""
        queue = self.waiting.get(tid)
        if queue is None:
            action()
        else:
            queue.append(_Call(action))

    def later(self, tid: int, produce: Coroutine[Any, Any, Any]) -> None:
        """Submit what `produce` returns (None: nothing) when it is done, in its place."""
        self.waiting.setdefault(tid, collections.deque()).append(produce)
        if tid not in self.tasks:
            self.tasks[tid] = asyncio.get_running_loop().create_task(self._run(tid), name=f"discord in-order {tid}")

    async def _run(self, tid: int) -> None:
        queue = self.waiting[tid]
        try:
            while queue:
                entry = queue.popleft()
                if asyncio.iscoroutine(entry):
                    try:
                        entry = await entry
                    except Exception:
                        log.exception("thread %s: preparing a user message failed", tid)
                        continue
                if isinstance(entry, _Call):
                    entry.action()
                elif entry is not None:
                    self.submit(tid, entry)
        finally:
            for entry in queue:
                if asyncio.iscoroutine(entry):
                    entry.close()
            self.waiting.pop(tid, None)
            self.tasks.pop(tid, None)

    def release(self, tid: int) -> None:
        task = self.tasks.get(tid)
        if task is not None:
            task.cancel()


class ReactionPace:
    """A user's reaction changes, at most REACTIONS_PER_SECOND per thread (after a burst); faster
    ones wait, and only the latest state of each (message, emoji) is handed on, so toggling a
    reaction 100 times a second costs a few events and still ends in the state the user left."""

    def __init__(self, hand_on: Callable[[int, str, str, bool], None], *, rate: float = REACTIONS_PER_SECOND,
                 burst: int = REACTIONS_BURST) -> None:
        self.hand_on = hand_on
        self.rate = rate
        self.burst = burst
        self.buckets: dict[int, TokenBucket] = {}
        self.waiting: dict[int, collections.OrderedDict[tuple[str, str], bool]] = {}
        self.timers: dict[int, asyncio.TimerHandle] = {}
        self.sent: SeenIds[tuple[int, str, str], bool] = SeenIds(4096)  # the last state handed on

    def put(self, tid: int, ref: str, emoji: str, add: bool) -> None:
        bucket = self.buckets.setdefault(tid, TokenBucket(self.rate, self.burst))
        waiting = self.waiting.setdefault(tid, collections.OrderedDict())
        key = (ref, emoji)
        if not waiting and bucket.allow():
            self._hand_on(tid, key, add)
            return
        if key not in waiting and len(waiting) >= REACTIONS_WAITING:
            log.debug("thread %s: too many reaction changes waiting; one dropped", tid)
            return
        waiting[key] = add
        self._schedule(tid, bucket)

    def _hand_on(self, tid: int, key: tuple[str, str], add: bool) -> None:
        if self.sent.get((tid, *key)) is add:
            return  # toggled back to what the other side already shows
        self.sent.remember((tid, *key), add)
        self.hand_on(tid, key[0], key[1], add)

    def _schedule(self, tid: int, bucket: TokenBucket) -> None:
        if tid not in self.timers:
            loop = asyncio.get_running_loop()
            self.timers[tid] = loop.call_later(bucket.wait_time(), self._fire, tid)

    def _fire(self, tid: int) -> None:
        self.timers.pop(tid, None)
        bucket = self.buckets.get(tid)
        waiting = self.waiting.get(tid)
        if bucket is None or not waiting:
            return
        while waiting and bucket.allow():
            key, add = waiting.popitem(last=False)
            self._hand_on(tid, key, add)
        if waiting:
            self._schedule(tid, bucket)

    def release(self, tid: int) -> None:
        timer = self.timers.pop(tid, None)
        if timer is not None:
            timer.cancel()
        self.buckets.pop(tid, None)
        self.waiting.pop(tid, None)
