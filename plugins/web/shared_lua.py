"""The Lua scripts of the web tier's client records and queues in Redis (each one atomic step)."""

from __future__ import annotations

__all__ = [
    "DROP_PICTURES", "END_POLL", "GIVE_BACK", "KEEP_PICTURE", "NOJS_APPEND", "NOJS_BEGIN", "NOJS_END", "NOJS_READ",
    "POLL_SLOT", "PUSH", "TAKE",
]  # fmt: skip

# After events are queued (KEYS: record, queue or transcript, address set, owner's set): a chat's end is
# marked, and its id no longer counts for its address or its owner; both keys live `ttl` ms more.
_SETTLE = """
local function settle(final, ttl)
  if final then
    redis.call('HSET', KEYS[1], 'e', '1')
    redis.call('SREM', KEYS[3], redis.call('HGET', KEYS[1], 'key'))
    redis.call('SREM', KEYS[4], redis.call('HGET', KEYS[1], 'key'))
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
"""

# KEYS: record, queue, address set, owner's set. ARGV: max queue, force (1/0), ttl, final (1/0), news (1/0), notice,
# expect, items... `expect` (-1: none) is how many events the owner last knew were ever queued, given after a push
# of its failed: one whose reply was lost after it was written (Redis died then) queued events the owner also kept
# in memory (and served, or pushes again now), so what was queued since is taken out first.
# Returns {the instance of the client's open poll ('' for none), the sequence number after the last event,
# how many events were ever queued, how many of these items were dropped (the queue was full)}, or false
# when the client has no record.
PUSH = _SETTLE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local expect = tonumber(ARGV[7])
if expect >= 0 then
  local extra = math.min(tonumber(redis.call('HGET', KEYS[1], 't') or '0') - expect, redis.call('LLEN', KEYS[2]))
  if extra > 0 then
    redis.call('LTRIM', KEYS[2], 0, -extra - 1)
    redis.call('HINCRBY', KEYS[1], 't', -extra)
    local left = redis.call('LLEN', KEYS[2])
    if tonumber(redis.call('HGET', KEYS[1], 'u') or '0') > left then redis.call('HSET', KEYS[1], 'u', left) end
    if left == 0 then redis.call('HSET', KEYS[1], 'n', '0', 'd', '0') end
  end
end
local items = #ARGV - 7
local pending = redis.call('LLEN', KEYS[2]) - tonumber(redis.call('HGET', KEYS[1], 'u') or '0')
local dropped = 0
if items == 0 then
elseif ARGV[2] ~= '1' and pending + items > tonumber(ARGV[1]) then
  dropped = items
  if redis.call('HGET', KEYS[1], 'd') ~= '1' then
    redis.call('HSET', KEYS[1], 'd', '1', 'n', '1')
    redis.call('RPUSH', KEYS[2], ARGV[6])
    redis.call('HINCRBY', KEYS[1], 't', 1)
  end
else
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 8))
  redis.call('HINCRBY', KEYS[1], 't', items)
  if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'n', '1') end
