"""Waiting on Redis for new feed entries, so that a consumer hears of a commit at once.

On a single node, ``XREAD ... BLOCK`` waits server-side on every bucket's stream at once
(``blocking``). A Cluster refuses a command whose keys span hash slots, and each bucket
has a slot of its own, so there a ``FeedWaker`` keeps one connection per primary that
asks for client-side-caching invalidations in broadcast mode (``CLIENT TRACKING ON BCAST
PREFIX {<prefix>:b``, Redis 6 and later, no server setting needed): the node then names
every key under that prefix that a write changed, the waker notes whose bucket feeds
they are, and a reader waits on a condition until one of its buckets changed, then reads
again. As it hears of every change, it also knows which buckets a read found at their end
and nothing has written to since: the next read skips them, so a read costs what the
active buckets cost, not one ``XRANGE`` for each of the (by default 1 024) buckets.
Compared in ``bench/feed_bench.py`` with polling.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from redis.cluster import ClusterNode, RedisCluster

log = logging.getLogger("kvsourcing.redis")

INVALIDATE = b"__redis__:invalidate"
"""The channel on which a RESP2 connection receives the invalidations redirected to it."""

RETRY_SECONDS = 1.0
"""How long a listener waits before connecting again to a node it lost."""

POLL_SECONDS = 0.2
"""How often a waiting reader reads again while some node is not heard: its listener lost
it, or the server refuses the listener's commands (an ACL user without ``+client|id
+client|tracking +subscribe &__redis__:invalidate``)."""

READY_SECONDS = 2.0
"""How long ``FeedWaker.mark`` waits for new listeners to subscribe (a wait that starts
before they have just wakes at its timeout, as a poll would)."""


def block_milliseconds(client: Any, wait: float) -> int:
    """``wait`` seconds as ``XREAD BLOCK`` milliseconds: at least 1 (``BLOCK 0`` waits for
    ever), and at most half the client's socket timeout, which would end a longer wait
    as a failure."""
    timeout = socket_timeout(client)
    if timeout:
        wait = min(wait, timeout / 2)
    return max(1, math.ceil(wait * 1000))


def socket_timeout(client: Any) -> float | None:
    """The client's ``socket_timeout``: the one it was given, else its connections' default
    (none before redis-py 8, 5 seconds since)."""
    pool = client.connection_pool
    if "socket_timeout" in pool.connection_kwargs:
        given: float | None = pool.connection_kwargs["socket_timeout"]
        return given
    for cls in pool.connection_class.__mro__:
        init = cls.__dict__.get("__init__")
        parameter = inspect.signature(init).parameters.get("socket_timeout") if init else None
        if parameter is not None:
            default: float | None = parameter.default
            return default
    return None


def blocking(xread: list[Any], milliseconds: int) -> list[Any]:
    """``XREAD COUNT <n> STREAMS ...`` made to block ``milliseconds`` when nothing is new."""
    if xread[:2] != ["XREAD", "COUNT"]:
        raise ValueError(f"not an XREAD COUNT command: {xread[:3]!r}")
    return [*xread[:3], "BLOCK", milliseconds, *xread[3:]]


Replies = list[tuple[int, Any]]
"""``(bucket, stream entries)`` of every bucket a read asked for."""

Read = Callable[[dict[int, str | None], int], Replies]
"""A read of ``(after, limit)``."""


class FeedWaker:
    """Tells readers of a Cluster's feed that one of their buckets has new entries.

    ``feeds`` maps each feed stream's key to its bucket; ``prefix`` is the start those
    keys share (``{<store prefix>:b``). ``read`` is the waiting read a driver calls. Each
    round marks the generation of changes heard (``mark``), reads the buckets that may
    have entries, notes those found at their end, and, if nothing came, waits until a
    change after the mark to one of the buckets (so no commit between the read and the
    wait is missed). A listener (re)subscribing, or losing its node, counts as a change of
    every bucket: readers then read everything again. A node that slots moved to is
    listened to from the next mark.
    """

    def __init__(self, client: RedisCluster, prefix: bytes, feeds: Mapping[bytes, int]) -> None:
        self._client = client
        self._prefix = prefix
        self._feeds = feeds
        self._condition = threading.Condition()
        self._generation = 0
        self._changed: dict[int, int] = {}
        self._everything_changed = 0
        self._quiet: dict[int, tuple[str | None, int]] = {}
        self._listeners: dict[str, threading.Thread] = {}
        self._ready: set[str] = set()
        self._warned: set[str] = set()
        self._closed = threading.Event()

    def mark(self) -> int:
        """Listen to every primary (starting listeners for new ones); the current generation."""
        with self._condition:
            started = []
            for node in self._primaries():
                if node.name not in self._listeners:
                    thread = threading.Thread(
                        target=self._listen, args=(node,), name=f"kvsourcing-feed-{node.name}", daemon=True
                    )
                    self._listeners[node.name] = thread
                    started.append(node.name)
                    thread.start()
            if started:
                self._condition.wait_for(lambda: self._ready.issuperset(started), READY_SECONDS)
            return self._generation

    def read(
        self, after: dict[int, str | None], limit: int, wait: float, read: Read
    ) -> list[tuple[int, Any]]:
        """``read(after, limit)``, skipping buckets known to hold nothing new, and if it
        finds nothing, waiting up to ``wait`` seconds for a change and reading again."""
        deadline = time.monotonic() + wait
        while True:
            since = self.mark()
            asked = self._to_read(after)
            replies = read(asked, limit) if asked else []
            self._note_read(asked, replies, limit, since)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or any(entries for _, entries in replies):
                return replies
            self.wait(after, since, remaining)

    def _to_read(self, after: dict[int, str | None]) -> dict[int, str | None]:
        """The buckets of ``after`` but those that a read found at their end at the same
        position and that nothing has changed since (trusted only while every node is heard)."""
        with self._condition:
            if self._ready != set(self._listeners):
                return after
            return {
                bucket: position for bucket, position in after.items() if not self._quiet_at(bucket, position)
            }

    def _quiet_at(self, bucket: int, position: str | None) -> bool:
        quiet = self._quiet.get(bucket)
        return (
            quiet is not None
            and quiet[0] == position
            and self._everything_changed <= quiet[1]
            and self._changed.get(bucket, 0) <= quiet[1]
        )

    def _note_read(self, asked: dict[int, str | None], replies: Replies, limit: int, since: int) -> None:
        """Note the buckets that a read begun after mark ``since`` found at their end."""
        with self._condition:
            for bucket, entries in replies:
                if len(entries) < limit:
                    end = entries[-1][0] if entries else asked[bucket]
                    self._quiet[bucket] = (end.decode() if isinstance(end, bytes) else end, since)

    def wait(self, buckets: Collection[int], since: int, timeout: float) -> None:
        """Wait until one of ``buckets`` changed after generation ``since`` (or ``timeout``,
        or ``POLL_SECONDS`` while a node is not heard)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            if self._ready != set(self._listeners):
                deadline = min(deadline, time.monotonic() + POLL_SECONDS)
            while self._everything_changed <= since and not any(
                self._changed.get(bucket, 0) > since for bucket in buckets
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed.is_set():
                    return
                self._condition.wait(remaining)

    def _primaries(self) -> list[ClusterNode]:
        """The Cluster's primaries as the client knows them now (redis-py leaves this untyped)."""
        primaries: list[ClusterNode] = self._client.get_primaries()  # type: ignore[no-untyped-call]
        return primaries

    def close(self) -> None:
        """Stop listening (the listeners end within a second) and wake every reader."""
        self._closed.set()
        with self._condition:
            self._condition.notify_all()

    def _listen(self, node: ClusterNode) -> None:
        while not self._closed.is_set():
            pool = node.redis_connection.connection_pool
            connection = pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})
            try:
                connection.connect()
                connection.send_command("CLIENT", "ID")
                own_id = connection.read_response()
                connection.send_command(
                    "CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST", "PREFIX", self._prefix
                )
                connection.read_response()
                connection.send_command("SUBSCRIBE", INVALIDATE)
                connection.read_response()
                with self._condition:
                    self._ready.add(node.name)
                    self._warned.discard(node.name)
                    self._generation += 1  # what was written while it was not heard is unknown
                    self._everything_changed = self._generation
                    self._condition.notify_all()
                while not self._closed.is_set():
                    if connection.can_read(timeout=RETRY_SECONDS):
                        self._note(connection.read_response())
            except Exception as err:  # any failure: readers poll until the node is heard again
                if not self._closed.is_set() and node.name not in self._warned:
                    self._warned.add(node.name)
                    log.warning(
                        "feed consumers cannot hear Redis node %s (%s): they read every %s s until they do",
                        node.name,
                        err,
                        POLL_SECONDS,
                    )
            finally:
                connection.disconnect()
                with self._condition:
                    self._ready.discard(node.name)
                    self._generation += 1
                    self._everything_changed = self._generation
                    self._condition.notify_all()
            if node.name not in {primary.name for primary in self._primaries()}:
                with self._condition:
                    del self._listeners[node.name]
                return
            self._closed.wait(RETRY_SECONDS)

    def _note(self, message: Any) -> None:
        """Note the buckets whose feed an invalidation message names (``None``: all, a flush)."""
        if not isinstance(message, list) or len(message) != 3 or message[0] != b"message":
            return
        keys = message[2]
        with self._condition:
            generation = self._generation + 1
            if keys is None:
                self._everything_changed = generation
            else:
                buckets = [bucket for bucket in map(self._feeds.get, keys) if bucket is not None]
                if not buckets:
                    return
                for bucket in buckets:
                    self._changed[bucket] = generation
            self._generation = generation
            self._condition.notify_all()
