"""The hub's pairing as one Lua script over Redis buckets, so instances sharing a Redis never take the same waiter.

A library for scale-out mode; the hub backend does not use it yet (it pairs through plugins/hub/pool.py).
Two-person modes only: random and interests (with fallback to random), each per language. Every
waiting entry carries a lease renewed by its owner, so a crashed instance leaves no ghost waiters.
Keys (all under `prefix`): `pool:seq` (entry ids), `pool:entry:<id>` (hash, with PX lease),
`pool:r:<lang>` and `pool:i:<lang>:<interest>` (sorted sets of ids by arrival), `pool:blocked:<user>`
(set) and `pool:parted:<a>\\n<b>` (cool-down, PX). The scripts compute keys from the prefix: one Redis,
not a cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Entry", "Pairing", "RedisPool"]

# Shared by the scripts: can two users meet, and take the first compatible waiter of one bucket.
_COMMON = r"""
local prefix = ARGV[1]
local function pair_key(a, b)
  if b < a then a, b = b, a end
  return prefix .. 'pool:parted:' .. a .. '\n' .. b
end
local function compatible(user, other)
  if other == user then return false end
  if redis.call('SISMEMBER', prefix .. 'pool:blocked:' .. user, other) == 1 then return false end
  return redis.call('EXISTS', pair_key(user, other)) == 0
end
local function remove(id, places)
  for _, place in ipairs(places) do redis.call('ZREM', place, id) end
  redis.call('DEL', prefix .. 'pool:entry:' .. id)
end
-- The first compatible entry among the bucket's `limit` oldest; entries whose lease ran out are dropped.
local function take(bucket, user, limit)
  for _, id in ipairs(redis.call('ZRANGE', bucket, 0, limit - 1)) do
    local fields = redis.call('HMGET', prefix .. 'pool:entry:' .. id, 'user', 'owner', 'places', 'interests')
    if not fields[1] then
      redis.call('ZREM', bucket, id)
    elseif compatible(user, fields[1]) then
      remove(id, cjson.decode(fields[3]))
      return {id, fields[1], fields[2], fields[4]}
    end
  end
  return nil
end
local function enqueue(id, user, owner, lease, places, interests)
  local key = prefix .. 'pool:entry:' .. id
  redis.call('HSET', key, 'user', user, 'owner', owner, 'places', cjson.encode(places), 'interests', interests)
  redis.call('PEXPIRE', key, lease)
  for _, place in ipairs(places) do redis.call('ZADD', place, tonumber(id), id) end
end
"""

# ARGV: prefix, user, owner, lease_ms, scan_limit, language, interests (JSON list, empty for random).
# Returns {id, 'paired', partner_id, partner_user, partner_owner, partner_interests} or {id, 'waiting'}.
_ARRIVE = _COMMON + r"""
local user, owner, lease, limit, lang = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local interests = cjson.decode(ARGV[7])
local id = tostring(redis.call('INCR', prefix .. 'pool:seq'))
local places = {}
if #interests == 0 then
  places[1] = prefix .. 'pool:r:' .. lang
else
  table.sort(interests)
  for i, interest in ipairs(interests) do places[i] = prefix .. 'pool:i:' .. lang .. ':' .. interest end
end
for _, bucket in ipairs(places) do
  local found = take(bucket, user, limit)
  if found then return {id, 'paired', found[1], found[2], found[3], found[4]} end
end
enqueue(id, user, owner, lease, places, ARGV[7])
return {id, 'waiting'}
"""

# An interests entry that waited long enough also takes a random stranger (and waits among them).
# ARGV: prefix, id, scan_limit, language. Returns {'paired', ...partner} | {'waiting'} | {'gone'}.
_FALL_BACK = _COMMON + r"""
local id, limit, lang = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local key = prefix .. 'pool:entry:' .. id
local fields = redis.call('HMGET', key, 'user', 'places')
if not fields[1] then return {'gone'} end
local places = cjson.decode(fields[2])
local random = prefix .. 'pool:r:' .. lang
for _, place in ipairs(places) do if place == random then return {'waiting'} end end
local found = take(random, fields[1], limit)
if found then
  remove(id, places)
  return {'paired', found[1], found[2], found[3], found[4]}