end
settle(ARGV[4] == '1', ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
return {redis.call('HGET', KEYS[1], 'pi') or '', tonumber(redis.call('HGET', KEYS[1], 'b')) + redis.call('LLEN', KEYS[2]),
        tonumber(redis.call('HGET', KEYS[1], 't')), dropped}
"""

# KEYS: record, queue. ARGV: token ('' : any), ack ('' : none), now, ttl, retired ttl, begin (1/0), this instance.
# {status, base, ended, previous poller, acking, events ever queued, items...}; status: unknown, badack, superseded, empty, ok.
# begin: the poll takes over the id (a newer poll of an id makes the older one answer null).
TAKE = """
local r, q = KEYS[1], KEYS[2]
if redis.call('EXISTS', r) == 0 then return {'unknown'} end
local acking = redis.call('HGET', r, 'k') == '1'
local ended = redis.call('HGET', r, 'e') == '1'
local base = tonumber(redis.call('HGET', r, 'b') or '0')
local sent = tonumber(redis.call('HGET', r, 'u') or '0')
if ARGV[2] ~= '' then
  local n = tonumber(ARGV[2])
  -- up to every queued event: those answered from the owner's memory while Redis was away are queued after
  if not acking or n < base or n > base + redis.call('LLEN', q) then return {'badack'} end
  if n > base then redis.call('LTRIM', q, n - base, -1) end
  sent = math.max(0, sent - (n - base))
  base = n
  redis.call('HSET', r, 'b', base, 'u', sent)
  if ended and redis.call('LLEN', q) == 0 then
    redis.call('DEL', r, q)
    return {'unknown'}
  end
end
local previous = ''
if ARGV[6] == '1' then
  previous = redis.call('HGET', r, 'pi') or ''
  redis.call('HSET', r, 'p', ARGV[1], 'pi', ARGV[7], 's', ARGV[3], 'g', ARGV[3])
  if not ended then
    redis.call('PEXPIRE', r, ARGV[4])
    redis.call('PEXPIRE', q, ARGV[4])
  end
elseif ARGV[1] ~= '' and redis.call('HGET', r, 'p') ~= ARGV[1] then
  return {'superseded'}
end
local a = acking and 1 or 0
local t = tonumber(redis.call('HGET', r, 't') or '0')
if sent == 0 and redis.call('HGET', r, 'n') ~= '1' then return {'empty', base, ended and 1 or 0, previous, a, t} end
local items = redis.call('LRANGE', q, 0, -1)
redis.call('HSET', r, 'n', '0', 'd', '0')
if acking then
  redis.call('HSET', r, 'u', #items)
  if ended then
    redis.call('PEXPIRE', r, ARGV[5])
    redis.call('PEXPIRE', q, ARGV[5])
  end
else
  redis.call('DEL', q)
  if ended then redis.call('DEL', r) end
end
return {'ok', base, ended and 1 or 0, previous, a, t, unpack(items)}
"""

# KEYS: record. ARGV: token, now. The poll is over: the client was seen now; the id has no open poll if it was this one.
END_POLL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[2])
if redis.call('HGET', KEYS[1], 'p') == ARGV[1] then redis.call('HDEL', KEYS[1], 'p', 'pi') end
return 1
"""

# KEYS: record, queue. ARGV: a plain client's taken events, in order: back at the head, answered by the next
# poll. (A batch with the chat's end took the record with it: then nothing is left to give back to.)
GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = #ARGV, 1, -1 do redis.call('LPUSH', KEYS[2], ARGV[i]) end
redis.call('HSET', KEYS[1], 'n', '1')
return 1
"""

# KEYS: the open polls of one address (a sorted set: member -> when its lease ends, in Redis's clock, ms).
# ARGV: cap (0: a renewal, never refused), member, lease ms. Expired leases (an instance killed with its
# polls open) are dropped first; 1 if the poll is counted, 0 when the address has `cap` open already.
POLL_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = tonumber(ARGV[1])
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# Pictures shown to web clients, kept for every instance. Each is a hash `<p>i:<token>` {d: base64, m: mime}
# with a ttl; a client's pictures are the list `<p>ic:<client>` of "token:size:line", oldest first; all of
# them the sorted set `<p>iall` of "token:size" by when they were kept, and their size in `<p>ibytes`.
# Every picture has the same ttl, so the expired ones are the oldest of the set: dropped first.
_FORGET = """
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
local function forget(token, size)
  if redis.call('ZREM', KEYS[2], token .. ':' .. size) == 1 then total = total - tonumber(size) end
  redis.call('DEL', ARGV[1] .. token)
end
"""

# KEYS: the client's list, the set of all, the total. ARGV: picture key prefix, token, size, line, ttl ms,
# pictures per client, bytes per client, bytes in all, data (base64), mime.
KEEP_PICTURE = _FORGET + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[5])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl)) do
  local token, size = string.match(m, '^([^:]+):(%d+)$')
  forget(token, size)
end
redis.call('HSET', ARGV[1] .. ARGV[2], 'd', ARGV[9], 'm', ARGV[10])
redis.call('PEXPIRE', ARGV[1] .. ARGV[2], ttl)
redis.call('ZADD', KEYS[2], now, ARGV[2] .. ':' .. ARGV[3])
total = total + tonumber(ARGV[3])
redis.call('RPUSH', KEYS[1], ARGV[2] .. ':' .. ARGV[3] .. ':' .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
local mine = redis.call('LRANGE', KEYS[1], 0, -1)
local bytes = 0
for _, m in ipairs(mine) do bytes = bytes + tonumber(string.match(m, '^[^:]+:(%d+):')) end
local count, i = #mine, 1
while count > tonumber(ARGV[6]) or bytes > tonumber(ARGV[7]) do
  local token, size = string.match(mine[i], '^([^:]+):(%d+):')
  forget(token, size)
  redis.call('LPOP', KEYS[1])
  count, bytes, i = count - 1, bytes - tonumber(size), i + 1
end
while total > tonumber(ARGV[8]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest then break end
  local token, size = string.match(oldest, '^([^:]+):(%d+)$')
  forget(token, size)
end
redis.call('SET', KEYS[3], math.max(total, 0))
return 1
"""

# KEYS: the client's list, the set of all, the total. ARGV: picture key prefix, line ('': every picture of the client).
DROP_PICTURES = _FORGET + """
for _, m in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local token, size, line = string.match(m, '^([^:]+):(%d+):(.*)$')
  if ARGV[2] == '' or line == ARGV[2] then
    forget(token, size)
    redis.call('LREM', KEYS[1], 1, m)
  end
end
redis.call('SET', KEYS[3], math.max(total, 0))
return 1
"""

# The no-JS chat's transcript: the list `<p>t:<key>` of HTML lines, line number `tb` (record field) first;
# `tv` counts changes of lines already in it (an edit, a deletion, a reaction: its streams redraw), `st`
# numbers its streams (the newest is the current one), `pi` is where the current one is open, `rd` when a
# page was last told to redraw itself.

# KEYS: record, transcript, address set, owner's set. ARGV: ttl, final (1/0), the owner's first kept line
# number, n, n new lines, then (line number, html) pairs of changed lines. The instance of the open stream
# ('' for none), or false when the client has no record.
NOJS_APPEND = _SETTLE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local n = tonumber(ARGV[4])
local tb = tonumber(redis.call('HGET', KEYS[1], 'tb') or '0')
if n > 0 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 5, 4 + n)) end
local changed = false
for i = 5 + n, #ARGV, 2 do
  local at = tonumber(ARGV[i]) - tb
  if at >= 0 and at < redis.call('LLEN', KEYS[2]) then
    redis.call('LSET', KEYS[2], at, ARGV[i + 1])
    changed = true
  end
