"""The Redis (and Redis Cluster) driver of the keyvalue event store.

Each append is one Lua script call (EVALSHA, falling back to loading the script on
NOSCRIPT) over every key of its commits, one or several aggregates: it checks each
commit's id and head, and reads every key it writes, before writing the feed entries, the
commits' metadata, the records and the snapshots, so it writes all or nothing (a key of
another type fails the reads, ``scripts.APPEND``). Each load is one round trip:
a script call that returns the snapshot, the records after it, whether a commit id is
stored and, if asked, the commits' metadata; or, for a store that writes no snapshots
(``snapshot_interval=0``), plain reads in one pipeline (``HMGET`` of the snapshot's
sequence, ``HEXISTS`` of the commit id, ``LRANGE`` of the records), which cost less than
passing the records through Lua and are consistent because records only grow
(``protocol.load_reads``); a snapshot found there (written by another store) is loaded by
the script in a second round trip. ``rewrite`` (``kvsourcing reencrypt``) replaces an
aggregate's records and snapshot in one script too. Encoding, validation and faults are
the keyvalue base's; this driver only stores bytes. The modules: ``keys`` (the layout),
``scripts`` (the Lua), ``protocol`` (requests and replies as data, sans-IO), ``feed``
(reading and trimming the feed), ``push``, ``waker`` and ``aio_waker`` (waiting for new
entries), ``errors`` (redis-py's failures translated), ``driver`` (the sync I/O), ``url``.

Commits of several aggregates (``commit_together``) are one script, so on a Cluster
their keys must share a slot: aggregates whose keys share a hash tag (``{...}``, as
``account-1{bank}`` and ``account-2{bank}``) share a bucket, hence a slot. Others raise
``CrossPartitionError`` before anything is sent.

Key layout
----------
An aggregate ``key`` falls in bucket ``b = partition_bucket(key, buckets)``, and all
its keys start with the bucket's hash tag, so that one script only touches one Cluster
slot, the bucket's feed included::

    {<prefix>:b<b>}:e:<key>   list: the encoded events; sequence s at index s-1,
                              so the aggregate's head is the list's length
    {<prefix>:b<b>}:s:<key>   hash: field ``s`` the snapshot's sequence,
                              field ``d`` the encoded snapshot (the newest only)
    {<prefix>:b<b>}:m:<key>   hash: one field per commit, its id (or, for a commit
                              without one, a NUL byte and its last sequence), valued
                              ``"<first> <last> <seconds>.<micros>"``: its sequences and
                              the writer's clock when it sent the commit, as on the
                              other backends (a ``TIME`` in the script cost a tenth of
                              its server time). A re-sent commit id is found here
                              (``HEXISTS``, in the append and the load scripts) for as
                              long as the aggregate exists: the idempotency window is
                              its whole history
    {<prefix>:b<b>}:f         stream: bucket b's feed, one entry per successful commit
                              (``XADD ... *``), fields ``k`` the aggregate key (UTF-8),
                              ``s`` its first sequence, ``r`` its records as one msgpack
                              array of raw strings, ``i`` its id (when it has one), ``t``
                              its time as in the commits hash; the entry's id is the
                              ``FeedEntry`` position. A store opened with ``feed=False``
                              writes none

Records written before commits kept metadata (no ``m:`` hash, feed entries without
``i`` and ``t``) load as they are, with no id or time; the ``c:<key>`` sorted sets of
commit ids that earlier versions wrote are no longer read, so a commit re-sent from
before the upgrade is not recognised.

Small values (the consumers' checkpoints, leases and member lists) are strings, each
with a hash tag of its own, so that they spread over a Cluster's nodes::

    {<prefix>:v:<name>}       string: the value, with a ``PX`` expiry when it was
                              swapped in with a ``ttl``

``<key>`` and ``<name>`` are used as UTF-8, verbatim. Redis hashes only what lies
between the first ``{`` and the next ``}``; the prefix has no braces, so an aggregate's
tag always ends after the bucket number and braces or colons in ``<key>`` change neither
the slot nor the meaning (the kind letter comes before the key, and the feed key ends
right after its ``f``, so no two keys can collide). A ``}`` in a value's ``<name>`` ends
its tag early: that only moves the one-key value to another slot. Value keys have ``v``
where aggregate keys have ``b<n>``, so the two never collide either. The bucket count is
fixed when a store is created: every process sharing the data must use the same
``prefix`` and ``buckets``. The default of 1024 buckets spreads evenly over the 16 384
slots, hence over any cluster's nodes.

The feed
--------
``read_feed`` reads the buckets a consumer holds in one round trip per node: one
``XREAD COUNT n STREAMS`` of all their streams on a single node (about 1 ms for 1024
empty buckets), one pipelined ``XRANGE`` per bucket on a Cluster, where one command may
not span slots (about 20 ms for 1024 buckets on 3 nodes, mostly redis-py's per-command
cost). ``swap_value`` is one script (GET, compare, then SET with ``PX`` or DEL).

What a commit's metadata costs, for as long as the aggregate exists: one field of its
``m:`` hash. Measured with ``MEMORY USAGE`` (Redis 7.0): up to 128 commits the hash is a
listpack, about 30 bytes a commit plus its id (62 bytes with the 32-character ids that
aggregates make); beyond, Redis makes it a hash table, about 72 bytes plus the id (112).

What a feed entry costs: each commit's records are stored twice, once in the
aggregate's list and once in the feed entry, with the aggregate key and the first
sequence. Measured with ``MEMORY USAGE`` for 58-byte records and 42-character keys: a
one-event commit takes 138 bytes of stream against 63 bytes per event in the list; a
ten-event commit 769 bytes (77 per event). On the commit path the ``XADD`` costs a few
microseconds of server time (bench/README.md). Each stream grows with every commit of
its bucket until ``trim_feed`` (behind ``kvsourcing.stores.keyvalue.trim_consumed`` and
``kvsourcing feed trim``) removes what every named consumer has consumed, with an exact
``XTRIM <feed> MINID`` just past the earliest of their checkpoints; a consumer started
afterwards does not see what was trimmed.

Positions are ids that Redis makes from its clock, never below the stream's last id, so
they increase within a bucket even when the clock steps back or a replica takes over
(as far as the replica had received the stream). The feed has the commit's durability.

Durability is the server's: a successful commit is in memory on the primary; with
``appendonly yes`` and ``appendfsync always`` it is on disk, with ``everysec`` up to a
second of commits may be lost on a crash; a replica may lag behind its primary.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from kvsourcing.stores import keyvalue
from kvsourcing.stores.keyvalue import KeyValueStore, check_options
from kvsourcing.stores.keyvalue.aio import AsyncKeyValueStore
from kvsourcing.stores.redis.driver import AsyncRedisDriver, RedisDriver
from kvsourcing.stores.redis.keys import DEFAULT_BUCKETS, DEFAULT_PREFIX, Layout
from kvsourcing.stores.redis.url import RedisUrl, build_async_client, build_client, parse_url

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_PREFIX",
    "AsyncRedisDriver",
    "RedisDriver",
    "from_url",
    "new_async_store",
    "new_store",
    "open_async",
]

DRIVER_OPTIONS = ("prefix", "buckets")


def new_store(
    client: Redis | RedisCluster,
    *,
    prefix: str = DEFAULT_PREFIX,
    buckets: int = DEFAULT_BUCKETS,
    feed: bool = True,
    **options: Any,
) -> KeyValueStore:
    """An event store on ``client`` (a ``redis.Redis`` or ``redis.cluster.RedisCluster``);
    ``feed=False`` keeps no feed; the other options (``snapshot_interval``, ``codec``,
    ``compression``, ``cipher``) go to the store. Closing the store leaves ``client`` open:
    it is the caller's, and may serve others."""
    check_options("redis", options, ())
    expect = expects_snapshots(options)
    driver = RedisDriver(client, prefix=prefix, buckets=buckets, feed=feed, expect_snapshots=expect)
    return keyvalue.new_store(driver, **options)


