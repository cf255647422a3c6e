"""One room's ordered send queue, run by its own task: merge when slowed, bounded retries, typing pace.

The one outbox of every platform (and of backends that queue lines). A platform declares its numbers
in an `OutboxPolicy`, implements `Sender` (the REST calls for one room; both in `bridge.delivery`,
with `Item`, `Permanent`, `RateLimited` and the merge rule) and keeps its rooms' outboxes in an
`Outboxes` registry, which drops an outbox as soon as it is idle.

    policy = OutboxPolicy(platform="discord", retry=Backoff(0.5, cap=2.0, attempts=4), slow_after=1.0, typing_every=8.0)
    boxes = Outboxes(sender, policy, metrics=metrics, on_given_up=tell_both_sides)
    box = boxes.get(room)          # made on first use; dropped (on_drop(room)) once idle
    box.put_text("Stranger 1", "hi")   # mergeable stranger text
    box.put_payload(notice)        # anything else the sender knows how to post, in order
    box.put_call(archive)          # an ordered side effect (archive after the last notice)
    box.typing_start(label); box.typing_stop(label)
    await boxes.drain()            # at shutdown

Behaviour, the same for everyone:
- Items leave one at a time, in order, from the outbox's own task: a slow room never holds up others.
- Merging: after a send that took at least `slow_after` seconds or was rate limited (or when
  `merge_backlog` texts wait), consecutive waiting texts of one speaker (and `group`) become one `Item` whose
  `count` says how many; `Item.marker` is the one visible marker text (`MERGE_MARKER`) the renderer
  shows with it. Nothing is merged beyond `merge_limit` characters, so a merged text is never cut.
- Retries follow the policy's `retry` (a `bridge.backoff.Backoff`): `Permanent` gives an item up
  at once; `RateLimited(after)` waits what the server asked (bounded by the backoff's
  `max_retry_after`; at most `max_rate_waits` times in a row) and retries; any other exception is
  transient: retried after the backoff's delays, up to its `attempts`, with the same `Item.key`
  and `Item.maybe_stored` set, so the sender can de-duplicate (a Discord nonce, a Matrix
  transaction id, a read-back). Then the item is given up.
- Counted through `Metrics.delivery`: every attempt (`deliver_attempts{platform}`), every retry
  and every item given up (`deliver_retries` / `deliver_failures{platform, reason}`, reason
  "permanent", "rate_limited" or "transient").
- Given up: passed to `on_given_up(box, item, reason)` so the platform can show one "not
  delivered" notice, e.g. with `box.put_payload(notice, notify=False, first=True)` (items put with
  `notify=False`, such as that notice itself, are given up silently).
- Typing is state, never a queue item (`bridge.pace.TypingPace`): while anyone types, the
  sender's `send_typing(room, True)` is called at most once per `typing_every` seconds (and again
  each period as a refresh); with `typing_off` a `send_typing(room, False)` follows when the last
  typist stops.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Any

from .delivery import Item, OutboxPolicy, Permanent, RateLimited, Sender, merge_waiting
from .metrics import Metrics
from .pace import TypingPace

__all__ = ["GivenUp", "Outbox", "Outboxes"]

log = logging.getLogger(__name__)

#: on_given_up(outbox, item, reason): reason is "permanent", "rate_limited" or "transient".
GivenUp = Callable[["Outbox", Item, str], None]


class Outbox:
    """The writes of one room, sent in order by a task that lives while there is work."""

    def __init__(
        self,
        room: Hashable,
        sender: Sender,
        policy: OutboxPolicy,
        *,
        metrics: Metrics | None = None,
        on_given_up: GivenUp | None = None,
        on_idle: Callable[[Outbox], None] | None = None,
        on_sent: Callable[[float], None] | None = None,
    ) -> None:
        self.room = room
        self.sender = sender
        self.policy = policy
        self.metrics = metrics  # counts deliver_attempts / deliver_retries / deliver_failures
        self.on_given_up = on_given_up
        self.on_idle = on_idle
        self.on_sent = on_sent  # bench hook: seconds from queued to sent
        self.queue: collections.deque[Item] = collections.deque()
        self.slow = False
        self.limited = False  # a RateLimited answer was seen since the last send
        self.task: asyncio.Task | None = None
        self.sending: Item | None = None
        self._busy = False  # something is queued or being sent
        self._idle: asyncio.Event | None = None  # made when first asked for (most outboxes live for one message)
        self._typing: TypingPace | None = None  # made at the first typing (most outboxes live for one message)
        self._idle_timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.merged = 0  # messages folded into another (with the visible marker)
        self.failed = 0  # items given up

    # ---- queueing ----------------------------------------------------------------------------

    def put_text(self, label: str | None, text: str, *, group: Hashable = None, key: str | None = None) -> None:
        """Queue stranger text (mergeable with the texts of the same speaker and group next to it).
        `key`: its idempotency key when the sender has its own kind ready (a Matrix transaction id)."""
        if key is None:
            self._put(Item("text", label=label, text=text, group=group))
        else:
            self._put(Item("text", label=label, text=text, group=group, key=key))

    def put_payload(self, payload: Any, *, notify: bool = True, first: bool = False) -> None:
        """Queue anything else the sender posts (a notice); never merged. `first`: before what waits
        (a "not delivered" notice from the given-up hook shows where the lost message would have)."""
        self._put(Item("payload", payload=payload, notify=notify), first=first)

    def put_call(self, call: Callable[[], Awaitable[None]]) -> None:
        """Queue a side effect that must happen after what is already queued."""
        self._put(Item("call", call=call, notify=False))

    def _put(self, item: Item, *, first: bool = False) -> None:
        if self.closed:
            return
        if first:
            self.queue.appendleft(item)
        else:
            self.queue.append(item)
        self._busy = True
        if self._idle is not None:
            self._idle.clear()
        if self._idle_timer is not None:
            self._cancel_idle_timer()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"outbox {self.room}")

    @property
    def typing(self) -> TypingPace:
        """The room's typing pace (made at first use)."""
        pace = self._typing
        if pace is None:
            policy = self.policy
            pace = self._typing = TypingPace(self.room, self._send_typing, policy.typing_every, off=policy.typing_off,
                                             on_quiet=self._check_idle)
        return pace

    @property
    def idle(self) -> asyncio.Event:
        """Set while nothing is queued or being sent."""
        event = self._idle
        if event is None:
            event = self._idle = asyncio.Event()
            if not self._busy:
                event.set()
        return event

    @property
    def depth(self) -> int:
        """Items waiting (the one being sent included until it is done)."""
        return len(self.queue) + (self.sending is not None)

    async def drain(self) -> None:
        """Wait until everything queued so far was sent or given up."""
        await self.idle.wait()

    def close(self) -> None:
        """Stop sending and drop what waits (safe from the outbox's own task)."""
        self.closed = True
        self.queue.clear()
        if self._typing is not None:
            self._typing.close()
        self._cancel_idle_timer()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self._set_idle()

    # ---- sending -----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self.queue:
                item = self.queue.popleft()
                mergeable = self.queue and (self.slow or self.policy.merge_backlog is not None)
                if mergeable and item.kind == "text" and item.attempts == 0:
                    merged = merge_waiting(item, self.queue, self.policy, self.slow)
                    if merged is not item:
                        self.merged += merged.count - 1
                        item = merged
                began = time.monotonic()
                self.limited = False
                self.sending = item
                try:
                    await self._send(item)
                finally:
                    self.sending = None
                self.slow = self.limited or time.monotonic() - began >= self.policy.slow_after
        finally:
            if not self.queue:
                self._busy = False  # (_set_idle, written out: after every item)
                if self._idle is not None:
                    self._idle.set()
                self._check_idle()

    def _set_idle(self) -> None:
        self._busy = False
        if self._idle is not None:
            self._idle.set()

    async def _send(self, item: Item) -> None:
        policy = self.policy
        retrying = None  # made at the first transient failure (most items go out at once)
        waits = 0
        while True:
            item.attempts += 1
            try:
                if item.kind == "text":  # each kind's call written out: every item passes here
                    await self.sender.send_text(self.room, item)
                elif item.kind == "payload":
                    await self.sender.send_payload(self.room, item)
                elif item.call is not None:
                    await item.call()
            except asyncio.CancelledError:
                raise
            except Permanent as exc:
                self._give_up(item, "permanent", exc)
                return
            except RateLimited as exc:
                self.limited = True
                waits += 1
                if waits > policy.max_rate_waits:
                    self._give_up(item, "rate_limited", exc)
                    return
                self._count("retry", "rate_limited")
                await asyncio.sleep(policy.retry.delay(waits, exc.retry_after))
                continue
            except Exception as exc:  # transient: maybe stored; retried with the same key
                item.maybe_stored = True
                if retrying is None:
                    retrying = policy.retry.retrying()
                delay = retrying.failed()
                if delay is None:
                    self._give_up(item, "transient", exc)
                    return
                self._count("retry", "transient")
                log.warning("room %s: sending %s failed (%s); retrying", self.room, item.kind, type(exc).__name__)
                await asyncio.sleep(delay)
                continue
            if self.metrics is not None:
                self.metrics.delivery(policy.platform, "ok")
            if self.on_sent is not None:
                self.on_sent(time.perf_counter() - item.queued)
            return

    async def _send_typing(self, on: bool) -> None:
        await self.sender.send_typing(self.room, on)

    def _give_up(self, item: Item, reason: str, exc: BaseException) -> None:
        self.failed += 1
        self._count("failed", reason)
        log.warning("room %s: %s given up after %d attempts (%s: %s)", self.room, item.kind, item.attempts, reason, type(exc).__name__)
        if item.notify and self.on_given_up is not None:
            try:
                self.on_given_up(self, item, reason)
            except Exception:
                log.exception("room %s: the given-up hook failed", self.room)

    def _count(self, outcome: str, reason: str = "") -> None:
        if self.metrics is not None:
            self.metrics.delivery(self.policy.platform, outcome, reason)

    # ---- typing ------------------------------------------------------------------------------

    def typing_start(self, label: str | None = None) -> None:
        """`label` types: show it now (within the pace) and keep it shown while it lasts."""
        if not self.closed:
            self._cancel_idle_timer()
            self.typing.start(label)

    def typing_stop(self, label: str | None = None, *, everyone: bool = False) -> None:
        """`label` (or everyone) stopped typing; a message from them stops it too (the caller says so)."""
        pace = self._typing
        if pace is not None:
            pace.stop(label, everyone=everyone)
        if pace is None or not pace.active:
            self.check_idle_soon()

    # ---- idleness ----------------------------------------------------------------------------

    @property
    def is_idle(self) -> bool:
        """Nothing queued, nobody typing, no typing call due."""
        return not self._busy and not self.queue and (self._typing is None or not self._typing.active)

    def check_idle_soon(self) -> None:
        """Look at idleness once the caller's synchronous puts are done (never drop under a caller)."""
        asyncio.get_running_loop().call_soon(self._check_idle)

    def _check_idle(self) -> None:
        """Tell the owner once the outbox is idle and its typing pace no longer matters."""
        if self.on_idle is None or self.closed or self._busy or self.queue:
            return
        if self._typing is not None and self._typing.active:
            return  # is_idle, written out: called after every item and at every outbox made
        wait = self._typing.next_allowed() if self._typing is not None else 0.0
        if wait > 0:  # a new outbox now would call typing again too early: keep this one a while
            if self._idle_timer is None:
                self._idle_timer = asyncio.get_running_loop().call_later(wait, self._idle_timer_fired)
            return
        self.on_idle(self)

    def _idle_timer_fired(self) -> None:
        self._idle_timer = None
        self._check_idle()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


