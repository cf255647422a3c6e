"""Each instance's live figures (people online, waiting per mode) shared in Redis, so every instance can show the sum."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["Figures", "SharedFigures", "add_figures"]

log = logging.getLogger(__name__)

#: One instance's figures: {"online": int, "waiting": {mode: int}} (counts only: no room, no user).
Figures = dict[str, Any]

# KEYS[1] this instance's figures key, KEYS[2] the set of instance names; ARGV: its figures, their
# lifetime in ms, its name, the figures key prefix. Writes its own and returns every other live
# instance's as name, figures, ... in one round trip (a dead instance's key has expired).
_SHARE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if name ~= ARGV[3] then
    local value = redis.call('GET', ARGV[4] .. name)
    if value then out[#out + 1] = name out[#out + 1] = value end
  end
end
return out
"""


def add_figures(parts: list[Figures]) -> Figures:
    """The sum of several instances' figures."""
    waiting: Counter[str] = Counter()
    for part in parts:
        for mode, n in (part.get("waiting") or {}).items():
            waiting[str(mode)] += int(n)
    return {"online": sum(int(part.get("online") or 0) for part in parts), "waiting": dict(waiting)}


class SharedFigures:
    """`<prefix>figures:<name>` per instance, written with each lease heartbeat and expiring with the
    lease. `others` holds the other live instances' figures as of the last heartbeat."""

    def __init__(self, redis: Any, prefix: str, name: str, seconds: float, instances_key: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.name = name
        self.seconds = seconds
        self.instances_key = instances_key
        self.source: Callable[[], Figures] | None = None  # this instance's figures now
        self.others: dict[str, Figures] = {}
        self._share = redis.register_script(_SHARE)

    def key(self, name: str) -> str:
        return f"{self.prefix}figures:{name}"

    async def share(self) -> None:
        """Publish this instance's figures and read the others' (one round trip); nothing without a source."""
        if self.source is None:
            return
        mine = json.dumps(self.source(), separators=(",", ":"))
        ms = max(1, round(self.seconds * 1000))
        flat = await self._share(keys=[self.key(self.name), self.instances_key], args=[mine, ms, self.name, self.key("")])
        others: dict[str, Figures] = {}
        for name, raw in zip(flat[::2], flat[1::2]):
            try:
                figures = json.loads(raw)
            except ValueError:
                log.warning("instance %s: unreadable live figures were left out of the totals", name)
                continue
            if isinstance(figures, dict):
                others[str(name)] = figures
        self.others = others

    async def withdraw(self) -> None:
        """A clean stop: the others stop counting this instance at once."""
        await self.redis.delete(self.key(self.name))
