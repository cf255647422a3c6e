"""The hub's blocks after a report: who is not paired with whom, bounded per reporter, in all and in time."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

__all__ = ["Blocks"]

DAY = 86_400.0


class Blocks:
    """Pairs of users that must not meet again, each for `ttl` seconds after the report.

    A report blocks the reporter and the reported stranger from each other. What keeps this
    bounded over a long uptime, without giving a pair a second meeting it should not have:
    - every block lasts `ttl` seconds (30 days by default: the same stranger coming back after
      that is no longer the same conversation), and a new report of the same pair renews it;
    - each reporter keeps at most `per_reporter` blocks: a user who reports everyone drops the
      oldest of *their own* reports, never anyone else's;
    - at most `limit` blocks in all; past that the oldest of all go first (a last-resort bound
      that only a flood of reporters from as many identities ever reaches).
    Times are wall-clock seconds (`clock`), so that a persisted block keeps its expiry across a
    restart. The oldest block is always first in insertion order (every block lasts the same
    time), so expiry and eviction cost O(1) per block.
    """

    def __init__(
        self,
        ttl: float = 30 * DAY,
        per_reporter: int = 1000,
        limit: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self.per_reporter = per_reporter
        self.limit = limit
        self.clock = clock
        self._until: OrderedDict[frozenset[str], tuple[float, str]] = OrderedDict()  # pair → (expiry, reporter)
        self._of: dict[str, OrderedDict[frozenset[str], None]] = {}  # reporter → their blocks, oldest first

    def __len__(self) -> int:
        return len(self._until)

    def add(self, reporter: str, other: str, until: float | None = None) -> None:
        """`reporter` reported `other`: block the pair until `until` (default: now + ttl)."""
        if reporter == other:
            return
        now = self.clock()
        until = now + self.ttl if until is None else min(until, now + self.ttl)
        if until <= now:
            return
        pair = frozenset((reporter, other))
        self._drop(pair)
        newest = next(reversed(self._until.values()), (until, ""))[0]
        self._until[pair] = (until, reporter)
        if until < newest:
            self._resort()  # only a block restored out of order: keep the oldest first
        mine = self._of.setdefault(reporter, OrderedDict())
        mine[pair] = None
        while len(mine) > self.per_reporter:
            self._drop(next(iter(mine)))
        self._expire(now)
        while len(self._until) > self.limit:
            self._drop(next(iter(self._until)))

    def blocked(self, a: str, b: str) -> bool:
        """Whether `a` and `b` must not be paired now."""
        return self.holds(frozenset((a, b)))

    def holds(self, pair: frozenset[str]) -> bool:
        """Whether the pair of users `pair` must not be paired now."""
        entry = self._until.get(pair)
        if entry is None:
            return False
        if entry[0] > self.clock():
            return True
        self._expire(self.clock())
        return False

    def items(self) -> Iterator[tuple[str, str, float]]:
        """(reporter, other, expiry) of every live block, oldest first (for persistence)."""
        now = self.clock()
        for pair, (until, reporter) in list(self._until.items()):
            if until > now:
                (other,) = pair - {reporter}
                yield reporter, other, until

    # ---- internals ---------------------------------------------------------------------------

    def _drop(self, pair: frozenset[str]) -> None:
        entry = self._until.pop(pair, None)
        if entry is None:
            return
        mine = self._of.get(entry[1])
        if mine is not None:
            mine.pop(pair, None)
            if not mine:
                del self._of[entry[1]]

    def _expire(self, now: float) -> None:
        while self._until:
            pair, (until, _) = next(iter(self._until.items()))
            if until > now:
                return
            self._drop(pair)

    def _resort(self) -> None:
        self._until = OrderedDict(sorted(self._until.items(), key=lambda item: item[1][0]))
