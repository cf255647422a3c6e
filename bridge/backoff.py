"""The one retry policy: exponential delays with a cap and jitter, a Retry-After override, bounded attempts."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

__all__ = ["Backoff", "Retrying"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait after the n-th consecutive failure, and when to stop trying.

    Each use declares its own parameters (a data declaration, e.g. `DELIVER = Backoff(0.2, cap=4.0)`);
    the arithmetic lives here only. `attempts` counts tries including the first; None never gives up
    (a reconnect loop that the daemon waits on). `jitter` is the fraction of each delay that is
    randomised downwards, so many clients failing together do not retry in step.
    """

    base: float = 0.2  # seconds after the first failure
    cap: float = 10.0  # no computed delay is longer
    factor: float = 2.0
    attempts: int | None = 5
    jitter: float = 0.0  # 0 .. 1
    max_retry_after: float = 60.0  # a server's Retry-After is obeyed up to this, never longer

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or self.factor < 1 or not 0 <= self.jitter <= 1 or self.max_retry_after < 0:
            raise ValueError(f"not a usable backoff: {self!r}")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1: {self!r}")

    def delay(self, failures: int, retry_after: float | None = None, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after `failures` (1 = the first) consecutive failures.

        A positive `retry_after` (what the server asked for: HTTP Retry-After, Discord `retry_after`,
        Matrix `retry_after_ms` / 1000) replaces the computed delay, bounded by `max_retry_after`.
        """
        if retry_after is not None and retry_after > 0:
            return min(float(retry_after), self.max_retry_after)
        step = min(max(failures, 1) - 1, 64)  # the exponent is bounded: 2**64 * base is past any cap
        computed = min(self.cap, self.base * self.factor**step)
        if self.jitter:
            computed *= 1.0 - self.jitter * (rng or random).random()
        return computed

    def gives_up(self, failures: int) -> bool:
        """True when `failures` consecutive failures have used every attempt."""
        return self.attempts is not None and failures >= self.attempts

    def retrying(self) -> Retrying:
        """A fresh failure counter that follows this policy."""
        return Retrying(self)


@dataclass(slots=True)
class Retrying:
    """The state of one retry loop: consecutive failures so far, reset by a success."""

    policy: Backoff
    failures: int = field(default=0)

    def failed(self, retry_after: float | None = None) -> float | None:
        """Count a failure; the seconds to wait before the next try, or None when it is time to give up."""
        self.failures += 1
        if self.policy.gives_up(self.failures):
            return None
        return self.policy.delay(self.failures, retry_after)

    async def wait(self, retry_after: float | None = None) -> bool:
        """Count a failure and sleep the policy's delay; False (at once) when attempts are used up."""
        delay = self.failed(retry_after)
        if delay is None:
            return False
        await asyncio.sleep(delay)
        return True

    def succeeded(self) -> None:
        """A try worked: the next failure starts again from the base delay."""
        self.failures = 0
