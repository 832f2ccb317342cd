"""``RedisDriver``: the keyvalue primitives as one Lua script per commit and per load,
plus the durable feed (a stream per bucket) and the consumers' small values.

The key layout is described in the package docstring (``kvsourcing.stores.redis``).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

from msgpack import packb, unpackb
from redis import Redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kvsourcing.errors import (
    CommitTooLargeError,
    ConfigurationError,
    EncodingError,
    StoreUnavailableError,
)
from kvsourcing.stores.keyvalue import (
    ALREADY_STORED,
    DEFAULT_COMMIT_ID_TTL,
    Commit,
    FeedEntry,
    Loaded,
    Snapshot,
    partition_bucket,
    validate_commit_id_ttl,
)
from kvsourcing.stores.redis.push import FeedWaker, block_milliseconds, blocking

DEFAULT_PREFIX = "kvsourcing"
DEFAULT_BUCKETS = 1024
MAX_ARGUMENT_BYTES = 512 * 1024 * 1024
"""Redis's default ``proto-max-bulk-len``: the longest string one command argument may be."""

# Failures that mean "the server cannot serve us now", as opposed to a bug or bad data:
# OOM, a server at its maxmemory that refuses writes; READONLY, a primary demoted to
# replica by a failover, until the client reconnects; ClusterError, redis-py's cluster
# client gave up following redirections, as while slots migrate; RedisClusterException,
# it reached no node that could serve, as when every node is down or the slot maps it
# read do not cover or agree (SlotNotCoveredError included). Its other uses, keys of
# several slots in one call, cannot arise from the driver's calls, each of one hash tag.
UNAVAILABLE = (
    OutOfMemoryError,
    ClusterError,
    RedisConnectionError,
    RedisTimeoutError,
    NoPermissionError,
    ReadOnlyError,
    ClusterDownError,
    RedisClusterException,
)

UNAVAILABLE_REPLY = re.compile(r"(?:^|: )(?:NOREPLICAS|MISCONF|BUSY) ")
"""Error replies that redis-py raises as a plain ``ResponseError`` but that mean the server
refuses for now, having written nothing: NOREPLICAS, a primary with ``min-replicas-to-write``
that has too few replicas in sync (as once its replica was promoted away); MISCONF, a
server that cannot persist; BUSY, a server running a long script. Matched at the start,
or after the ``: `` with which Redis before 7 wraps an error raised inside a script."""

WRONGTYPE_REPLY = re.compile(r"(?:^|: )WRONGTYPE ")
"""The reply to a command on a key holding another type of value (in a script too)."""

# KEYS: events list, snapshot hash, commit-id sorted set, the bucket's feed stream. ARGV:
# expected head, "1" if a snapshot is given, the snapshot (or ""), "1" if a commit id is
# given, the id (or ""), the records as one msgpack array of raw strings (what
# ``pack_records`` makes), the commit-id TTL in seconds ("" for ever). A stored commit id
# younger than the TTL wins over everything (a re-send after a lost reply); ids are
# scored by the server's clock (TIME), and a commit drops those past the TTL. The head is
# the list's length: sequence s is list index s-1. The array is unpacked with Lua's
# cmsgpack and RPUSHed in chunks (Lua's unpack() has a stack limit), and the same bytes
# become the feed entry: XADD fields k (the aggregate key, cut out of KEYS[1], which is
# the feed key's tag + "e:" + key), s (the first sequence), r (the array). Sending the
# records packed rather than as separate arguments, then reusing them, was the cheapest
# of the encodings measured (bench/README.md).
APPEND_SCRIPT = f"""
local now
if ARGV[4] == '1' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) + tonumber(time[2]) / 1000000
  local stored = redis.call('ZSCORE', KEYS[3], ARGV[5])
  if stored and (ARGV[7] == '' or tonumber(stored) > now - tonumber(ARGV[7])) then
    return {ALREADY_STORED}
  end
end
local head = redis.call('LLEN', KEYS[1])
if head ~= tonumber(ARGV[1]) then
  return head
end
local records = cmsgpack.unpack(ARGV[6])
local n = #records
for i = 1, n, 4096 do
  redis.call('RPUSH', KEYS[1], unpack(records, i, math.min(i + 4095, n)))
end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 's', head + n, 'd', ARGV[3])
end
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[3], now, ARGV[5])
  if ARGV[7] ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[7]))
  end
end
redis.call('XADD', KEYS[4], '*', 'k', string.sub(KEYS[1], #KEYS[4] + 2), 's', head + 1, 'r', ARGV[6])
return nil
"""