def new_async_store(
    client: AsyncRedis | AsyncRedisCluster,
    *,
    prefix: str = DEFAULT_PREFIX,
    buckets: int = DEFAULT_BUCKETS,
    feed: bool = True,
    **options: Any,
) -> AsyncKeyValueStore:
    """``new_store`` for asyncio, on a ``redis.asyncio.Redis`` or ``RedisCluster``: the same
    data as the sync store's."""
    check_options("redis", options, ())
    expect = expects_snapshots(options)
    driver = AsyncRedisDriver(client, prefix=prefix, buckets=buckets, feed=feed, expect_snapshots=expect)
    return AsyncKeyValueStore(driver, **options)


def url_settings(url: str, options: dict[str, Any]) -> tuple[RedisUrl, dict[str, Any], dict[str, Any]]:
    """A URL's parts, the driver's options (``prefix``, ``buckets``, ``feed``,
    ``expect_snapshots``, ``owns_client``) and the store's, from its query and ``options``
    (which win); a bad prefix or bucket count fails here, before connecting."""
    check_options("redis", options, DRIVER_OPTIONS)
    parsed = parse_url(url)
    settings = {**parsed.driver_options, **options}
    driver = {name: settings.pop(name) for name in DRIVER_OPTIONS if name in settings}
    Layout(**driver)
    driver.update(
        feed=settings.pop("feed", True), owns_client=True, expect_snapshots=expects_snapshots(settings)
    )
    return parsed, driver, settings


def from_url(url: str, **options: Any) -> KeyValueStore:
    """An event store for a ``redis://``, ``rediss://`` or ``redis+cluster://`` URL.

    ``prefix``, ``buckets``, ``snapshot_interval`` and ``feed`` may come from the query
    string or ``options`` (which win); any other query option goes to redis-py, which
    documents it. The store owns the client it builds, and closes it on ``close()``.
    """
    parsed, driver, settings = url_settings(url, options)
    client = build_client(url, parsed)
    try:
        return keyvalue.new_store(RedisDriver(client, **driver), **settings)
    except BaseException:
        client.close()
        raise


async def open_async(url: str, **options: Any) -> AsyncKeyValueStore:
    """``from_url`` for ``kvsourcing.aio.open_store``: the store on a ``redis.asyncio`` client."""
    parsed, driver, settings = url_settings(url, options)
    client = build_async_client(url, parsed)
    try:
        return AsyncKeyValueStore(AsyncRedisDriver(client, **driver), **settings)
    except BaseException:
        await client.aclose()
        raise


def expects_snapshots(options: dict[str, Any]) -> bool:
    """Whether the store given ``options`` writes snapshots (a ``snapshot_interval`` other
    than 0), so that its driver loads with the script that reads them."""
    return bool(options.get("snapshot_interval", 0) != 0)
