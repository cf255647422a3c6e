"""Per-room outbox: ordered sends with stable transaction ids, 429 handling, and burst merging."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.abc import KeyValue

from . import render

__all__ = ["Entry", "Outbox", "Sent", "TxnIds"]

log = logging.getLogger(__name__)

TXN_BLOCK = 1000  # transaction ids reserved per state write
MERGE_BACKLOG = 5  # consecutive queued messages that are merged even without a 429
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
ATTEMPTS = 8  # with BACKOFF: about 30 s of a homeserver that does not answer
LIMITED_WAITS = 30  # 429s waited out per entry (merging shortens the queue meanwhile)


class TxnIds:
    """Transaction ids unique across restarts: a random install prefix and a persisted counter.

    Counters are reserved in blocks, so a restart skips at most one block and never reuses an
    id that Synapse may still remember for this device.
    """

    def __init__(self, state: KeyValue, *, block: int = TXN_BLOCK) -> None:
        self.state = state
        self.block = block
        self.prefix = ""
        self.next = 0
        self.reserved = 0

    async def load(self) -> None:
        raw = await self.state.get("txn")
        data = json.loads(raw) if raw else {}
        self.prefix = data.get("prefix") or secrets.token_hex(6)
        self.next = self.reserved = int(data.get("reserved", 0))

    async def take(self) -> str:
        if self.next >= self.reserved:
            self.reserved = self.next + self.block
            await self.state.set("txn", json.dumps({"prefix": self.prefix, "reserved": self.reserved}))
        n = self.next
        self.next += 1
        return f"sb{self.prefix}.{n}"


@dataclasses.dataclass(slots=True, eq=False)
class Entry:
    """One queued write: a content to send (with its txn id, taken when first sent if empty), a typing state, or a ghost leaving."""

    content: dict[str, Any] | None = None
    thread: str | None = None
    txn: str = ""
    typing: bool | None = None
    sender: str | None = None  # ghost mode: the ghost user who sends it (None: the bot)
    leave: bool = False  # ghost mode: the ghost `sender` leaves the room (its chat ended)
    # A request with this txn id may have been stored: the content is frozen and retried as is.
    attempted: bool = False
    covers: int = 0  # a "not delivered" notice: how many lost stranger messages it tells about
    tries: int = 0  # sends that failed with a timeout, connection error or 5xx
    waits: int = 0  # 429 answers waited out

    @property
    def mergeable(self) -> bool:
        c = self.content
        return c is not None and not self.attempted and c.get("msgtype") == "m.text" and "_lines" in c


class Sent:
    """What a send attempt did."""

    OK = "ok"
    LIMITED = "limited"  # 429: not stored; retry after `retry_after`
    TRANSIENT = "transient"  # timeout, connection error, 5xx: maybe stored; retry with the same txn
    FATAL = "fatal"  # 4xx: will never work (not in the room, forbidden)

    def __init__(self, kind: str, retry_after: float = 0.0, error: str = "") -> None:
        self.kind = kind
        self.retry_after = retry_after
        self.error = error


SendFn = Callable[[str, Entry], Awaitable[Sent]]
Outcome = Callable[[str, Entry, Sent], Awaitable[None]]


class Outbox:
    """The writes of one Matrix room, sent one at a time in order by a task that lives while busy."""

    def __init__(
        self,
        room_id: str,
        send: SendFn,
        txn: TxnIds,
        budget: int,
        on_idle: Callable[[str], None],
        *,
        backlog: int = MERGE_BACKLOG,
        backoff: tuple[float, ...] = BACKOFF,
        attempts: int = ATTEMPTS,
        limited_waits: int = LIMITED_WAITS,
        on_sent: Outcome | None = None,
        on_given_up: Outcome | None = None,
    ) -> None:
        self.room_id = room_id
        self.backlog = backlog  # consecutive queued messages that are merged even without a 429
        self.backoff = backoff
        self.attempts = attempts  # tries of one entry against timeouts and 5xx before it is given up
        self.limited_waits = limited_waits  # 429s one entry waits out before it is given up
        self.on_sent = on_sent  # called after an entry was stored
        self.on_given_up = on_given_up  # called after an entry was given up (refused, or out of tries)
        self.send = send
        self.txn = txn
        self.budget = budget
        self.items: collections.deque[Entry] = collections.deque()
        self.task: asyncio.Task | None = None
        self.limited = False  # a 429 was seen and the backlog has not drained since
        self.merged = 0  # how many events were saved by merging (figures for tests and status)
        self.idle = asyncio.Event()
        self.idle.set()
        self._on_idle = on_idle
        self._head: Entry | None = None  # the entry being sent: never replaced under the sender

    def put(self, entry: Entry) -> None:
        """Queue a write; consecutive typing states collapse into the last one."""
        if entry.typing is not None and self.items:
            last = self.items[-1]
            if last.typing is not None and last.sender == entry.sender and last is not self._head:
                self.items[-1] = entry
                self._kick()
                return
        self.items.append(entry)
        self._kick()

    def _kick(self) -> None:
        self.idle.clear()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"matrix outbox {self.room_id}")

    async def _run(self) -> None:
        failures = 0  # consecutive failed sends over entries: the backoff grows while the server is away
        try:
            while self.items:
                entry = await self._next()
                self._head = entry
                if entry.content is not None and not entry.txn:
                    entry.txn = await self.txn.take()
                result = await self.send(self.room_id, entry)
                if result.kind == Sent.OK:
                    failures = 0
                    self._pop(entry)
                    if self.on_sent is not None:
                        await self.on_sent(self.room_id, entry)
                    continue
                if entry.typing is not None:
                    self._pop(entry)  # typing is best effort: a stale state is worse than none
                    continue
                if result.kind == Sent.LIMITED and entry.waits < self.limited_waits:
                    entry.waits += 1
                    self.limited = True
                    log.info("room outbox: rate limited, waiting %.1f s", result.retry_after)
                    await asyncio.sleep(max(result.retry_after, 0.05))
                    continue
                if result.kind == Sent.TRANSIENT:
                    entry.attempted = True  # same txn id next time: the server deduplicates
                    entry.tries += 1
                    if entry.tries < self.attempts:
                        delay = self.backoff[min(failures, len(self.backoff) - 1)]
                        failures += 1
                        log.warning("room outbox: send failed (%s); retrying in %.1f s", result.error, delay)
                        await asyncio.sleep(delay)
                        continue
                log.warning("room outbox: given up (%s: %s)", result.kind, result.error)
                self._pop(entry)
                self._head = None
                if self.on_given_up is not None:
                    await self.on_given_up(self.room_id, entry, result)
        finally:
            self._head = None
            if not self.items:
                self.limited = False
                self.idle.set()
                self._on_idle(self.room_id)

    def sending(self, entry: Entry) -> bool:
        """True while `entry` is the one being sent."""
        return entry is self._head

    def put_next(self, entry: Entry) -> None:
        """Queue a write before everything waiting (after the entry being sent, if any)."""
        at = 1 if self.items and self.items[0] is self._head else 0
        self.items.insert(at, entry)
        self._kick()

    def _pop(self, entry: Entry) -> None:
        if self.items and self.items[0] is entry:
            self.items.popleft()

    async def _next(self) -> Entry:
        """The head entry; when rate limited (or far behind) consecutive messages merge into one."""
        head = self.items[0]
        if not head.mergeable:
            return head
        run = [head]
        total = render.size(head.content)
        for entry in list(self.items)[1:]:
            if not entry.mergeable or entry.thread != head.thread or entry.sender != head.sender:
                break
            grown = total + render.size(entry.content)
            if grown > self.budget:
                break
            run.append(entry)
            total = grown
        if len(run) == 1 or not (self.limited or len(run) >= self.backlog):
            return head
        merged = Entry(
            content=render.merge([e.content for e in run]),
            thread=head.thread,
            txn=await self.txn.take(),
            sender=head.sender,
            waits=head.waits,  # the 429s already waited out still count
        )
        for _ in run:
            self.items.popleft()
        self.items.appendleft(merged)
        self.merged += len(run) - 1
        return merged

    async def drain(self) -> None:
        """Wait until everything queued was sent (or given up)."""
        await self.idle.wait()

    def cancel(self) -> None:
        """Drop what is queued and stop sending (safe to call from the outbox's own task)."""
        self.items.clear()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.idle.set()
