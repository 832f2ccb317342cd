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


# One atomic append of several commits. ARGV[1]: "1" with a feed, "0" without, then one
# character per commit saying what it carries besides its records: "-" nothing, "i" a
# commit id, "s" a snapshot, "b" both. ARGV[2]: the commits' time, "<seconds>.<micros>"
# since the epoch by the writer's clock. KEYS per commit: its events list, its commits
# hash, its snapshot hash if it has a snapshot, its bucket's feed stream with a feed. ARGV
# per commit, from ARGV[3] on: its expected head, its records as one msgpack array of raw
# strings, its id if it has one, its snapshot if it has one. A key or argument a commit
# does not use is not sent: each one costs the client and the server.
#
# Nothing is written unless everything can be: for each commit, its id is not in the
# commits hash and its head (the list's length: sequence s is list index s-1) is the
# expected one, else the reply is {index (0-based), head}, head ALREADY_STORED for a stored
# id. A key of another type fails with WRONGTYPE, and Redis keeps the writes a script
# made before an error, so every key is read before the first write (HEXISTS and LLEN
# read the commits hash and the list, HLEN and XLEN the others) except the key of that
# first write, whose failure leaves nothing written: the first commit's feed stream, or
# without a feed its commits hash.
#
# Then each commit gets its feed entry (fields k the aggregate key, cut out of the events
# key, which is the feed key's tag + "e:" + key; s the first sequence; r the packed
# records, reused as sent; i the id, if any; t the time), its field in the commits hash
# (its id, or without one NUL + its last sequence: ids hold no control characters) valued
# "first last time", its records RPUSHed in chunks (Lua's unpack() has a stack limit), and
# its snapshot, which replaces the older one.
APPEND = LuaScript(f"""
local flags = ARGV[1]
local feed = string.byte(flags) == 49
local function commit(c, k, a)
  local f = string.byte(flags, c + 2)
  local id, snapshot, snapshots, stream
  local nk, na = k + 2, a + 2
  if f == 105 or f == 98 then
    id, na = ARGV[na], na + 1
  end
  if f == 115 or f == 98 then
    snapshot, snapshots, na, nk = ARGV[na], KEYS[nk], na + 1, nk + 1
  end
  if feed then
    stream, nk = KEYS[nk], nk + 1
  end
  return KEYS[k], KEYS[k + 1], snapshots, stream, ARGV[a], ARGV[a + 1], id, snapshot, nk, na
end
local k, a = 1, 3
for c = 0, #flags - 2 do
  local events, commits, snapshots, stream, expected, _, id, _, nk, na = commit(c, k, a)
  if id then
    if redis.call('HEXISTS', commits, id) == 1 then
      return {{c, {ALREADY_STORED}}}
    end
  elseif c > 0 or feed then
    redis.call('HLEN', commits)
  end
  local head = redis.call('LLEN', events)
  if head ~= tonumber(expected) then
    return {{c, head}}
  end
  if snapshots then
    redis.call('HLEN', snapshots)
  end
  if stream and c > 0 then
    redis.call('XLEN', stream)
  end
  k, a = nk, na
end
local now = ARGV[2]
k, a = 1, 3
for c = 0, #flags - 2 do
  local events, commits, snapshots, stream, expected, packed, id, snapshot, nk, na = commit(c, k, a)
  local first = tonumber(expected) + 1
  local records = cmsgpack.unpack(packed)
  local n = #records
  local last = first + n - 1
  if stream then
    local key = string.sub(events, #stream + 2)
    if id then
      redis.call('XADD', stream, '*', 'k', key, 's', first, 'r', packed, 'i', id, 't', now)
    else
      redis.call('XADD', stream, '*', 'k', key, 's', first, 'r', packed, 't', now)
    end
  end
  redis.call('HSET', commits, id or ('\\0' .. last), first .. ' ' .. last .. ' ' .. now)
  for i = 1, n, 4096 do
    redis.call('RPUSH', events, unpack(records, i, math.min(i + 4095, n)))
  end
  if snapshots then
    redis.call('HSET', snapshots, 's', last, 'd', snapshot)
  end
  k, a = nk, na
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