end
places[#places + 1] = random
redis.call('HSET', key, 'places', cjson.encode(places))
redis.call('ZADD', random, tonumber(id), id)
return {'waiting'}
"""

# ARGV: prefix, id. 1 when the entry was still waiting (and is now gone), 0 when it was not.
_LEAVE = _COMMON + r"""
local places = redis.call('HGET', prefix .. 'pool:entry:' .. ARGV[2], 'places')
if not places then return 0 end
remove(ARGV[2], cjson.decode(places))
return 1
"""

# ARGV: prefix, lease_ms, ids... How many of them are still waiting (their lease renewed).
_RENEW = r"""
local n = 0
for i = 3, #ARGV do n = n + redis.call('PEXPIRE', ARGV[1] .. 'pool:entry:' .. ARGV[i], ARGV[2]) end
return n
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One waiting person: the entry id the script gave, who, and which instance holds their chat."""

    id: str
    user: str
    owner: str
    interests: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pairing:
    """What an arrival (or a fallback) came to: a partner taken from the pool, or waiting."""

    entry: Entry
    partner: Entry | None = None

    @property
    def common(self) -> tuple[str, ...]:
        """Interests the two share (empty for a random pairing)."""
        if self.partner is None:
            return ()
        return tuple(sorted(set(self.entry.interests) & set(self.partner.interests)))


class RedisPool:
    """One instance's handle on the shared pool. `redis` is a `redis.asyncio.Redis` with decode_responses=True."""

    def __init__(self, redis: Any, *, prefix: str, owner: str, lease: float = 10.0, scan_limit: int = 32) -> None:
        self.redis = redis
        self.prefix = prefix
        self.owner = owner
        self.lease_ms = max(1, round(lease * 1000))
        self.scan_limit = scan_limit
        self._arrive = redis.register_script(_ARRIVE)
        self._fall_back = redis.register_script(_FALL_BACK)
        self._leave = redis.register_script(_LEAVE)
        self._renew = redis.register_script(_RENEW)

    async def arrive(self, user: str, *, language: str = "en", interests: frozenset[str] | tuple[str, ...] = ()) -> Pairing:
        """Take the first compatible waiter (interests: of any shared interest, else nobody) or wait."""
        wanted = sorted(set(interests))
        args = [self.prefix, user, self.owner, self.lease_ms, self.scan_limit, language, json.dumps(wanted)]
        reply = await self._arrive(keys=[], args=args)
        entry = Entry(str(reply[0]), user, self.owner, tuple(wanted))
        if reply[1] == "waiting":
            return Pairing(entry)
        return Pairing(entry, _partner(reply[2:]))

    async def fall_back(self, entry: Entry, *, language: str = "en") -> Pairing | None:
        """An interests entry now also takes a random stranger; None when it is no longer waiting."""
        reply = await self._fall_back(keys=[], args=[self.prefix, entry.id, self.scan_limit, language])
        if reply[0] == "gone":
            return None
        if reply[0] == "waiting":
            return Pairing(entry)
        return Pairing(entry, _partner(reply[1:]))

    async def leave(self, entry: Entry) -> bool:
        """Stop waiting; False when the entry was already taken or its lease ran out."""
        return bool(await self._leave(keys=[], args=[self.prefix, entry.id]))

    async def renew(self, entries: list[Entry]) -> int:
        """Renew the leases of this instance's waiting entries (its heartbeat); how many still wait."""
        if not entries:
            return 0
        return int(await self._renew(keys=[], args=[self.prefix, self.lease_ms, *[e.id for e in entries]]))

    async def block(self, a: str, b: str) -> None:
        """Never pair these two again (after a report)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(f"{self.prefix}pool:blocked:{a}", b)
            pipe.sadd(f"{self.prefix}pool:blocked:{b}", a)
            await pipe.execute()

    async def parted(self, a: str, b: str, cooldown: float) -> None:
        """These two just left each other: keep them apart for `cooldown` seconds."""
        first, second = sorted((a, b))
        await self.redis.set(f"{self.prefix}pool:parted:{first}\n{second}", "1", px=max(1, round(cooldown * 1000)))

    async def waiting(self, *, language: str = "en", interest: str | None = None) -> int:
        """Entries in one bucket (ghosts whose lease ran out included until an arrival drops them)."""
        bucket = f"{self.prefix}pool:r:{language}" if interest is None else f"{self.prefix}pool:i:{language}:{interest}"
        return int(await self.redis.zcard(bucket))


def _partner(fields: list[Any]) -> Entry:
    partner_id, user, owner, interests = fields
    return Entry(str(partner_id), str(user), str(owner), tuple(json.loads(interests)))
