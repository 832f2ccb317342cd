"""Reading and trimming the durable feed on Redis: one stream per bucket.

The functions read replies as data; ``RedisFeed`` is the sync I/O that ``RedisDriver``
builds on, ``AsyncRedisFeed`` the asyncio one under ``AsyncRedisDriver``. Both push
(``push``). The append script writes the entries (``scripts.APPEND``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from kvsourcing.steps import Call, Steps, run_async, run_sync
from kvsourcing.stores.keyvalue import FeedEntry
from kvsourcing.stores.keyvalue.base import AsyncDriverBase, DriverBase, corrupt_entry
from kvsourcing.stores.redis.aio_waker import AsyncFeedWaker
from kvsourcing.stores.redis.keys import Layout
from kvsourcing.stores.redis.protocol import unpack_records
from kvsourcing.stores.redis.push import block_milliseconds, blocking
from kvsourcing.stores.redis.waker import FeedWaker


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
    the entry is not one the append script wrote (its fields missing or corrupt). Entries
    written before commits carried metadata have no ``i`` (commit id) and ``t`` (time)."""
    try:
        commit_id = fields.get(b"i")
        recorded_at = fields.get(b"t")
        return FeedEntry(
            bucket,
            position.decode(),
            fields[b"k"].decode("utf-8", "surrogatepass"),
            int(fields[b"s"]),
            unpack_records(fields[b"r"]),
            None if commit_id is None else commit_id.decode("utf-8", "surrogatepass"),
            None if recorded_at is None else float(recorded_at),
        )
    except (KeyError, ValueError, TypeError) as err:
        raise corrupt_entry(bucket, position.decode(errors="replace"), err) from err


def xread_args(layout: Layout, after: dict[int, str | None], limit: int) -> list[Any]:
    """``XREAD COUNT limit STREAMS`` of every bucket in ``after``, exclusive of its
    position (``0-0`` reads from the start): the read on a single node."""
    keys = [layout.feed_key(bucket) for bucket in after]
    positions = ["0-0" if position is None else position for position in after.values()]
    return ["XREAD", "COUNT", limit, "STREAMS", *keys, *positions]


def xrange_args(layout: Layout, bucket: int, position: str | None, limit: int) -> list[Any]:
    """An exclusive ``XRANGE`` of one bucket: the read on a Cluster, one per bucket, since
    one command may not span slots."""
    start = "-" if position is None else "(" + position
    return ["XRANGE", layout.feed_key(bucket), start, "+", "COUNT", limit]


def entries_of(replies: Sequence[tuple[int, Any]]) -> list[FeedEntry]:
    """The ``FeedEntry`` list of ``(bucket, stream entries)`` replies."""
    return [feed_entry(bucket, position, fields) for bucket, reply in replies for position, fields in reply]


def read_steps(
    layout: Layout, cluster: bool, after: dict[int, str | None], limit: int, block: int = 0
) -> Steps[list[tuple[int, Any]]]:
    """``(bucket, stream entries)`` of a read: one ``XREAD`` on a node (``BLOCK`` for
    ``block`` milliseconds when > 0); on a Cluster one ``XRANGE`` per bucket, together."""
    if cluster:
        commands = [xrange_args(layout, bucket, position, limit) for bucket, position in after.items()]
        return list(zip(after, (yield Call("pipeline", (commands,))), strict=True))
    command = xread_args(layout, after, limit)
    if block > 0:
        command = blocking(command, block)
    replies = yield Call("execute_command", tuple(command))
    if not replies:
        return []
    return [(layout.bucket_of_feed(key), entries) for key, entries in xread_streams(replies)]


def waker_keys(layout: Layout) -> tuple[bytes, dict[bytes, int]]:
    """What a Cluster's waker listens to: the start its feeds' keys share (``{<prefix>:b``),
    and each feed's key with its bucket."""
    feeds = {layout.feed_key(bucket): bucket for bucket in range(layout.buckets)}
    return f"{{{layout.prefix}:b".encode(), feeds


def trim_minid(checkpoints: Sequence[str]) -> str:
    """The ``XTRIM MINID`` just past the earliest of ``checkpoints`` (stream ids ``ms-seq``,
    compared as numbers)."""
    ms, seq = min(tuple(int(part) for part in p.split("-")) for p in checkpoints)
    return f"{ms}-{seq + 1}"