end
if changed then redis.call('HINCRBY', KEYS[1], 'tv', 1) end
local base = tonumber(ARGV[3])
if base > tb then
  redis.call('LTRIM', KEYS[2], base - tb, -1)
  redis.call('HSET', KEYS[1], 'tb', base)
end
settle(ARGV[2] == '1', ARGV[1])
return redis.call('HGET', KEYS[1], 'pi') or ''
"""

# KEYS: record, transcript. ARGV: this instance, now. A new stream of the chat: it is the current one.
# {its number, the instance of the one before ('' for none), tb, tv, ended, rd, settings, spy, lines...},
# or false (no such no-JS chat).
NOJS_BEGIN = """
if redis.call('HGET', KEYS[1], 'nj') ~= '1' then return false end
local mine = redis.call('HINCRBY', KEYS[1], 'st', 1)
local previous = redis.call('HGET', KEYS[1], 'pi') or ''
redis.call('HSET', KEYS[1], 'pi', ARGV[1], 'g', ARGV[2], 's', ARGV[2])
return {mine, previous, tonumber(redis.call('HGET', KEYS[1], 'tb') or '0'), tonumber(redis.call('HGET', KEYS[1], 'tv') or '0'),
        redis.call('HGET', KEYS[1], 'e') == '1' and 1 or 0, redis.call('HGET', KEYS[1], 'rd') or '0',
        redis.call('HGET', KEYS[1], 'cs') or '{}', redis.call('HGET', KEYS[1], 'sp') or '0', unpack(redis.call('LRANGE', KEYS[2], 0, -1))}
"""

# KEYS: record, transcript. ARGV: the stream's number, the next line number it shows, now.
# {'ok', tb, tv, ended, rd, lines from that number...}; {'superseded'} (a newer stream took over); {'gone'}.
NOJS_READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
if redis.call('HGET', KEYS[1], 'st') ~= ARGV[1] then return {'superseded'} end
redis.call('HSET', KEYS[1], 's', ARGV[3])
local tb = tonumber(redis.call('HGET', KEYS[1], 'tb') or '0')
return {'ok', tb, tonumber(redis.call('HGET', KEYS[1], 'tv') or '0'), redis.call('HGET', KEYS[1], 'e') == '1' and 1 or 0,
        redis.call('HGET', KEYS[1], 'rd') or '0', unpack(redis.call('LRANGE', KEYS[2], math.max(tonumber(ARGV[2]) - tb, 0), -1))}
"""

# KEYS: record, transcript. ARGV: the stream's number, now, done (1: it showed the chat's end: the chat is
# gone). 1 if it was the current stream (no stream is open now), else 0.
NOJS_END = """
if redis.call('HGET', KEYS[1], 'st') ~= ARGV[1] then return 0 end
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
redis.call('HDEL', KEYS[1], 'pi')
redis.call('HSET', KEYS[1], 's', ARGV[2])
return 1
"""
