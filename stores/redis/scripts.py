"""The Redis driver's Lua scripts, each with the SHA1 under which ``EVALSHA`` runs it.

Every script touches only the keys it is given, so it runs on a Cluster when they share a
slot. ``protocol`` builds their KEYS and ARGV and reads their replies; the I/O layers run
them (``EVALSHA``, loading the script on ``NOSCRIPT``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from kvsourcing.stores.keyvalue import ALREADY_STORED


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A script's source, and the SHA1 of it that ``EVALSHA`` names."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


# One atomic append of several commits. ARGV[1]: the keys per commit, 4 (events list,
# snapshot hash, commits hash, the bucket's feed stream) or 3 without a feed. Then five
# ARGV per commit: expected head, "1" if a snapshot is given, the snapshot (or ""), the
# commit id ("" for none: an id is never empty), the records as one msgpack array of raw
# strings. Every check comes before any write, so a refusal writes nothing: for each
# commit, its id is not in the commits hash and its head (the list's length: sequence s
# is list index s-1) is the expected one; keys of another type fail here too (WRONGTYPE),
# not half-way through the writes. The refusal is {index (0-based), head}, head
# ALREADY_STORED for a stored id. Then each commit's records are RPUSHed in chunks (Lua's
# unpack() has a stack limit), its snapshot replaces the older one, the commits hash maps
# its id (or, without one, NUL + its last sequence: ids hold no control characters) to
# "first last time", time the server's (TIME), and its feed entry gets fields k (the
# aggregate key, cut out of the events key, which is the feed key's tag + "e:" + key), s
# (the first sequence), r (the packed records, reused as sent), i (the id, if any), t.
APPEND = LuaScript(f"""
local per = tonumber(ARGV[1])
local count = #KEYS / per
for c = 0, count - 1 do
  local k, a = c * per, 1 + c * 5
  local id = ARGV[a + 4]
  if id ~= '' then
    if redis.call('HEXISTS', KEYS[k + 3], id) == 1 then
      return {{c, {ALREADY_STORED}}}
    end
  else
    redis.call('HLEN', KEYS[k + 3])
  end
  local head = redis.call('LLEN', KEYS[k + 1])
  if head ~= tonumber(ARGV[a + 1]) then
    return {{c, head}}
  end
  if ARGV[a + 2] == '1' then
    redis.call('HLEN', KEYS[k + 2])
  end
  if per == 4 then
    redis.call('XLEN', KEYS[k + 4])
  end
end
local time = redis.call('TIME')
local now = time[1] .. '.' .. string.format('%06d', tonumber(time[2]))
for c = 0, count - 1 do
  local k, a = c * per, 1 + c * 5
  local first = tonumber(ARGV[a + 1]) + 1
  local records = cmsgpack.unpack(ARGV[a + 5])
  local n = #records
  for i = 1, n, 4096 do
    redis.call('RPUSH', KEYS[k + 1], unpack(records, i, math.min(i + 4095, n)))
  end
  local last = first + n - 1
  if ARGV[a + 2] == '1' then
    redis.call('HSET', KEYS[k + 2], 's', last, 'd', ARGV[a + 3])
  end
  local id = ARGV[a + 4]
  local field = id
  if id == '' then
    field = '\\0' .. last
  end
  redis.call('HSET', KEYS[k + 3], field, first .. ' ' .. last .. ' ' .. now)
  if per == 4 then
    local key = string.sub(KEYS[k + 1], #KEYS[k + 4] + 2)
    if id == '' then
      redis.call('XADD', KEYS[k + 4], '*', 'k', key, 's', first, 'r', ARGV[a + 5], 't', now)
    else
      redis.call('XADD', KEYS[k + 4], '*', 'k', key, 's', first, 'r', ARGV[a + 5], 'i', id, 't', now)
    end
  end
end
return nil
""")

# KEYS: events list, snapshot hash, commits hash. ARGV: after, "1" to use the snapshot,
# a commit id to look for ("" for none), "1" for the commits' metadata. Returns {snapshot
# sequence or 0, snapshot or nil, records after max(after, snapshot sequence), 1 if the
# id is stored else 0, the commits hash's fields and values or nil}.
LOAD = LuaScript("""
local from = tonumber(ARGV[1])
local seq, state = 0, false
if ARGV[2] == '1' then
  local snap = redis.call('HMGET', KEYS[2], 's', 'd')
  if snap[1] then
    local s = tonumber(snap[1])
    if s > from then
      seq, state, from = s, snap[2], s
    end
  end
end
local stored = 0
if ARGV[3] ~= '' then
  stored = redis.call('HEXISTS', KEYS[3], ARGV[3])
end
local commits = false
if ARGV[4] == '1' then
  commits = redis.call('HGETALL', KEYS[3])
end
return {seq, state, redis.call('LRANGE', KEYS[1], from, -1), stored, commits}
""")

# KEYS: the value. ARGV: "1" if a value is expected (else it must be absent), the
# expected value (or ""), "1" if a new value is given (else delete), the new value (or
# ""), its time to live in milliseconds (or "" for none). Returns 1 if swapped, else 0.
SWAP = LuaScript("""
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then
    return 0
  end
elseif current then
  return 0
end
if ARGV[3] ~= '1' then
  redis.call('DEL', KEYS[1])
elseif ARGV[5] == '' then
  redis.call('SET', KEYS[1], ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
end
return 1
""")

# The rewrite primitive (kvsourcing reencrypt). KEYS: events list, snapshot hash. ARGV:
# the expected head, the snapshot's sequence ("" for none), the snapshot (or ""), then
# the records 1..head. Writes only if the list holds the expected head and, with a
# snapshot, the stored one is at its sequence; else returns the head. The list is
# replaced whole (DEL, then RPUSH in chunks: linear, where an LSET per index walks the
# list; readers never see it in between, as the script is atomic); the snapshot keeps
# its sequence. The commits hash and the feed are left as they are.
REWRITE = LuaScript("""
local head = redis.call('LLEN', KEYS[1])
if head ~= tonumber(ARGV[1]) then
  return head
end
if ARGV[2] ~= '' then
  local stored = redis.call('HMGET', KEYS[2], 's')[1]
  if not stored or tonumber(stored) ~= tonumber(ARGV[2]) then
    return head
  end
end
redis.call('DEL', KEYS[1])
local n = #ARGV
for i = 4, n, 4096 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 4095, n)))
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[2], 'd', ARGV[3])
end
return nil
""")