class RedisFeed(DriverBase):
    """``read_feed`` and ``trim_feed`` on a sync client; ``RedisDriver`` builds on it. It
    pushes: a read with ``wait`` waits on the server for new entries (``XREAD BLOCK`` on a
    node; on a Cluster, where one command cannot span slots, a ``waker.FeedWaker``)."""

    client: Redis | RedisCluster
    io: Any
    layout: Layout
    cluster: bool
    pushes = True
    _waker: FeedWaker | None = None
    _waker_lock: ClassVar[threading.Lock] = threading.Lock()

    def read_feed(self, after: dict[int, str | None], limit: int, *, wait: float = 0.0) -> list[FeedEntry]:
        """Up to ``limit`` entries of each bucket in ``after`` after its position (a stream
        id; ``None``: from the start), oldest first within each bucket, in one round trip
        per node (``read_steps``). With ``wait`` > 0 and nothing there, it waits up to
        ``wait`` seconds for entries: ``BLOCK`` on a node, the ``FeedWaker``'s word that a
        bucket changed on a Cluster."""
        if not after:
            return []
        self.check_feed_request(after, limit)
        with self.served():
            if self.cluster and wait > 0:
                replies = self.feed_waker().read(after, limit, wait)
            else:
                block = block_milliseconds(self.client, wait) if wait > 0 else 0
                replies = run_sync(read_steps(self.layout, self.cluster, after, limit, block), self.io)
        return entries_of(replies)

    def feed_waker(self) -> FeedWaker:
        """The Cluster's listener for changed buckets, made on first use."""
        with self._waker_lock:
            if self._waker is None:
                tags, feeds = waker_keys(self.layout)
                self._waker = FeedWaker(cast("RedisCluster", self.client), tags, feeds, self._read_cluster)
            return self._waker

    def _read_cluster(self, after: dict[int, str | None], limit: int) -> list[tuple[int, Any]]:
        return run_sync(read_steps(self.layout, True, after, limit), self.io)

    def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        """``XTRIM <feed> MINID`` just past the earliest of ``checkpoints``; returns how
        many entries went."""
        if not checkpoints:
            return 0
        minid = trim_minid(checkpoints)
        with self.served():
            return int(self.client.xtrim(self.layout.feed_key(bucket), minid=minid, approximate=False))

    def close(self) -> None:
        if self._waker is not None:
            self._waker.close()
        super().close()


class AsyncRedisFeed(AsyncDriverBase):
    """``RedisFeed`` for asyncio; ``AsyncRedisDriver`` builds on it. It pushes as the sync
    one does: ``XREAD BLOCK`` on a node, an ``aio_waker.AsyncFeedWaker`` on a Cluster."""

    client: AsyncRedis | AsyncRedisCluster
    io: Any
    layout: Layout
    cluster: bool
    pushes = True
    _waker: AsyncFeedWaker | None = None

    async def read_feed(
        self, after: dict[int, str | None], limit: int, *, wait: float = 0.0
    ) -> list[FeedEntry]:
        """See ``RedisFeed.read_feed``."""
        if not after:
            return []
        self.check_feed_request(after, limit)
        with self.served():
            if self.cluster and wait > 0:
                replies = await self.feed_waker().read(after, limit, wait)
            else:
                block = block_milliseconds(self.client, wait) if wait > 0 else 0
                steps = read_steps(self.layout, self.cluster, after, limit, block)
                replies = await run_async(steps, self.io)
        return entries_of(replies)

    def feed_waker(self) -> AsyncFeedWaker:
        """The Cluster's listener for changed buckets, made on first use."""
        if self._waker is None:
            tags, feeds = waker_keys(self.layout)
            client = cast("AsyncRedisCluster", self.client)
            self._waker = AsyncFeedWaker(client, tags, feeds, self._read_cluster)
        return self._waker

    async def _read_cluster(self, after: dict[int, str | None], limit: int) -> list[tuple[int, Any]]:
        return await run_async(read_steps(self.layout, True, after, limit), self.io)

    async def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        """See ``RedisFeed.trim_feed``."""
        if not checkpoints:
            return 0
        key = self.layout.feed_key(bucket)
        with self.served():
            return int(await self.client.xtrim(key, minid=trim_minid(checkpoints), approximate=False))

    async def close(self) -> None:
        if self._waker is not None:
            await self._waker.close()
        await super().close()
