"""An instance's name held as a lease in Redis: taken at start, renewed by a heartbeat, watched by the others."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .base import StoreError

__all__ = ["InstanceDown", "InstanceLease"]

log = logging.getLogger(__name__)

# 1 renewed, 2 taken again (it had expired while Redis could not be reached), 0 another process holds it.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 end
return 0
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
# An instance whose lease is gone and that left no session is dropped from the list of instances.
_FORGET = """
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('HLEN', KEYS[2]) == 0 then
  return redis.call('SREM', KEYS[3], ARGV[1]) end
return 0
"""
# Every known name with 1 (its lease is live) or 0, in one round trip (lease keys are ARGV[1] .. name).
_LIST = """
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = name
  out[#out + 1] = redis.call('EXISTS', ARGV[1] .. name)
end
return out
"""

# Called once per instance whose lease expired, with its name and how many sessions it left owned.
InstanceDown = Callable[[str, int], Awaitable[None]]


class InstanceLease:
    """The lease `<prefix>instance:<name>` (value: who holds it) and the set `<prefix>instances`.

    `sessions_key` names the hash of sessions an instance owns (the store owns the key layout).
    """

    def __init__(self, redis: Any, prefix: str, name: str, seconds: float, sessions_key: Callable[[str], str]) -> None:
        self.redis = redis
        self.name = name
        self.seconds = seconds
        self.prefix = prefix
        self.sessions_key = sessions_key
        self.holder = json.dumps(
            {"token": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(), "since": round(time.time(), 3)},
            sort_keys=True,
        )
        self.lost = False
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._forget = redis.register_script(_FORGET)
        self._list = redis.register_script(_LIST)
        self._reported: set[str] = set()

    def key(self, name: str) -> str:
        """The lease key of instance `name`."""
        return f"{self.prefix}instance:{name}"

    @property
    def instances_key(self) -> str:
        return f"{self.prefix}instances"

    @property
    def _ms(self) -> int:
        return max(1, round(self.seconds * 1000))

    async def acquire(self) -> None:
        """Take the name. A lease left by a process that died expires within `seconds` and is then
        taken; one that is still renewed after 1.5 leases belongs to a live instance: StoreError."""
        key = self.key(self.name)
        deadline = time.monotonic() + 1.5 * self.seconds + 0.2
        waited = False
        while not await self.redis.set(key, self.holder, nx=True, px=self._ms):
            if time.monotonic() > deadline:
                await self._release(keys=[self.away_key(self.name)], args=[self.holder])  # not ours to wait for
                raise StoreError(f"bridge.instance: {self._describe(await self.redis.get(key))}")
            if not waited:
                waited = True
                log.info("instance %s: its name is leased; waiting up to %.1f s for a previous run's lease to expire", self.name, 1.5 * self.seconds)
                # A crashed run's partners wait for this one to take its chats back rather than
                # ending them when the old lease runs out; set only while nobody else said so.
                await self.redis.set(self.away_key(self.name), self.holder, nx=True, px=round((1.5 * self.seconds + 1) * 1000))
            await asyncio.sleep(min(0.1, self.seconds / 10))
        await self.redis.sadd(self.instances_key, self.name)
        await self.redis.delete(self.away_key(self.name))  # back: nobody need wait for it any more
        log.info("instance %s: lease taken (%.1f s, renewed every %.1f s)", self.name, self.seconds, self.seconds / 3)

    def _describe(self, raw: str | None) -> str:
        try:
            holder = json.loads(raw) if raw else {}
        except ValueError:
            holder = {}
        where = f" (host {holder.get('host')}, pid {holder.get('pid')})" if holder else ""
        return (
            f"another live instance named {self.name!r}{where} holds its lease and keeps renewing it; "
            "give this one its own [bridge] instance name"
        )

    async def renew(self) -> bool:
        """Renew once; False (and `lost` set) when another process holds the name now."""
        result = await self._renew(keys=[self.key(self.name)], args=[self.holder, self._ms])
        if result == 2:
            log.warning("instance %s: its lease had expired (Redis unreachable for longer than %.1f s); taken again", self.name, self.seconds)
            await self.redis.sadd(self.instances_key, self.name)
        self.lost = result == 0
        return not self.lost

    def away_key(self, name: str) -> str:
        """Set by an instance that stopped meaning to come back: the others wait before calling it dead."""
        return f"{self.prefix}instance:{name}:away"

    async def away(self, seconds: float) -> None:
        """This instance stops and means to be back within `seconds` (its chats wait for it)."""
        if seconds > 0:
            await self.redis.set(self.away_key(self.name), self.holder, px=max(1, round(seconds * 1000)))

    async def release(self) -> None:
        """Give the name up (a clean stop), so a restart need not wait for the lease to expire."""
        await self._release(keys=[self.key(self.name)], args=[self.holder])
        await self._forget(
            keys=[self.key(self.name), self.sessions_key(self.name), self.instances_key], args=[self.name]
        )

    async def instances(self) -> dict[str, bool]:
        """Every known instance name and whether its lease is live."""
        flat = await self._list(keys=[self.instances_key], args=[self.key("")])
        return dict(sorted((str(name), bool(live)) for name, live in zip(flat[::2], flat[1::2])))

    async def watch_once(self, on_down: InstanceDown) -> list[str]:
        """Look at every other instance once; `on_down` for each newly expired one. Returns those names."""
        down = []
        for name, alive in (await self.instances()).items():
            if name == self.name:
                continue
            if alive:
                self._reported.discard(name)
                continue
            if name in self._reported:
                continue
            if await self.redis.exists(self.away_key(name)):
                continue  # stopped to restart within its resume window: not dead (yet)
            self._reported.add(name)
            left = await self.redis.hlen(self.sessions_key(name))
            down.append(name)
            await on_down(name, int(left))
            await self._forget(keys=[self.key(name), self.sessions_key(name), self.instances_key], args=[name])
        return down
