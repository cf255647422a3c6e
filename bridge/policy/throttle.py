"""Start throttling for every platform: per user key, a cooldown and a bounded number of starts per window."""

from __future__ import annotations

import time

from ..bucket import TokenBucket
from .timespan import format_duration

__all__ = ["StartThrottle", "throttle_notice"]


class _Starts(TokenBucket):
    """One key's bucket and the time of its last start (one object per key: tens of thousands
    are kept under churn)."""

    __slots__ = ("last",)

    def __init__(self, rate: float, burst: float, now: float) -> None:
        super().__init__(rate, burst, now=now)
        self.last = float("-inf")


class StartThrottle:
    """Decides whether a user may start (or skip to the next stranger) now.

    Each key has a cooldown (seconds between two starts) and a token bucket of `max_starts`
    per `window`. State is in memory and bounded: the least recently seen keys are forgotten
    beyond `max_keys` (forgetting only ever lets someone start sooner), and a key whose cooldown
    is over and whose bucket is full again is forgotten soon after (it can refuse nothing, so
    memory follows the people who started lately, not everyone who ever started).
    """

    __slots__ = (
        "cooldown", "max_starts", "shared_starts", "window", "max_keys", "clock", "_keys", "_rate", "_burst",
        "_shared_rate", "_shared_burst",
    )  # fmt: skip

    def __init__(
        self, cooldown: float = 0.0, max_starts: int = 60, window: float = 600.0, *, max_keys: int = 100_000,
        shared_starts: int | None = None, clock=time.monotonic,
    ) -> None:  # fmt: skip
        if max_starts < 1 or window <= 0 or cooldown < 0 or (shared_starts is not None and shared_starts < 1):
            raise ValueError("a start throttle needs max_starts >= 1, window > 0 and cooldown >= 0")
        self.cooldown = cooldown
        self.max_starts = max_starts
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        # Oldest seen first. A plain dict keeps insertion order and takes no linked-list node per
        # key, as OrderedDict does (a key is kept for every recent starter): moving a key to the
        # end is taking it out and putting it back.
        self._keys: dict[str, _Starts] = {}
        # Every key's bucket shares these two floats (a key is kept for each recent starter).
        self._rate = max_starts / window
        self._burst = float(max_starts)
        # A key several people share (the hashed network of cookie-less web clients) gets this many
        # starts per window instead, and no cooldown: one person's pace would starve the others.
        self.shared_starts = max_starts if shared_starts is None else shared_starts
        self._shared_rate = self.shared_starts / window
        self._shared_burst = float(self.shared_starts)

    @classmethod
    def from_config(cls, policy, clock=time.monotonic) -> StartThrottle:
        """Built from a PolicySection ([policy])."""
        return cls(policy.start_cooldown, policy.max_starts, policy.start_window,
                   shared_starts=policy.max_shared_starts, clock=clock)

    def check(self, key: str, *, shared: bool = False) -> float:
        """0.0 if `key` may start now (the start is counted); otherwise the seconds to wait.

        `shared`: the key stands for several people (see shared_starts)."""
        now = self.clock()
        self._forget_spent(now)
        starts = self._keys.get(key)
        if starts is None:
            if shared:
                starts = _Starts(self._shared_rate, self._shared_burst, now)
            else:
                starts = _Starts(self._rate, self._burst, now)
        else:
            del self._keys[key]  # seen now: put back at the end below, or now if refused
            self._keys[key] = starts
        cooldown = 0.0 if shared else self.cooldown
        wait = max(starts.last + cooldown - now, starts.wait_time(now))
        if wait > 0:
            return wait
        starts.spend(1, now)
        starts.last = now
        self._keys[key] = starts
        while len(self._keys) > self.max_keys:
            del self._keys[next(iter(self._keys))]
        return 0.0

    async def check_shared(self, store, key: str, *, shared: bool = False, limit: str = "starts") -> float:
        """As `check`, counted in `store` under `limit` with every instance that shares it
        (Store.spend_shared), or here when nobody does."""
        rate, burst, cooldown = (
            (self._shared_rate, self._shared_burst, 0.0) if shared else (self._rate, self._burst, self.cooldown)
        )
        wait = await store.spend_shared(limit, key, rate, burst, cooldown)
        return self.check(key, shared=shared) if wait is None else wait

    def _forget_spent(self, now: float) -> None:
        # The least recently seen keys, two per check (more than the one a check adds): a spent
        # one goes. Keys started once are spent in the order they were seen; a key that will
        # outlive one started now (a heavy starter's bucket refills slowly) moves behind them, so
        # it never holds up the forgetting of the keys after it.
        keys = self._keys
        horizon = max(self.cooldown, 1.0 / min(self._rate, self._shared_rate))  # how long a key started now can refuse
        for _ in range(2):
            if not keys:
                return
            key, starts = next(iter(keys.items()))
            left = max(starts.last + self.cooldown - now, starts.full_in(now))
            if left <= 0:
                del keys[key]
            elif left > horizon:
                keys[key] = keys.pop(key)
            else:
                return

    def __len__(self) -> int:
        return len(self._keys)


def throttle_notice(wait: float) -> str:
    """What a user who starts too often is told."""
    return f"You are starting chats too quickly. Try again in {format_duration(wait)}."
