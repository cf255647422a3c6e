"""The one token bucket: a bound on how fast someone may talk, or how fast a line may leave."""

from __future__ import annotations

import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows `burst` events at once and `rate` per second sustained.

    Two ways to use it: `allow()` takes a token or refuses (the core's flood limits), and
    `wait_time()` + `spend()` pace an outgoing stream (a writer sleeps `wait_time()`, then spends;
    `spend` may go below zero for lines that must leave at once, such as pongs, and later lines
    then wait longer).
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, *, now: float | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, not {rate!r}, {burst!r}")
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic() if now is None else now

    def _refill(self, now: float | None) -> None:
        now = time.monotonic() if now is None else now
        if now > self.stamp:  # a clock read out of order never takes tokens away
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def allow(self, now: float | None = None) -> bool:
        """Take one token if there is one."""
        # _refill written out: the core asks once per message each way.
        now = time.monotonic() if now is None else now
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full_in(self, now: float | None = None) -> float:
        """Seconds until the bucket has refilled to its burst (0 when it has: it then remembers
        nothing of past use)."""
        self._refill(now)
        return max(0.0, (self.burst - self.tokens) / self.rate)

    def wait_time(self, now: float | None = None) -> float:
        """Seconds until one token is there (0 when it is there now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def spend(self, n: int = 1, now: float | None = None) -> None:
        """Take `n` tokens whether or not they are there (the balance may go negative)."""
        self._refill(now)
        self.tokens -= n