class Outboxes:
    """The outboxes of one platform, one per room: made on first use, dropped as soon as idle."""

    def __init__(
        self,
        sender: Sender,
        policy: OutboxPolicy,
        *,
        metrics: Metrics | None = None,
        on_given_up: GivenUp | None = None,
        on_sent: Callable[[float], None] | None = None,
        on_drop: Callable[[Hashable], None] | None = None,
    ) -> None:
        self.sender = sender
        self.policy = policy
        self.metrics = metrics
        self.on_given_up = on_given_up
        self.on_sent = on_sent
        self.on_drop = on_drop  # a room's outbox was dropped (idle or discarded): the owner may forget it too
        self._boxes: dict[Hashable, Outbox] = {}

    def get(self, room: Hashable, *, drop_unused: bool = True) -> Outbox:
        """The room's outbox, made if it has none. `drop_unused=False`: the caller queues into it now,
        or else calls its `check_idle_soon` (it saves a loop callback per new outbox)."""
        box = self._boxes.get(room)
        if box is None:
            box = self._boxes[room] = Outbox(
                room,
                self.sender,
                self.policy,
                metrics=self.metrics,
                on_given_up=self.on_given_up,
                on_idle=self._drop,
                on_sent=self.on_sent,
            )
            if drop_unused:
                box.check_idle_soon()  # dropped again if the caller queues nothing
        return box

    def find(self, room: Hashable) -> Outbox | None:
        """The room's outbox if it is busy, else None."""
        return self._boxes.get(room)

    def _drop(self, box: Outbox) -> None:
        if self._boxes.get(box.room) is box:
            del self._boxes[box.room]
            if self.on_drop is not None:
                self.on_drop(box.room)

    def __contains__(self, room: Hashable) -> bool:
        return room in self._boxes

    def __len__(self) -> int:
        return len(self._boxes)

    def __iter__(self) -> Iterator[Outbox]:
        return iter(list(self._boxes.values()))

    def depth(self) -> int:
        """Items waiting over every room (a gauge for metrics)."""
        return sum(box.depth for box in self._boxes.values())

    async def drain(self) -> None:
        """Wait until every room's queue is sent or given up."""
        await asyncio.gather(*(box.drain() for box in list(self._boxes.values())), return_exceptions=True)

    def discard(self, room: Hashable) -> None:
        """Close and forget one room's outbox (the room is gone)."""
        box = self._boxes.pop(room, None)
        if box is not None:
            box.close()
            if self.on_drop is not None:
                self.on_drop(room)

    def close(self) -> None:
        """Close every outbox (at shutdown, after drain)."""
        for box in list(self._boxes.values()):
            box.close()
        self._boxes.clear()
