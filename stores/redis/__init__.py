"""The Redis (and Redis Cluster) driver of the keyvalue event store.

Each commit is one Lua script call (EVALSHA, falling back to loading the script on
NOSCRIPT) that checks the commit id and the aggregate's head, appends the records,
writes the snapshot and adds the commit to its bucket's feed atomically; each load is
one script call that returns the snapshot and the records after it. Encoding,
validation and faults are the keyvalue base's; this driver only stores bytes.

Key layout
----------
An aggregate ``key`` falls in bucket ``b = partition_bucket(key, buckets)``, and all
its keys start with the bucket's hash tag, so that one script only touches one Cluster
slot, the bucket's feed included::

    {<prefix>:b<b>}:e:<key>   list: the encoded events; sequence s at index s-1,
                              so the aggregate's head is the list's length
    {<prefix>:b<b>}:s:<key>   hash: field ``s`` the snapshot's sequence,
                              field ``d`` the encoded snapshot (the newest only)
    {<prefix>:b<b>}:c:<key>   sorted set: the ids of the aggregate's commits that carried
                              one, scored by the server's time when stored, so that a
                              re-sent commit is found and not written twice; ids older
                              than ``commit_id_ttl`` are dropped by the next commit
    {<prefix>:b<b>}:f         stream: bucket b's feed, one entry per successful commit
                              (``XADD ... *``), fields ``k`` the aggregate key (UTF-8),
                              ``s`` its first sequence, ``r`` its records as one msgpack
                              array of raw strings; the entry's id is the ``FeedEntry``
                              position

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

from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.cluster import RedisCluster

from kvsourcing.errors import ConfigurationError
from kvsourcing.mapper import Cipher
from kvsourcing.stores import keyvalue
from kvsourcing.stores.keyvalue.driver import DEFAULT_COMMIT_ID_TTL
from kvsourcing.stores.redis.driver import (
    DEFAULT_BUCKETS,
    DEFAULT_PREFIX,
    RedisDriver,
    validate_buckets,
    validate_prefix,
)
from kvsourcing.stores.redis.url import build_client, parse_url

if TYPE_CHECKING:
    from kvsourcing import EventStore

__all__ = ["DEFAULT_BUCKETS", "DEFAULT_PREFIX", "RedisDriver", "from_url", "new_store"]

DRIVER_OPTIONS = ("prefix", "buckets", "snapshot_interval", "codec", "commit_id_ttl", "compression", "cipher")


def new_store(
    client: Redis | RedisCluster,
    *,
    prefix: str = DEFAULT_PREFIX,
    buckets: int = DEFAULT_BUCKETS,
    snapshot_interval: int = 0,
    codec: Any = None,
    commit_id_ttl: float | None = DEFAULT_COMMIT_ID_TTL,
    compression: str | None = None,
    cipher: Cipher | None = None,
) -> EventStore:
    """An event store on ``client`` (a ``redis.Redis`` or ``redis.cluster.RedisCluster``).

    Commit ids are kept ``commit_id_ttl`` seconds (``None``: for ever). Closing the store
    leaves ``client`` open: it is the caller's, and may serve others.
    """
    driver = RedisDriver(client, prefix=prefix, buckets=buckets, commit_id_ttl=commit_id_ttl)
    return keyvalue.new_store(
        driver, codec=codec, snapshot_interval=snapshot_interval, compression=compression, cipher=cipher
    )


def from_url(url: str, **options: Any) -> EventStore:
    """An event store for a ``redis://``, ``rediss://`` or ``redis+cluster://`` URL.

    ``prefix``, ``buckets`` and ``snapshot_interval`` may come from the query string or
    ``options`` (which win), ``commit_id_ttl`` from ``options``; any other query option
    goes to redis-py, which documents it. The store owns the client it builds, and closes it on ``close()``.
    """
    unknown = sorted(set(options) - set(DRIVER_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown Redis store option(s) {', '.join(unknown)}; "
            f"known: {', '.join(DRIVER_OPTIONS)} (connection options go in the URL)"
        )
    parsed = parse_url(url)
    settings = {**parsed.driver_options, **options}
    prefix = validate_prefix(settings.get("prefix", DEFAULT_PREFIX))
    buckets = validate_buckets(settings.get("buckets", DEFAULT_BUCKETS))
    store_kwargs = {
        name: settings[name]
        for name in ("snapshot_interval", "codec", "compression", "cipher")
        if name in settings
    }
    commit_id_ttl = settings.get("commit_id_ttl", DEFAULT_COMMIT_ID_TTL)
    client = build_client(url, parsed)
    driver = RedisDriver(
        client, prefix=prefix, buckets=buckets, commit_id_ttl=commit_id_ttl, owns_client=True
    )
    return keyvalue.new_store(driver, **store_kwargs)