# KEYS: events list, snapshot hash. ARGV: after. Returns {snapshot sequence or 0,
# snapshot or nil, records after max(after, snapshot sequence)}.
LOAD_SCRIPT = """
local from = tonumber(ARGV[1])
local seq, state = 0, false
local snap = redis.call('HMGET', KEYS[2], 's', 'd')
if snap[1] then
  local s = tonumber(snap[1])
  if s > from then
    seq, state, from = s, snap[2], s
  end
end
return {seq, state, redis.call('LRANGE', KEYS[1], from, -1)}
"""

# KEYS: the value. ARGV: "1" if a value is expected (else it must be absent), the
# expected value (or ""), "1" if a new value is given (else delete), the new value (or
# ""), its time to live in milliseconds (or "" for none). Returns 1 if swapped, else 0.
SWAP_SCRIPT = """
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
"""


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it can open a hash tag: a non-empty ``str`` without braces."""
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError(f"Redis key prefix must be a non-empty str, not {prefix!r}")
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(
            f"Redis key prefix {prefix!r} must not contain '{{' or '}}': it opens the bucket's hash tag"
        )
    return prefix


def validate_buckets(buckets: object) -> int:
    """Return ``buckets`` if it is a usable bucket count (an ``int`` >= 1)."""
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise ConfigurationError(f"Redis bucket count must be an int >= 1, not {buckets!r}")
    return buckets


def describe_client(client: Redis | RedisCluster) -> str:
    """``host:port`` (or the socket path, or every startup node) the client talks to."""
    if isinstance(client, RedisCluster):
        return ",".join(node.name for node in client.nodes_manager.startup_nodes.values())
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def client_password(client: Redis | RedisCluster) -> str | None:
    """The password the client sends, so that messages can be scrubbed of it."""
    if isinstance(client, RedisCluster):
        return client.nodes_manager.connection_kwargs.get("password")
    return client.connection_pool.connection_kwargs.get("password")


def unavailable(where: str, err: BaseException, password: str | None) -> StoreUnavailableError:
    """A ``StoreUnavailableError`` naming the server and the cause, never the password."""
    cause = f"{type(err).__name__}: {err}"
    if password:
        cause = cause.replace(password, "***")
    return StoreUnavailableError(f"Redis at {where} is unavailable: {cause}")


def pack_records(records: Sequence[bytes]) -> bytes:
    """Records as the append script takes them and the feed keeps them: one msgpack array
    of raw strings (the pre-2013 ``raw`` family, the one Lua's cmsgpack decodes)."""
    return packb(records, use_bin_type=False)


def unpack_records(packed: bytes) -> list[bytes]:
    """The records of a feed entry's ``r`` field (what ``pack_records`` made); raises
    ``ValueError`` (msgpack's errors are ``ValueError``s) unless it is an array of strings."""
    records = unpackb(packed, raw=True, use_list=True)
    if not isinstance(records, list) or not all(isinstance(record, bytes) for record in records):
        raise ValueError(f"not an array of raw strings: {type(records).__name__}")
    return records


def xread_streams(reply: Any) -> list[tuple[bytes, Any]]:
    """``(stream, entries)`` of an ``XREAD`` reply in each shape redis-py parses it to: a list
    of ``[stream, entries]`` (RESP2, and RESP3 by default), a dict of entries
    (``legacy_responses=False``) or a dict of one-item lists of entries (``protocol=3``)."""
    if not isinstance(reply, dict):
        return [(stream, entries) for stream, entries in reply]
    return [
        (stream, entries[0] if entries and not isinstance(entries[0][0], bytes | str) else entries)
        for stream, entries in reply.items()
    ]


def feed_entry(bucket: int, position: bytes, fields: dict[bytes, bytes]) -> FeedEntry:
    """The ``FeedEntry`` of a stream entry as redis-py parses it; ``EncodingError`` when
    the entry is not one the append script wrote (its fields missing or corrupt)."""
    try:
        return FeedEntry(
            bucket,
            position.decode(),
            fields[b"k"].decode("utf-8", "surrogatepass"),
            int(fields[b"s"]),
            unpack_records(fields[b"r"]),
            None if b"i" not in fields else fields[b"i"].decode("utf-8", "surrogatepass"),
            None if b"t" not in fields else float(fields[b"t"]),
        )
    except (KeyError, ValueError, TypeError) as err:
        raise EncodingError(
            f"feed entry {position.decode(errors='replace')} of bucket {bucket} is corrupt: "
            f"{type(err).__name__}: {err}"
        ) from err


class RedisDriver:
    """The keyvalue driver on Redis or Redis Cluster: one script call per commit and per load.

    It is a ``FeedDriver``: each commit also adds an entry to its bucket's feed stream
    in the same script, ``read_feed`` reads the streams of many buckets in one round
    trip per node, and ``read_value``/``swap_value`` keep small values with
    compare-and-swap in a script.

    ``client`` is used as given; ``close`` closes it only when ``owns_client`` is true
    (the client was built by ``from_url``), since a caller's client may serve others.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        buckets: int = DEFAULT_BUCKETS,
        commit_id_ttl: float | None = DEFAULT_COMMIT_ID_TTL,
        owns_client: bool = False,
    ) -> None:
        if not isinstance(client, Redis | RedisCluster):
            raise TypeError(
                f"client must be a redis.Redis or redis.cluster.RedisCluster, not {type(client).__name__}"
            )
        if client.get_encoder().decode_responses:
            raise ConfigurationError(
                "the Redis client must not decode responses (decode_responses=True): the store reads "
                "back bytes that are not text"
            )
        self.client = client
        self.prefix = validate_prefix(prefix)
        self.buckets = validate_buckets(buckets)
        self.commit_id_ttl = validate_commit_id_ttl(commit_id_ttl)
        self._commit_id_ttl = "" if self.commit_id_ttl is None else repr(self.commit_id_ttl)
        self._owns_client = owns_client
        self.max_argument_bytes = MAX_ARGUMENT_BYTES
        """The largest commit (its packed records, or its snapshot) sent: set it to the
        server's ``proto-max-bulk-len`` where that is lowered, so that a larger commit
        raises ``CommitTooLargeError`` instead of the server's protocol error."""
        self._closed = False
        self._tags = [f"{{{prefix}:b{bucket}}}:".encode() for bucket in range(self.buckets)]
        self._feeds = [tag + b"f" for tag in self._tags]
        self._bucket_of_feed = {feed: bucket for bucket, feed in enumerate(self._feeds)}
        self._value_prefix = f"{{{prefix}:v:".encode()
        self._append = client.register_script(APPEND_SCRIPT)
        self._load = client.register_script(LOAD_SCRIPT)
        self._swap = client.register_script(SWAP_SCRIPT)
        self._cluster = isinstance(client, RedisCluster)
        self._waker = (
            FeedWaker(client, f"{{{prefix}:b".encode(), self._bucket_of_feed) if self._cluster else None
        )
        self._evalsha = client.evalsha
        self._where = describe_client(client)
        self._password = client_password(client)

    def keys(self, key: str) -> tuple[bytes, bytes, bytes]:
        """The events list, snapshot hash and commit-id sorted set of ``key``, in one hash slot."""
        tag = self._tags[partition_bucket(key, self.buckets)]
        raw = key.encode("utf-8", "surrogatepass")
        return tag + b"e:" + raw, tag + b"s:" + raw, tag + b"c:" + raw

    def feed_key(self, bucket: int) -> bytes:
        """The stream that is bucket ``bucket``'s feed (in the bucket's hash slot)."""
        return self._feeds[bucket]

    def value_key(self, name: str) -> bytes:
        """The string key holding the small value ``name`` (its own hash tag)."""
        return self._value_prefix + name.encode("utf-8", "surrogatepass") + b"}"

    def append(self, commit: Commit) -> int | None:
        """Append ``commit`` atomically if the aggregate is at ``commit.expected``.

        Returns ``None`` when written, ``ALREADY_STORED`` when ``commit.commit_id`` was
        stored by an earlier commit of the aggregate, else the actual head (nothing
        written in either case).
        """
        snapshot, commit_id = commit.snapshot, commit.commit_id
        bucket = partition_bucket(commit.key, self.buckets)
        tag = self._tags[bucket]
        raw = commit.key.encode("utf-8", "surrogatepass")
        keys = (tag + b"e:" + raw, tag + b"s:" + raw, tag + b"c:" + raw, self._feeds[bucket])
        records = pack_records(commit.records)
        for what, size in (("records", len(records)), ("snapshot", len(snapshot or b""))):
            if size > self.max_argument_bytes:
                raise CommitTooLargeError(
                    f"cannot commit {commit.key!r}: {size} bytes of {what}, more than the "
                    f"{self.max_argument_bytes} bytes one Redis argument may hold (proto-max-bulk-len); "
                    "commit fewer or smaller events, or keep large states out of snapshots"
                )
        args = [
            commit.expected,
            b"0" if snapshot is None else b"1",
            b"" if snapshot is None else snapshot,
            b"0" if commit_id is None else b"1",
            "" if commit_id is None else commit_id,
            records,
            self._commit_id_ttl,
        ]
        with self._served():
            return self._run(self._append, keys, args)

    def load(self, key: str, after: int, *, use_snapshot: bool = True) -> Loaded:
        """The newest snapshot newer than ``after`` (if wanted) and every record after it.

        Without a snapshot this is one ``LRANGE`` (atomic on its own, and cheaper than
        passing the records through Lua); with one, the script reads both consistently.
        """
        events, snapshots, _ = self.keys(key)
        with self._served():
            if not use_snapshot:
                return Loaded(None, after + 1, self.client.lrange(events, after, -1))
            sequence, state, records = self._run(self._load, (events, snapshots), (after,))
        if state is None:
            return Loaded(None, after + 1, records)
        return Loaded(Snapshot(sequence, state), sequence + 1, records)

    pushes = True

    def read_feed(self, after: dict[int, str | None], limit: int, *, wait: float = 0.0) -> list[FeedEntry]:
        """Up to ``limit`` entries of each bucket in ``after`` after its position (a stream
        id; ``None``: from the start), oldest first within each bucket, in one round trip
        per node: on a single node one ``XREAD COUNT limit STREAMS`` of every bucket's
        stream (``BLOCK`` up to ``wait`` seconds when nothing is new); on a Cluster one
        exclusive ``XRANGE`` per bucket in a pipeline (one batch per node); with ``wait``,
        the ``FeedWaker`` (``kvsourcing.stores.redis.push``) skips the buckets it knows hold
        nothing new, and waits for a change when nothing is.
        """
        if not after:
            return []
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        count = self.buckets
        for bucket in after:
            if not 0 <= bucket < count:
                raise ValueError(f"bucket {bucket} is not in 0 .. {count - 1}")
        with self._served():
            if not self._cluster:
                replies = self._read_node(after, limit, wait)
            else:
                waker = self._waker if wait > 0 else None
                if waker is None:
                    replies = self._read_cluster(after, limit)
                else:
                    replies = waker.read(after, limit, wait, self._read_cluster)
        return [
            feed_entry(bucket, position, fields) for bucket, reply in replies for position, fields in reply
        ]

    def _read_node(self, after: dict[int, str | None], limit: int, wait: float) -> list[tuple[int, Any]]:
        feeds = self._feeds
        keys = [feeds[bucket] for bucket in after]
        positions = ["0-0" if position is None else position for position in after.values()]
        command = ["XREAD", "COUNT", limit, "STREAMS", *keys, *positions]
        if wait > 0:
            command = blocking(command, block_milliseconds(self.client, wait))
        replies = self.client.execute_command(*command)
        if not replies:
            return []
        buckets = self._bucket_of_feed
        return [(buckets[key], entries) for key, entries in xread_streams(replies)]

    def _read_cluster(self, after: dict[int, str | None], limit: int) -> list[tuple[int, Any]]:
        pipe = self.client.pipeline()
        feeds = self._feeds
        try:
            for bucket, position in after.items():
                start = "-" if position is None else "(" + position
                pipe.execute_command("XRANGE", feeds[bucket], start, "+", "COUNT", limit)
            return list(zip(after, pipe.execute(), strict=True))
        finally:
            pipe.reset()

    def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        """``XTRIM <feed> MINID`` just past the earliest of ``checkpoints`` (stream ids
        ``ms-seq``, compared as numbers); returns how many entries went."""
        if not checkpoints:
            return 0
        ms, seq = min(tuple(int(part) for part in p.split("-")) for p in checkpoints)
        with self._served():
            return int(self.client.xtrim(self.feed_key(bucket), minid=f"{ms}-{seq + 1}", approximate=False))

    def read_value(self, name: str) -> bytes | None:
        """The value stored under ``name`` (``None`` when absent or expired)."""
        with self._served():
            return self.client.get(self.value_key(name))

    def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        """The values of ``names``, in order: one ``MGET`` on a node; on a Cluster, where
        each name has a slot of its own, one ``MGET`` per slot, sent together."""
        keys = [self.value_key(name) for name in names]
        with self._served():
            if self._cluster:
                return self.client.mget_nonatomic(keys)
            return self.client.mget(keys)

    def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        """Atomically replace ``name``'s value by ``new`` (``None`` deletes it) if it is
        ``expected`` (``None``: absent or expired); ``ttl`` seconds makes ``new`` expire
        (``SET ... PX``, rounded up to a millisecond). Returns whether it was replaced."""
        milliseconds = "" if ttl is None or new is None else max(1, math.ceil(ttl * 1000))
        args = (
            b"0" if expected is None else b"1",
            b"" if expected is None else expected,
            b"0" if new is None else b"1",
            b"" if new is None else new,
            milliseconds,
        )
        with self._served():
            return self._run(self._swap, (self.value_key(name),), args) == 1

    @contextlib.contextmanager
    def _served(self) -> Iterator[None]:
        """Run calls to the server with redis-py's failures translated: ``StoreUnavailableError``
        when the server cannot serve now, ``ConfigurationError`` when the store is pointed at
        the wrong place (a database the server lacks, keys of another application under the
        prefix); any other error reply (a bug) is raised as redis-py gives it."""
        try:
            yield
        except UNAVAILABLE as err:
            raise unavailable(self._where, err, self._password) from err
        except ResponseError as err:
            message = str(err)
            if UNAVAILABLE_REPLY.search(message):
                raise unavailable(self._where, err, self._password) from err
            if WRONGTYPE_REPLY.search(message):
                raise ConfigurationError(
                    f"Redis at {self._where}: a key under the prefix {self.prefix!r} holds a value of "
                    f"another type ({message}); another application writes there: give the store a "
                    "prefix of its own"
                ) from err
            if "DB index is out of range" in message:
                raise ConfigurationError(
                    f"Redis at {self._where} has no such database ({message}): use one it has "
                    "(0-15 unless its 'databases' setting says otherwise)"
                ) from err
            raise

    def _run(self, script: Script, keys: tuple[bytes, ...], args: list[Any] | tuple[Any, ...]) -> Any:
        """EVALSHA ``script``; on NOSCRIPT (a new, flushed or failed-over server) load it and retry.

        ``Script.__call__`` does the same, but costs a tenth of a small commit's time.
        """
        try:
            return self._evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.client.script_load(script.script)
            return self._evalsha(script.sha, len(keys), *keys, *args)

    def close(self) -> None:
        """Close the client if this driver built it (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._waker is not None:
            self._waker.close()
        if self._owns_client:
            self.client.close()
