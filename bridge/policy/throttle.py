"""Start throttling for every platform: per user key, a cooldown and a bounded number of starts per window."""

from __future__ import annotations

import time
from collections import OrderedDict

from ..bucket import TokenBucket
from .timespan import format_duration

__all__ = ["StartThrottle", "throttle_notice"]


class StartThrottle:
    """Decides whether a user may start (or skip to the next stranger) now.

    Each key has a cooldown (seconds between two starts) and a token bucket of `max_starts`
    per `window`. State is in memory and bounded: the least recently seen keys are forgotten
    beyond `max_keys` (forgetting only ever lets someone start sooner).
    """

    __slots__ = ("cooldown", "max_starts", "shared_starts", "window", "max_keys", "clock", "_keys")

    def __init__(
        self, cooldown: float = 0.0, max_starts: int = 60, window: float = 600.0, *, max_keys: int = 100_000,
        shared_starts: int | None = None, clock=time.monotonic,
    ) -> None:  # fmt: skip
        if max_starts < 1 or window <= 0 or cooldown < 0 or (shared_starts is not None and shared_starts < 1):
            raise ValueError("a start throttle needs max_starts >= 1, window > 0 and cooldown >= 0")
        self.cooldown = cooldown
        self.max_starts = max_starts
        # A key several people share (the hashed network of cookie-less web clients) gets this many
        # starts per window instead, and no cooldown: one person's pace would starve the others.
        self.shared_starts = max_starts if shared_starts is None else shared_starts
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._keys: OrderedDict[str, tuple[float, TokenBucket]] = OrderedDict()

    @classmethod
    def from_config(cls, policy, clock=time.monotonic) -> StartThrottle:
        """Built from a PolicySection ([policy])."""
        return cls(policy.start_cooldown, policy.max_starts, policy.start_window,
                   shared_starts=policy.max_shared_starts, clock=clock)

    def check(self, key: str, *, shared: bool = False) -> float:
        """0.0 if `key` may start now (the start is counted); otherwise the seconds to wait.

        `shared`: the key stands for several people (see shared_starts)."""
        now = self.clock()
        entry = self._keys.get(key)
        if entry is None:
            most = self.shared_starts if shared else self.max_starts
            bucket = TokenBucket(most / self.window, most, now=now)
            last = float("-inf")
        else:
            last, bucket = entry
            self._keys.move_to_end(key)
        cooldown = 0.0 if shared else self.cooldown
        wait = max(last + cooldown - now, bucket.wait_time(now))
        if wait > 0:
            return wait
        bucket.spend(1, now)
        self._keys[key] = (now, bucket)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return 0.0

    def __len__(self) -> int:
        return len(self._keys)


def throttle_notice(wait: float) -> str:
    """What a user who starts too often is told."""
    return f"You are starting chats too quickly. Try again in {format_duration(wait)}."
