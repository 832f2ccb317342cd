"""The Redis drivers: ``RedisDriver`` on a sync redis-py client, ``AsyncRedisDriver`` on a
``redis.asyncio`` one. One script call per append (of one or many commits), one round trip
per load, plus the feed and the consumers' values.

What they send and how they read replies is ``operations`` (steps over ``protocol`` and
``feed``), shared by both; each class only runs the steps on its client (``io``). The key
layout is described in the package docstring (``kvsourcing.stores.redis``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from kvsourcing.errors import ConfigurationError, KvSourcingError
from kvsourcing.steps import run_async, run_sync
from kvsourcing.stores.keyvalue import Commit, Loaded, Refusal, Snapshot
from kvsourcing.stores.keyvalue.base import DriverChecks
from kvsourcing.stores.redis.errors import CLIENT_ERRORS, client_password, describe_client, translate_error
from kvsourcing.stores.redis.feed import AsyncRedisFeed, RedisFeed
from kvsourcing.stores.redis.io import AsyncRedisIO, RedisIO
from kvsourcing.stores.redis.keys import DEFAULT_BUCKETS, DEFAULT_PREFIX, Layout
from kvsourcing.stores.redis.operations import (
    load_steps,
    read_values_steps,
    rewrite_steps,
    swap_value_steps,
)
from kvsourcing.stores.redis.protocol import MAX_ARGUMENT_BYTES, append_command, parse_refusal
from kvsourcing.stores.redis.scripts import APPEND

ClientT = TypeVar("ClientT", Redis | RedisCluster, AsyncRedis | AsyncRedisCluster)


class RedisBase(DriverChecks, Generic[ClientT]):
    """What both Redis drivers hold: the client, the key layout, the settings the operations
    read, and the translation of redis-py's errors.

    A load is the load script where snapshots are expected (``expect_snapshots``, as
    ``new_store`` sets for a store with a ``snapshot_interval``), else plain reads in one
    pipeline (``protocol.load_reads``), cheaper than passing the records through Lua; if
    those find a snapshot (another store writes them), the script loads it in a second
    round trip, and the driver expects snapshots from then on.

    ``client`` is used as given; ``close`` closes it only when ``owns_client`` is true
    (the client was built by ``from_url``), since a caller's client may serve others.
    """

    system_name = "redis"
    client_errors: ClassVar[tuple[type[BaseException], ...]] = CLIENT_ERRORS
    client_types: ClassVar[tuple[type, ...]] = ()
    client_names: ClassVar[str] = ""
    client: ClientT

    def __init__(
        self,
        client: ClientT,
        *,
        prefix: str = DEFAULT_PREFIX,
        buckets: int = DEFAULT_BUCKETS,
        feed: bool = True,
        owns_client: bool = False,
        expect_snapshots: bool = True,
    ) -> None:
        if not isinstance(client, self.client_types):
            raise TypeError(f"client must be a {self.client_names}, not {type(client).__name__}")
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
        self.cluster = isinstance(client, RedisCluster | AsyncRedisCluster)
        self.max_argument_bytes = MAX_ARGUMENT_BYTES
        """The largest commit (its packed records, or its snapshot) sent: set it to the
        server's ``proto-max-bulk-len`` where that is lowered, so that a larger commit
        raises ``CommitTooLargeError`` instead of the server's protocol error."""
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

    def translate(self, err: BaseException) -> KvSourcingError | None:
        return translate_error(err, where=self._where, password=self._password, prefix=self.prefix)


