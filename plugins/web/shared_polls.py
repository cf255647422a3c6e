"""Open polls per address in Redis mode: counted on every instance, each a lease, so a killed instance's stop counting."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .shared import DOWN, SharedTier

if TYPE_CHECKING:
    from .platform import WebPlatform

__all__ = ["POLL_MARGIN", "polling"]

POLL_MARGIN = 5.0  # seconds a poll's count outlives its window in Redis (its end removes it; a killed instance's expire)


@contextlib.asynccontextmanager
async def polling(platform: WebPlatform, tier: SharedTier, address: str, lease: float | None = None) -> AsyncIterator[str | None]:
    """One open poll (or no-JS stream) of `address`, counted against max_polls_per_address on
    every instance: a lease in Redis (`lease` seconds, a poll window and a margin by default;
    a stream renews it), so the polls of an instance killed with them open stop counting when
    theirs end. Yields the lease's member ("" while Redis is away: counted here only), or None
    when the address has its maximum open (counted as refused). This instance's own count
    (web_polls_open) is kept too."""
    polls = platform.clients.polls
    cap, hashed, member = platform.config.max_polls_per_address, platform.clients.key_of(address), ""
    if lease is None:
        lease = platform.config.poll_window + POLL_MARGIN
    try:
        member = "" if tier.down() else await tier.poll_begin(hashed, cap, lease)
        counted = bool(member) or (tier.down() and polls[address] < cap)
    except DOWN:
        counted = polls[address] < cap
    if not counted:
        platform.count("refused", "polls_per_address")
        yield None
        return
    polls[address] += 1
    try:
        yield member
    finally:
        polls[address] -= 1
        if polls[address] <= 0:
            del polls[address]
        if member:
            await tier.poll_end(hashed, member)

