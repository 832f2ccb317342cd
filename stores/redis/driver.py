"""``RedisDriver``: the keyvalue primitives on a sync redis-py client, one script call per
append (of one or many commits), one round trip per load, plus the feed and the
consumers' values.

What it sends and how it reads replies is ``protocol`` (and ``feed``), shared with an
asyncio driver; this module only runs the calls. The key layout is described in the
package docstring (``kvsourcing.stores.redis``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from kvsourcing.errors import ConfigurationError, KvSourcingError
from kvsourcing.stores.keyvalue import Commit, Loaded, Refusal
from kvsourcing.stores.redis.errors import CLIENT_ERRORS, client_password, describe_client, translate_error
from kvsourcing.stores.redis.feed import RedisFeed
from kvsourcing.stores.redis.keys import DEFAULT_BUCKETS, DEFAULT_PREFIX, Layout
from kvsourcing.stores.redis.protocol import (
    MAX_ARGUMENT_BYTES,
    LoadReads,
    ScriptCall,
    append_call,
    load_call,
    load_reads,
    parse_load,
    parse_reads,
    parse_refusal,
    swap_call,
)


class RedisDriver(RedisFeed):
    """The keyvalue driver on Redis or Redis Cluster: one script call per append, one round
    trip per load.

    A load is the load script where snapshots are expected (``expect_snapshots``, as
    ``new_store`` sets for a store with a ``snapshot_interval``), else plain reads in one
    pipeline (``protocol.load_reads``), cheaper than passing the records through Lua; if
    those find a snapshot (another store writes them), the script loads it in a second
    round trip, and the driver expects snapshots from then on.

    It is a ``FeedDriver``: each commit also adds an entry to its bucket's feed stream in
    the same script (unless ``feed=False``), ``read_feed`` reads the streams of many
    buckets in one round trip per node, and ``read_value``/``swap_value`` keep small
    values with compare-and-swap in a script.

    ``client`` is used as given; ``close`` closes it only when ``owns_client`` is true
    (the client was built by ``from_url``), since a caller's client may serve others.
    """

    system_name = "redis"
    client_errors: ClassVar[tuple[type[BaseException], ...]] = CLIENT_ERRORS

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        buckets: int = DEFAULT_BUCKETS,
        feed: bool = True,
        owns_client: bool = False,
        expect_snapshots: bool = True,
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
        self.layout = Layout(prefix, buckets)
        self.prefix = self.layout.prefix
        self.buckets = self.layout.buckets
        self.feed = bool(feed)
        self.owns_client = owns_client
        self.expect_snapshots = bool(expect_snapshots)
        self.cluster = isinstance(client, RedisCluster)
        self.max_argument_bytes = MAX_ARGUMENT_BYTES
        """The largest commit (its packed records, or its snapshot) sent: set it to the
        server's ``proto-max-bulk-len`` where that is lowered, so that a larger commit
        raises ``CommitTooLargeError`` instead of the server's protocol error."""
        self._evalsha = client.evalsha
        self._where = describe_client(client)
        self._password = client_password(client)

    def keys(self, key: str) -> tuple[bytes, bytes, bytes]:
        """The events list, snapshot hash and commits hash of ``key``, in one hash slot."""
        return self.layout.keys(key)

    def feed_key(self, bucket: int) -> bytes:
        """The stream that is bucket ``bucket``'s feed (in the bucket's hash slot)."""
        return self.layout.feed_key(bucket)

    def value_key(self, name: str) -> bytes:
        """The string key holding the small value ``name`` (its own hash tag)."""
        return self.layout.value_key(name)

    def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        """Write ``commits`` atomically in one script call (see ``protocol.append_call``)."""
        if not commits:
            return None
        call = append_call(
            self.layout,
            commits,
            feed=self.feed,
            cluster=self.cluster,
            max_argument_bytes=self.max_argument_bytes,
        )
        with self.served():
            return parse_refusal(self._run(call))

    def load(
        self, key: str, after: int, *, use_snapshot: bool = True, commit_id: str | None = None,
        metadata: bool = False,
    ) -> Loaded:  # fmt: skip
        """The newest snapshot newer than ``after`` (if wanted), the records after it, whether
        ``commit_id`` is stored and the commits' metadata: in one round trip, plain reads or
        the load script (see the class docstring); two when the reads find a snapshot."""
        reads = load_reads(
            self.layout, key, after, use_snapshot=use_snapshot, commit_id=commit_id, metadata=metadata,
            expect_snapshots=self.expect_snapshots,
        )  # fmt: skip
        with self.served():
            if reads is not None:
                loaded = parse_reads(key, after, reads, self._read(reads))
                if loaded is not None:
                    return loaded
                self.expect_snapshots = True
            call = load_call(
                self.layout, key, after, use_snapshot=use_snapshot, commit_id=commit_id, metadata=metadata
            )
            return parse_load(key, after, self._run(call))

    def _read(self, reads: LoadReads) -> list[Any]:
        """The replies to ``reads``: an ``LRANGE`` alone as it is, several commands in one
        pipeline (on a Cluster too: an aggregate's keys share a slot, hence a node)."""
        if len(reads.commands) == 1:
            _, events, start, end = reads.commands[0]
            return [self.client.lrange(events, start, end)]
        pipeline = self.client.pipeline(transaction=False)
        for command in reads.commands:
            pipeline.execute_command(*command)
        return cast("list[Any]", pipeline.execute())

    def read_value(self, name: str) -> bytes | None:
        """The value stored under ``name`` (``None`` when absent or expired)."""
        with self.served():
            return cast("bytes | None", self.client.get(self.layout.value_key(name)))

    def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        """The values of ``names``, in order: one ``MGET`` on a node; on a Cluster, where
        each name has a slot of its own, one ``MGET`` per slot, sent together."""
        keys = [self.layout.value_key(name) for name in names]
        with self.served():
            if isinstance(self.client, RedisCluster):
                values = self.client.mget_nonatomic(keys)
            else:
                values = self.client.mget(keys)
        return cast("list[bytes | None]", values)

    def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        """Atomically replace ``name``'s value by ``new`` (``None`` deletes it) if it is
        ``expected`` (``None``: absent or expired); ``ttl`` seconds makes ``new`` expire.
        Returns whether it was replaced."""
        with self.served():
            return bool(self._run(swap_call(self.layout, name, expected, new, ttl)) == 1)

    def translate(self, err: BaseException) -> KvSourcingError | None:
        return translate_error(err, where=self._where, password=self._password, prefix=self.prefix)

    def _run(self, call: ScriptCall) -> Any:
        """EVALSHA the call's script; on NOSCRIPT (a new, flushed or failed-over server) load
        it and retry. ``Script.__call__`` does the same, but costs a tenth of a small commit's time."""
        keys = call.keys
        try:
            return self._evalsha(call.script.sha, len(keys), *keys, *call.args)
        except NoScriptError:
            self.client.script_load(call.script.source)
            return self._evalsha(call.script.sha, len(keys), *keys, *call.args)

    def close_client(self) -> None:
        self.client.close()
