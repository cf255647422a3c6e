"""The hub's pairing as one Lua script over Redis buckets, so instances sharing a Redis never take the same waiter.

The hub's pairing in scale-out mode (plugins/hub/shared.py); one process alone pairs through plugins/hub/pool.py.
The modes of that pool, each per language: random, interests (with fallback to random), spy
ask/answer, groups of three. Every waiting entry carries a lease renewed by its owner, so a crashed
instance leaves no ghost waiters. Keys (all under `prefix`): `pool:seq` (entry ids),
`pool:entry:<id>` (hash, with PX lease), `pool:<mode>:<lang>` and `pool:interests:<lang>:<interest>`
(sorted sets of ids by arrival), `pool:blocked:<user>` (sorted set: other user -> expiry, capped per
user, so a block is one atomic ZADD per user and never a shared blob) and `pool:parted:<a>\\n<b>`
(cool-down, PX). Entries also hold the person's scope and accept list (Start.scope, Start.accept). The scripts compute keys from the prefix: one Redis, not a cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .pool import ANSWER, ASK, GROUP, INTERESTS, RANDOM

__all__ = ["Entry", "Pairing", "RedisPool"]

# Shared by the scripts: can two users meet, and find or take compatible waiters of one bucket.
_COMMON = r"""
local prefix = ARGV[1]
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local function pair_key(a, b)
  if b < a then a, b = b, a end
  return prefix .. 'pool:parted:' .. a .. '\n' .. b
