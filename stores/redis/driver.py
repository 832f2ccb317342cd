"""``RedisDriver``: the keyvalue primitives as one Lua script per commit and per load.

The key layout is described in the package docstring (``kvsourcing.stores.redis``).
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import (
    ClusterDownError,
    NoPermissionError,
    NoScriptError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kvsourcing.errors import ConfigurationError, StoreUnavailableError
from kvsourcing.stores.keyvalue.driver import ALREADY_STORED, Commit, Loaded, Snapshot, partition_bucket

DEFAULT_PREFIX = "kvsourcing"
DEFAULT_BUCKETS = 1024

# Failures that mean "the server cannot serve us now", as opposed to a bug or bad data.
UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    NoPermissionError,
    ClusterDownError,
    SlotNotCoveredError,
)

# KEYS: events list, snapshot hash, commit-id set. ARGV: expected head, "1" if a snapshot
# is given, the snapshot (or ""), "1" if a commit id is given, the id (or ""), then the
# records. A stored commit id wins over everything (a re-send after a lost reply). The
# head is the list's length: sequence s is list index s-1. RPUSH goes in chunks because
# Lua's unpack() has a stack limit.
APPEND_SCRIPT = f"""
if ARGV[4] == '1' and redis.call('SISMEMBER', KEYS[3], ARGV[5]) == 1 then
  return {ALREADY_STORED}
end
local head = redis.call('LLEN', KEYS[1])
if head ~= tonumber(ARGV[1]) then
  return head
end
local n = #ARGV
for i = 6, n, 4096 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 4095, n)))
end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 's', head + n - 5, 'd', ARGV[3])
end
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[3], ARGV[5])
end
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


class RedisDriver:
    """The keyvalue driver on Redis or Redis Cluster: one script call per commit and per load.

    ``client`` is used as given; ``close`` closes it only when ``owns_client`` is true
    (the client was built by ``from_url``), since a caller's client may serve others.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        buckets: int = DEFAULT_BUCKETS,
        owns_client: bool = False,
    ) -> None:
        if not isinstance(client, Redis | RedisCluster):
            raise TypeError(
                f"client must be a redis.Redis or redis.cluster.RedisCluster, not {type(client).__name__}"
            )
        self.client = client
        self.prefix = validate_prefix(prefix)
        self.buckets = validate_buckets(buckets)
        self._owns_client = owns_client
        self._closed = False
        self._tags = [f"{{{prefix}:b{bucket}}}:".encode() for bucket in range(self.buckets)]
        self._append = client.register_script(APPEND_SCRIPT)
        self._load = client.register_script(LOAD_SCRIPT)
        self._evalsha = client.evalsha
        self._where = describe_client(client)
        self._password = client_password(client)

    def keys(self, key: str) -> tuple[bytes, bytes, bytes]:
        """The events list, snapshot hash and commit-id set of ``key``, in one hash slot."""
        tag = self._tags[partition_bucket(key, self.buckets)]
        raw = key.encode("utf-8", "surrogatepass")
        return tag + b"e:" + raw, tag + b"s:" + raw, tag + b"c:" + raw

    def append(self, commit: Commit) -> int | None:
        """Append ``commit`` atomically if the aggregate is at ``commit.expected``.

        Returns ``None`` when written, ``ALREADY_STORED`` when ``commit.commit_id`` was
        stored by an earlier commit of the aggregate, else the actual head (nothing
        written in either case).
        """
        snapshot, commit_id = commit.snapshot, commit.commit_id
        args = [
            commit.expected,
            b"0" if snapshot is None else b"1",
            b"" if snapshot is None else snapshot,
            b"0" if commit_id is None else b"1",
            "" if commit_id is None else commit_id,
            *commit.records,
        ]
        try:
            return self._run(self._append, self.keys(commit.key), args)
        except UNAVAILABLE as err:
            raise unavailable(self._where, err, self._password) from err

    def load(self, key: str, after: int, *, use_snapshot: bool = True) -> Loaded:
        """The newest snapshot newer than ``after`` (if wanted) and every record after it.

        Without a snapshot this is one ``LRANGE`` (atomic on its own, and cheaper than
        passing the records through Lua); with one, the script reads both consistently.
        """
        events, snapshots, _ = self.keys(key)
        try:
            if not use_snapshot:
                return Loaded(None, after + 1, self.client.lrange(events, after, -1))
            sequence, state, records = self._run(self._load, (events, snapshots), (after,))
        except UNAVAILABLE as err:
            raise unavailable(self._where, err, self._password) from err
        if state is None:
            return Loaded(None, after + 1, records)
        return Loaded(Snapshot(sequence, state), sequence + 1, records)

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
        if self._owns_client:
            self.client.close()
