"""Reading and trimming the durable feed on Redis: one stream per bucket.

The functions read replies as data (an asyncio driver reuses them); ``RedisFeed`` is the
sync I/O that ``RedisDriver`` builds on. The append script writes the entries
(``scripts.APPEND``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.cluster import RedisCluster

from kvsourcing.stores.keyvalue import FeedEntry
from kvsourcing.stores.keyvalue.base import DriverBase, corrupt_entry
from kvsourcing.stores.redis.keys import Layout
from kvsourcing.stores.redis.protocol import unpack_records


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


def trim_minid(checkpoints: Sequence[str]) -> str:
    """The ``XTRIM MINID`` just past the earliest of ``checkpoints`` (stream ids ``ms-seq``,
    compared as numbers)."""
    ms, seq = min(tuple(int(part) for part in p.split("-")) for p in checkpoints)
    return f"{ms}-{seq + 1}"


class RedisFeed(DriverBase):
    """``read_feed`` and ``trim_feed`` on a sync client; ``RedisDriver`` builds on it."""

    client: Redis | RedisCluster
    layout: Layout
    cluster: bool

    def read_feed(self, after: dict[int, str | None], limit: int, *, wait: float = 0.0) -> list[FeedEntry]:
        """Up to ``limit`` entries of each bucket in ``after`` after its position (a stream
        id; ``None``: from the start), oldest first within each bucket, in one round trip
        per node: one ``XREAD`` on a node; on a Cluster one ``XRANGE`` per bucket in a
        pipeline, which redis-py sends as one batch per node. ``wait`` is not used yet:
        the read returns at once."""
        if not after:
            return []
        self.check_feed_request(after, limit)
        with self.served():
            replies = self._read_cluster(after, limit) if self.cluster else self._read_node(after, limit)
        return entries_of(replies)

    def _read_node(self, after: dict[int, str | None], limit: int) -> list[tuple[int, Any]]:
        replies = self.client.execute_command(*xread_args(self.layout, after, limit))
        if not replies:
            return []
        return [(self.layout.bucket_of_feed(key), entries) for key, entries in xread_streams(replies)]

    def _read_cluster(self, after: dict[int, str | None], limit: int) -> list[tuple[int, Any]]:
        pipe = self.client.pipeline()
        try:
            for bucket, position in after.items():
                pipe.execute_command(*xrange_args(self.layout, bucket, position, limit))
            return list(zip(after, pipe.execute(), strict=True))
        finally:
            pipe.reset()

    def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        """``XTRIM <feed> MINID`` just past the earliest of ``checkpoints``; returns how
        many entries went."""
        if not checkpoints:
            return 0
        minid = trim_minid(checkpoints)
        with self.served():
            return int(self.client.xtrim(self.layout.feed_key(bucket), minid=minid, approximate=False))