end
-- events.accepts: an empty list takes anyone; else the scope is an entry or under one ("discord:1").
local function accepts(accept, scope)
  if #accept == 0 then return true end
  if scope == '' then return false end
  for _, e in ipairs(accept) do
    if scope == e or string.sub(scope, 1, #e + 1) == e .. ':' then return true end
  end
  return false
end
-- p and q: {user, scope, accept (a list), pairing}. The same pairing key never meets itself and
-- cools down after a parting; report blocks hold between (moderation) users, as in pool.py.
local function compatible(p, q)
  if p[4] == q[4] then return false end
  if not (accepts(p[3], q[2]) and accepts(q[3], p[2])) then return false end
  if p[1] ~= q[1] then
    local until_ = redis.call('ZSCORE', prefix .. 'pool:blocked:' .. p[1], q[1])
    if until_ and tonumber(until_) > now then return false end
  end
  return redis.call('EXISTS', pair_key(p[4], q[4])) == 0
end
local function remove(id, places)
  for _, place in ipairs(places) do redis.call('ZREM', place, id) end
  redis.call('DEL', prefix .. 'pool:entry:' .. id)
end
-- Up to n entries among the bucket's `limit` oldest, compatible with every person in `against` and
-- with each other; entries whose lease ran out are dropped on the way. Nothing else is changed.
local function find(bucket, against, n, limit)
  local chosen, people = {}, {}
  for _, p in ipairs(against) do people[#people + 1] = p end
  for _, id in ipairs(redis.call('ZRANGE', bucket, 0, limit - 1)) do
    local f = redis.call('HMGET', prefix .. 'pool:entry:' .. id, 'user', 'owner', 'places', 'interests', 'question',
      'scope', 'accept', 'pairing')
    if not f[1] then
      redis.call('ZREM', bucket, id)
    else
      local person = {f[1], f[6] or '', cjson.decode(f[7] or '[]'), f[8] or f[1]}
      local ok = true
      for _, p in ipairs(people) do
        if not compatible(p, person) then ok = false break end
      end
      if ok then
        chosen[#chosen + 1] = {id, f[1], f[2], f[4], f[5] or '', f[3], person, f[8] or f[1]}
        people[#people + 1] = person
        if #chosen == n then return chosen end
      end
    end
  end
  return nil
end
local function take(found)
  for _, e in ipairs(found) do remove(e[1], cjson.decode(e[6])) end
end
local function enqueue(id, user, owner, lease, places, interests, question, scope, accept, pairing)
  local key = prefix .. 'pool:entry:' .. id
  redis.call('HSET', key, 'user', user, 'owner', owner, 'places', cjson.encode(places), 'interests', interests,
    'question', question, 'scope', scope, 'accept', accept, 'pairing', pairing)
  redis.call('PEXPIRE', key, lease)
  for _, place in ipairs(places) do redis.call('ZADD', place, tonumber(id), id) end
end
-- The reply: {id, 'paired', kind, members...} with 6 fields per member (id, user, owner,
-- interests, question, pairing), in the pool's order.
local function reply(id, kind, members)
  local out = {id, 'paired', kind}
  for _, e in ipairs(members) do
    for i = 1, 5 do out[#out + 1] = e[i] end
    out[#out + 1] = e[8]
  end
  return out
end
"""

# ARGV: prefix, user, owner, lease_ms, scan_limit, language, mode, interests (JSON list), question,
# scope, accept (JSON list), pairing. Returns {id, 'waiting'} or reply(...).
_ARRIVE = _COMMON + r"""
local user, owner, lease, limit, lang, mode = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local interests, question, scope, accept, pairing = cjson.decode(ARGV[8]), ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local person = {user, scope, cjson.decode(accept), pairing}
local id = tostring(redis.call('INCR', prefix .. 'pool:seq'))
local me = {id, user, owner, ARGV[8], question}
me[8] = pairing
local bucket = prefix .. 'pool:' .. mode .. ':' .. lang
if mode == 'interests' then
  table.sort(interests)
  local places = {}
  for i, interest in ipairs(interests) do
    places[i] = prefix .. 'pool:interests:' .. lang .. ':' .. interest
    local found = find(places[i], {person}, 1, limit)
    if found then take(found) return reply(id, 'pair', {found[1], me}) end
  end
  enqueue(id, user, owner, lease, places, ARGV[8], question, scope, accept, pairing)
  return {id, 'waiting'}
end
if mode == 'random' then
  local found = find(bucket, {person}, 1, limit)
  if found then take(found) return reply(id, 'pair', {found[1], me}) end
elseif mode == 'ask' then
  local found = find(prefix .. 'pool:answer:' .. lang, {person}, 2, limit)
  if found then take(found) return reply(id, 'ask', {me, found[1], found[2]}) end
elseif mode == 'answer' then
  local asker = find(prefix .. 'pool:ask:' .. lang, {person}, 1, limit)
  if asker then
    local partner = find(bucket, {person, asker[1][7]}, 1, limit)
    if partner then
      take(asker) take(partner)
      return reply(id, 'ask', {asker[1], partner[1], me})
    end
  end
elseif mode == 'group' then
  local found = find(bucket, {person}, 2, limit)
  if found then take(found) return reply(id, 'group', {found[1], found[2], me}) end
else
  return redis.error_reply('unknown mode ' .. mode)
end
enqueue(id, user, owner, lease, {bucket}, ARGV[8], question, scope, accept, pairing)
return {id, 'waiting'}
"""

# An interests entry that waited long enough also takes a random stranger (and waits among them).
# ARGV: prefix, id, scan_limit, language. Returns reply(...) | {id, 'waiting'} | {id, 'gone'}.
_FALL_BACK = _COMMON + r"""
local id, limit, lang = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local key = prefix .. 'pool:entry:' .. id
local f = redis.call('HMGET', key, 'user', 'owner', 'places', 'interests', 'question', 'scope', 'accept', 'pairing')
if not f[1] then return {id, 'gone'} end
local person = {f[1], f[6] or '', cjson.decode(f[7] or '[]'), f[8] or f[1]}
local places = cjson.decode(f[3])
local random = prefix .. 'pool:random:' .. lang
for _, place in ipairs(places) do if place == random then return {id, 'waiting'} end end
local found = find(random, {person}, 1, limit)
if found then
  take(found)
  remove(id, places)
  local me = {id, f[1], f[2], f[4], f[5] or ''}
  me[8] = f[8] or f[1]
  return reply(id, 'pair', {found[1], me})
end
places[#places + 1] = random
redis.call('HSET', key, 'places', cjson.encode(places))
redis.call('ZADD', random, tonumber(id), id)
return {id, 'waiting'}
"""

# ARGV: prefix, id. 1 when the entry was still waiting (and is now gone), 0 when it was not.
_LEAVE = _COMMON + r"""
local places = redis.call('HGET', prefix .. 'pool:entry:' .. ARGV[2], 'places')
if not places then return 0 end
remove(ARGV[2], cjson.decode(places))
return 1
"""

# ARGV: prefix, a, b, ttl_ms, per_user. Both sides' sets get the other with its expiry; expired ones
# leave, and each keeps its `per_user` newest (the oldest go first).
_BLOCK = r"""
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local ttl = tonumber(ARGV[4])
for _, side in ipairs({{ARGV[2], ARGV[3]}, {ARGV[3], ARGV[2]}}) do
  local key = ARGV[1] .. 'pool:blocked:' .. side[1]
  redis.call('ZADD', key, now + ttl / 1000, side[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[5]) + 1))
  redis.call('PEXPIRE', key, ttl)
end
return 1
"""

# ARGV: prefix, lease_ms, ids... The ids no longer waiting (taken, left, or their lease ran out);
# the others' leases are renewed.
_RENEW = r"""
local gone = {}
for i = 3, #ARGV do
  if redis.call('PEXPIRE', ARGV[1] .. 'pool:entry:' .. ARGV[i], ARGV[2]) == 0 then gone[#gone + 1] = ARGV[i] end
end
return gone
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One person in the pool: the entry id the script gave, who, and which instance holds their chat."""

    id: str
    user: str
    owner: str
    interests: tuple[str, ...] = ()
    question: str | None = None  # an asker's question (spy mode)
    pairing: str = ""  # who the person is to pairing (Start.pairing); "": the same as user

    def __post_init__(self) -> None:
        if not self.pairing:
            object.__setattr__(self, "pairing", self.user)


@dataclass(frozen=True, slots=True)
class Pairing:
    """What an arrival (or a fallback) came to: the conversation formed, or waiting (no members).

    `members` follows plugins/hub/pool.py's Match: (waiter, arrival) for two, (asker, answerer,
    answerer) for a spy question, the two waiters then the arrival for a group of three.
    """

    entry: Entry
    kind: str = ""  # "" while waiting, else RANDOM, INTERESTS, ASK or GROUP
    members: tuple[Entry, ...] = ()

    @property
    def partner(self) -> Entry | None:
        """The other person of a two-person chat (None while waiting or for groups)."""
        if self.kind not in (RANDOM, INTERESTS):
            return None
        return next(m for m in self.members if m.id != self.entry.id)

    @property
    def common(self) -> tuple[str, ...]:
        """Interests the two share (empty for a random pairing)."""
        partner = self.partner
        if partner is None:
            return ()
        return tuple(sorted(set(self.entry.interests) & set(partner.interests)))


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
        self._block = redis.register_script(_BLOCK)

    async def arrive(
        self,
        user: str,
        *,
        mode: str = RANDOM,
        language: str = "en",
        interests: frozenset[str] | tuple[str, ...] = (),
        question: str | None = None,
        scope: str | None = None,
        accept: tuple[str, ...] = (),
        pairing: str | None = None,
    ) -> Pairing:
        """Take compatible waiters for `mode` (RANDOM, INTERESTS, ASK, ANSWER, GROUP) or wait.

        RANDOM with interests means INTERESTS, as in the hub; INTERESTS takes a waiter of any shared interest.
        `scope` and `accept` are the person's Start.scope and Start.accept (checked both ways, as the hub's pool does);
        `pairing` is Start.pairing (None: the same as `user`).
        """
        wanted = sorted(set(interests))
        if mode == RANDOM and wanted:
            mode = INTERESTS
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if mode == INTERESTS and not wanted:
            raise ValueError("an interests search needs at least one interest")
        args = [self.prefix, user, self.owner, self.lease_ms, self.scan_limit, language, mode, json.dumps(wanted), question or "",
                scope or "", json.dumps(list(accept)), pairing or user]
        entry = Entry("", user, self.owner, tuple(wanted), question, pairing or user)
        return _pairing(entry, await self._arrive(keys=[], args=args))

    async def fall_back(self, entry: Entry, *, language: str = "en") -> Pairing | None:
        """An interests entry now also takes a random stranger; None when it is no longer waiting."""
        reply = await self._fall_back(keys=[], args=[self.prefix, entry.id, self.scan_limit, language])
        if reply[1] == "gone":
            return None
        return _pairing(entry, reply)

    async def leave(self, entry: Entry) -> bool:
        """Stop waiting; False when the entry was already taken or its lease ran out."""
        return bool(await self._leave(keys=[], args=[self.prefix, entry.id]))

    async def renew(self, entries: list[Entry]) -> int:
        """Renew the leases of this instance's waiting entries (its heartbeat); how many still wait."""
        return len(entries) - len(await self.renew_missing(entries))

    async def renew_missing(self, entries: list[Entry]) -> list[str]:
        """Renew the leases of waiting entries; the ids of those no longer in the pool."""
        if not entries:
            return []
        return [str(i) for i in await self._renew(keys=[], args=[self.prefix, self.lease_ms, *[e.id for e in entries]])]

    async def block(self, a: str, b: str, *, ttl: float = 30 * 86_400.0, per_user: int = 1000) -> None:
        """Do not pair these two again for `ttl` seconds (after a report); each user keeps `per_user` blocks."""
        await self._block(keys=[], args=[self.prefix, a, b, max(1, round(ttl * 1000)), per_user])

    async def parted(self, a: str, b: str, cooldown: float) -> None:
        """These two just left each other: keep them apart for `cooldown` seconds."""
        first, second = sorted((a, b))
        await self.redis.set(f"{self.prefix}pool:parted:{first}\n{second}", "1", px=max(1, round(cooldown * 1000)))

    async def waiting(self, mode: str = RANDOM, *, language: str = "en", interest: str | None = None) -> int:
        """Entries in one bucket (ghosts whose lease ran out included until an arrival drops them)."""
        if interest is not None:
            return int(await self.redis.zcard(f"{self.prefix}pool:{INTERESTS}:{language}:{interest}"))
        return int(await self.redis.zcard(f"{self.prefix}pool:{mode}:{language}"))


_MODES = (RANDOM, INTERESTS, ASK, ANSWER, GROUP)
_KINDS = {"pair": None, "ask": ASK, "group": GROUP}


def _pairing(entry: Entry, reply: list[Any]) -> Pairing:
    entry = Entry(str(reply[0]), entry.user, entry.owner, entry.interests, entry.question, entry.pairing)
    if reply[1] == "waiting":
        return Pairing(entry)
    fields = reply[3:]
    members = []
    for i in range(0, len(fields), 6):
        member_id, user, owner, interests, question, pairing = fields[i : i + 6]
        if str(member_id) == entry.id:
            members.append(entry)
        else:
            members.append(Entry(str(member_id), str(user), str(owner), tuple(json.loads(interests or "[]")), question or None, str(pairing or user)))
    kind = _KINDS[reply[2]]
    if kind is None:  # two people: interests when they share one, as the hub's pool says
        kind = INTERESTS if set(members[0].interests) & set(members[1].interests) else RANDOM
    return Pairing(entry, kind, tuple(members))
