"""One thread's ordered send queue: merges stranger bursts after a slow (rate-limited) send, paces typing."""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from .render import MERGE_MARKER

log = logging.getLogger(__name__)

__all__ = ["Outbox", "Permanent", "Sender", "TYPING_EVERY"]

TYPING_EVERY = 8.0  # seconds: Discord shows typing for about 10 s; never call more often than this
SLOW_SEND = 1.0  # seconds: a send this slow was rate-limited or retried; merge what queued meanwhile
ATTEMPTS = 4  # sends of one item (the same nonce each time) before it is given up with a log line
BACKOFF = (0.5, 1.0, 2.0)


class Permanent(Exception):
    """A send that can never succeed (thread deleted or locked): do not retry it."""


class Sender(Protocol):
    """What the platform gives an outbox: the REST calls for one thread."""

    async def post_text(self, thread: int, label: str | None, text: str, extra: str | None, nonce: str) -> None: ...

    async def post_payload(self, thread: int, payload: dict, nonce: str) -> None: ...

    async def post_typing(self, thread: int) -> None: ...


@dataclass(slots=True)
class _Item:
    kind: str  # "text" | "payload" | "call"
    label: str | None = None
    text: str = ""
    payload: dict | None = None
    call: Callable[[], Awaitable[None]] | None = None
    count: int = 1  # messages merged into this one
    nonce: str = field(default_factory=lambda: str(random.getrandbits(62)))
    queued: float = field(default_factory=time.perf_counter)


class Outbox:
    """Sends one thread's events in order from its own task, so a slow thread never holds up others."""

    def __init__(self, thread: int, sender: Sender, *, on_sent: Callable[[float], None] | None = None) -> None:
        self.thread = thread
        self.sender = sender
        self.on_sent = on_sent  # bench hook: seconds from queued to request done
        self.queue: collections.deque[_Item] = collections.deque()
        self.slow = False
        self.task: asyncio.Task | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        self.typing: set[str | None] = set()
        self.typing_task: asyncio.Task | None = None
        self.last_typing = -TYPING_EVERY
        self.merged = 0  # messages folded into another (with a visible marker), for tests and metrics
        self.failed = 0

    # ---- queueing ----------------------------------------------------------------------------

    def put_text(self, label: str | None, text: str) -> None:
        self._put(_Item("text", label=label, text=text))

    def put_payload(self, payload: dict) -> None:
        self._put(_Item("payload", payload=payload))

    def put_call(self, call: Callable[[], Awaitable[None]]) -> None:
        self._put(_Item("call", call=call))

    def _put(self, item: _Item) -> None:
        self.queue.append(item)
        self.idle.clear()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"discord outbox {self.thread}")

    async def drain(self) -> None:
        """Wait until everything queued so far was sent (or given up)."""
        await self.idle.wait()

    def close(self) -> None:
        for task in (self.task, self.typing_task):
            if task is not None:
                task.cancel()

    # ---- sending -----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self.queue:
                item = self.queue.popleft()
                if item.kind == "text" and self.slow:
                    item = self._merge(item)
                began = time.monotonic()
                await self._send(item)
                self.slow = time.monotonic() - began >= SLOW_SEND
        finally:
            if not self.queue:
                self.idle.set()

    def _merge(self, first: _Item) -> _Item:
        # Only consecutive texts of the same speaker merge: through a webhook each speaker has a name.
        texts = [first.text]
        while self.queue and self.queue[0].kind == "text" and self.queue[0].label == first.label:
            texts.append(self.queue.popleft().text)
        if len(texts) == 1:
            return first
        self.merged += len(texts) - 1
        return _Item("text", label=first.label, text="\n".join(texts), nonce=first.nonce, queued=first.queued, count=len(texts))

    async def _send(self, item: _Item) -> None:
        for attempt in range(ATTEMPTS):
            try:
                if item.kind == "text":
                    extra = MERGE_MARKER.format(n=item.count, who=item.label or "Stranger") if item.count > 1 else None
                    await self.sender.post_text(self.thread, item.label, item.text, extra, item.nonce)
                elif item.kind == "payload":
                    assert item.payload is not None
                    await self.sender.post_payload(self.thread, item.payload, item.nonce)
                else:
                    assert item.call is not None
                    await item.call()
                if self.on_sent is not None:
                    self.on_sent(time.perf_counter() - item.queued)
                return
            except asyncio.CancelledError:
                raise
            except Permanent as exc:
                log.warning("thread %s: %s not sent: %s", self.thread, item.kind, exc)
                break
            except Exception as exc:  # transient: retried with the same nonce, so never duplicated
                if attempt + 1 == ATTEMPTS:
                    log.error("thread %s: %s not sent after %d attempts: %r", self.thread, item.kind, ATTEMPTS, exc)
                    break
                log.warning("thread %s: sending %s failed (%r); retrying", self.thread, item.kind, exc)
                await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
        self.failed += 1

    # ---- typing ------------------------------------------------------------------------------

    def typing_start(self, label: str | None) -> None:
        """A stranger types: show the indicator now and keep it up, one call per TYPING_EVERY at most."""
        self.typing.add(label)
        if self.typing_task is None or self.typing_task.done():
            self.typing_task = asyncio.get_running_loop().create_task(self._typing_loop())

    def typing_stop(self, label: str | None = None, *, everyone: bool = False) -> None:
        if everyone:
            self.typing.clear()
        else:
            self.typing.discard(label)
        if not self.typing and self.typing_task is not None:
            self.typing_task.cancel()
            self.typing_task = None

    async def _typing_loop(self) -> None:
        while self.typing:
            wait = self.last_typing + TYPING_EVERY - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self.last_typing = time.monotonic()
            try:
                await self.sender.post_typing(self.thread)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the indicator is cosmetic: log and keep the pace
                log.info("thread %s: typing call failed: %r", self.thread, exc)
