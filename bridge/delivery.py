"""What an outbox sends and how: its items, a platform's policy, the `Sender` contract, the merge rule.

Data and pure rules only; `bridge.outbox` runs them (one task per room). The merge rule: after a
slowed send (or when `merge_backlog` texts wait), consecutive waiting texts of one speaker and
`group` become one `Item` whose `count` says how many and whose `marker` (`MERGE_MARKER`) the
renderer shows with it; nothing is merged beyond `merge_limit` characters.
"""

from __future__ import annotations

import collections
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .backoff import Backoff

__all__ = [
    "Item",
    "MERGE_MARKER",
    "OutboxPolicy",
    "Permanent",
    "RateLimited",
    "Sender",
    "merge_marker",
    "merge_waiting",
]

# Idempotency keys: unique per process (a counter) and across processes and restarts (a random
# prefix read once), with no system call per item (secrets.token_hex was one per queued write).
_KEY_PREFIX = os.urandom(4).hex()
_KEY_COUNTER = itertools.count()


def _new_key() -> str:
    """Sixteen hex digits, never the same twice in this process."""
    return f"{_KEY_PREFIX}{next(_KEY_COUNTER) & 0xFFFFFFFF:08x}"


#: The one text that says messages were merged; each renderer decides only how it looks.
MERGE_MARKER = "{n} messages from {who} were merged into one while delivery was slowed down."


def merge_marker(n: int, who: str | None) -> str:
    """The merge marker for `n` messages of one speaker (None: the only stranger)."""
    return MERGE_MARKER.format(n=n, who=who or "Stranger")


class Permanent(Exception):
    """A send that can never succeed (room gone, locked, forbidden): given up at once."""


class RateLimited(Exception):
    """The server asked to wait `retry_after` seconds; nothing was stored, so it is simply retried."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.2f} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """A platform's numbers for its outboxes (data only: the mechanism is this module)."""

    platform: str  # the label of every metric
    retry: Backoff = Backoff(0.5, cap=2.0, attempts=4)  # transient failures: delays and attempts (first included)
    slow_after: float = 1.0  # a send this slow (seconds) means the room is slowed: merge what waits
    merge_backlog: int | None = None  # merge when this many texts of one speaker wait, even if not slowed
    merge_limit: int = 1800  # characters one merged text may hold (the renderer's one-message budget)
    typing_every: float = 8.0  # least seconds between two typing calls; also the refresh period
    typing_off: bool = False  # the platform has a "stopped typing" call (Discord has none)
    max_rate_waits: int = 20  # RateLimited answers in a row before an item is given up


@dataclass(slots=True, eq=False)
class Item:
    """One queued write. The sender reads it and may keep its own bookkeeping in `memo`."""

    kind: str  # "text" | "payload" | "call"
    label: str | None = None  # text: the speaker (None: the only stranger)
    group: Hashable = None  # text: only texts of one group merge (e.g. a Matrix thread inside the room)
    text: str = ""
    count: int = 1  # texts merged into this one
    payload: Any = None  # payload: the platform's own data (a notice, an event)
    call: Callable[[], Awaitable[None]] | None = None
    notify: bool = True  # False: giving it up tells nobody (the "not delivered" notice itself)
    # Kept across retries: an idempotency key (a sender that needs its own kind, such as a Matrix
    # transaction id, replaces it before its first attempt, when `attempts` is 0).
    key: str = field(default_factory=_new_key)
    attempts: int = 0  # attempts started so far
    maybe_stored: bool = False  # an earlier attempt failed in a way that may have stored it
    memo: dict[str, Any] = field(default_factory=dict)  # the sender's own notes across retries (parts shown, ...)
    queued: float = field(default_factory=time.perf_counter)

    @property
    def marker(self) -> str | None:
        """The visible merge marker for this text, or None when it is one message."""
        return merge_marker(self.count, self.label) if self.count > 1 else None


class Sender(Protocol):
    """What a platform implements for its outboxes: the calls that show things in one room.

    Raise `Permanent` for what can never work, `RateLimited` to be asked again later, anything
    else for a transient failure (retried with the same `item.key`).
    """

    async def send_text(self, room: Any, item: Item) -> None: ...

    async def send_payload(self, room: Any, item: Item) -> None: ...

    async def send_typing(self, room: Any, on: bool) -> None: ...


def merge_waiting(first: Item, queue: collections.deque[Item], policy: OutboxPolicy, slow: bool) -> Item:
    """When slowed (or far behind), fold the texts of the same speaker that wait behind `first`.

    The folded texts leave `queue`; the answer is `first` itself when nothing was folded."""
    if not slow:
        backlog = policy.merge_backlog
        if backlog is None or _run_length(first, queue) < backlog:
            return first
    texts = [first.text]
    size = len(first.text)
    while queue and _same_run(first, queue[0]):
        grown = size + 1 + len(queue[0].text)
        if grown > policy.merge_limit:
            break
        texts.append(queue.popleft().text)
        size = grown
    if len(texts) == 1:
        return first
    return Item("text", label=first.label, text="\n".join(texts), count=len(texts), group=first.group,
                key=first.key, queued=first.queued)


def _run_length(first: Item, queue: collections.deque[Item]) -> int:
    n = 1
    for item in queue:
        if not _same_run(first, item):
            break
        n += 1
    return n


def _same_run(first: Item, item: Item) -> bool:
    return item.kind == "text" and item.label == first.label and item.group == first.group