class RedisDriver(RedisBase[Redis | RedisCluster], RedisFeed):
    """The keyvalue ``FeedDriver`` on Redis or Redis Cluster (see ``RedisBase``): each commit
    also adds an entry to its bucket's feed stream in the same script (unless
    ``feed=False``), ``read_feed`` reads the streams of many buckets in one round trip per
    node, and ``read_value``/``swap_value`` keep small values with compare-and-swap."""

    client_types = (Redis, RedisCluster)
    client_names = "redis.Redis or redis.cluster.RedisCluster"

    def __init__(self, client: Redis | RedisCluster, **options: Any) -> None:
        super().__init__(client, **options)
        self.io = RedisIO(client)

    def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        """Write ``commits`` atomically in one script call (see ``protocol.append_command``)."""
        if not commits:
            return None
        try:
            return parse_refusal(self.io.script(APPEND, append_command(self, commits)))
        except CLIENT_ERRORS as err:
            self.reraise(err)

    def load(
        self, key: str, after: int, *, use_snapshot: bool = True, commit_id: str | None = None,
        metadata: bool = False,
    ) -> Loaded:  # fmt: skip
        """The newest snapshot newer than ``after`` (if wanted), the records after it, whether
        ``commit_id`` is stored and the commits' metadata (see ``operations.load_steps``)."""
        steps = load_steps(
            self, key, after, use_snapshot=use_snapshot, commit_id=commit_id, metadata=metadata
        )
        try:
            return run_sync(steps, self.io)
        except CLIENT_ERRORS as err:
            self.reraise(err)

    def rewrite(
        self, key: str, expected_head: int, records: Sequence[bytes], snapshot: Snapshot | None = None
    ) -> int | None:
        """The ``RewritingDriver`` primitive (``kvsourcing reencrypt``): one script over the
        aggregate's keys, atomic, on a Cluster too (they share a slot; ``scripts.REWRITE``)."""
        with self.served():
            return run_sync(rewrite_steps(self, key, expected_head, records, snapshot), self.io)

    def read_value(self, name: str) -> bytes | None:
        """The value stored under ``name`` (``None`` when absent or expired)."""
        with self.served():
            # bytes: the client does not decode responses (checked in __init__)
            value = cast("bytes | None", self.client.get(self.layout.value_key(name)))
            return value

    def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        """The values of ``names``, in order (see ``operations.read_values_steps``)."""
        with self.served():
            return run_sync(read_values_steps(self, names), self.io)

    def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        """Atomically replace ``name``'s value by ``new`` (``None`` deletes it) if it is
        ``expected`` (``None``: absent or expired); ``ttl`` seconds makes ``new`` expire.
        Returns whether it was replaced."""
        with self.served():
            return run_sync(swap_value_steps(self, name, expected, new, ttl), self.io)

    def close_client(self) -> None:
        self.client.close()


class AsyncRedisDriver(RedisBase[AsyncRedis | AsyncRedisCluster], AsyncRedisFeed):
    """``RedisDriver`` for asyncio, on a ``redis.asyncio.Redis`` or ``RedisCluster``: the
    same operations, awaited, on the same data."""

    client_types = (AsyncRedis, AsyncRedisCluster)
    client_names = "redis.asyncio.Redis or redis.asyncio.RedisCluster"

    def __init__(self, client: AsyncRedis | AsyncRedisCluster, **options: Any) -> None:
        super().__init__(client, **options)
        self.io = AsyncRedisIO(client)

    async def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        """See ``RedisDriver.append_many``."""
        if not commits:
            return None
        try:
            return parse_refusal(await self.io.script(APPEND, append_command(self, commits)))
        except CLIENT_ERRORS as err:
            self.reraise(err)

    async def load(
        self, key: str, after: int, *, use_snapshot: bool = True, commit_id: str | None = None,
        metadata: bool = False,
    ) -> Loaded:  # fmt: skip
        """See ``RedisDriver.load``."""
        steps = load_steps(
            self, key, after, use_snapshot=use_snapshot, commit_id=commit_id, metadata=metadata
        )
        try:
            return await run_async(steps, self.io)
        except CLIENT_ERRORS as err:
            self.reraise(err)

    async def read_value(self, name: str) -> bytes | None:
        """See ``RedisDriver.read_value``."""
        with self.served():
            value = cast("bytes | None", await self.client.get(self.layout.value_key(name)))
            return value

    async def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        """See ``RedisDriver.read_values``."""
        with self.served():
            return await run_async(read_values_steps(self, names), self.io)

    async def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        """See ``RedisDriver.swap_value``."""
        with self.served():
            return await run_async(swap_value_steps(self, name, expected, new, ttl), self.io)

    async def close_client(self) -> None:
        await self.client.aclose()
