"""``FeedWaker``: the sync Cluster driver's way to wait for new feed entries, on threads.

The decisions are ``push``'s (``listen_steps``, ``waiting_read_steps`` over
``BucketChanges``), shared with ``aio_waker``; this class runs them, one daemon thread
per primary, with a condition that guards the state and wakes the waiting readers.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from typing import Any

from redis.cluster import ClusterNode, RedisCluster

from kvsourcing.steps import run_sync
from kvsourcing.stores.redis.push import (
    READY_SECONDS,
    BucketChanges,
    Read,
    Replies,
    listen_steps,
    waiting_read_steps,
)


class FeedWaker:
    """Tells readers of a Cluster's feed that one of their buckets has new entries (see
    ``push``). ``feeds`` maps each feed stream's key to its bucket, ``prefix`` is the start
    those keys share (``{<store prefix>:b``) and ``read`` the driver's plain read. A node
    that slots moved to is listened to from the next read."""

    def __init__(self, client: RedisCluster, prefix: bytes, feeds: Mapping[bytes, int], read: Read) -> None:
        self._client = client
        self._prefix = prefix
        self._changes = BucketChanges(feeds)
        self.read_buckets = read
        self._condition = threading.Condition()
        self._nodes: dict[str, ClusterNode] = {}
        self._connections: dict[str, Any] = {}
        self._closed = threading.Event()

    def read(self, after: dict[int, str | None], limit: int, wait: float) -> Replies:
        """``read(after, limit)``, and if it finds nothing, waiting up to ``wait`` seconds for a
        change to one of the buckets and reading again (``push.waiting_read_steps``)."""
        return run_sync(waiting_read_steps(after, limit, wait), self)

    def mark(self, after: dict[int, str | None]) -> tuple[int, dict[int, str | None]]:
        """Listen to every primary (waiting a moment for new listeners to subscribe); the
        current generation and the buckets of ``after`` to read."""
        with self._condition:
            primaries = {node.name: node for node in self._primaries()}
            started = self._changes.to_listen(primaries)
            for name in started:
                self._nodes[name] = primaries[name]
                thread = threading.Thread(
                    target=self._listen, args=(name,), name=f"kvsourcing-feed-{name}", daemon=True
                )
                thread.start()
            if started:
                self._condition.wait_for(lambda: self._changes.hears(started), READY_SECONDS)
            return self._changes.generation, self._changes.to_read(after)

    def note_read(self, asked: dict[int, str | None], replies: Replies, limit: int, since: int) -> None:
        with self._condition:
            self._changes.note_read(asked, replies, limit, since)

    def wait(self, buckets: Collection[int], since: int, timeout: float) -> None:
        """Wait until one of ``buckets`` changed after generation ``since`` (or ``timeout``,
        or ``POLL_SECONDS`` while a node is not heard, or the waker is closed)."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._closed.is_set() or self._changes.changed_since(buckets, since),
                self._changes.wait_seconds(timeout),
            )

    def close(self) -> None:
        """Stop listening (the listeners end within a second) and wake every reader."""
        self._closed.set()
        with self._condition:
            self._condition.notify_all()

    def _primaries(self) -> list[ClusterNode]:
        """The Cluster's primaries as the client knows them now (redis-py leaves this untyped)."""
        primaries: list[ClusterNode] = self._client.get_primaries()  # type: ignore[no-untyped-call]
        return primaries

    def _listen(self, name: str) -> None:
        run_sync(listen_steps(name, self._prefix), self)

    # The calls of ``listen_steps``.

    def closed(self) -> bool:
        return self._closed.is_set()

    def connect(self, name: str) -> None:
        pool = self._nodes[name].redis_connection.connection_pool
        connection = pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})
        self._connections[name] = connection
        connection.connect()

    def command(self, name: str, *args: Any) -> Any:
        connection = self._connections[name]
        connection.send_command(*args)
        return connection.read_response()

    def receive(self, name: str, seconds: float) -> Any:
        connection = self._connections[name]
        return connection.read_response() if connection.can_read(timeout=seconds) else None

    def disconnect(self, name: str) -> None:
        connection = self._connections.pop(name, None)
        if connection is not None:
            connection.disconnect()

    def subscribed(self, name: str) -> None:
        with self._condition:
            self._changes.subscribed(name)
            self._condition.notify_all()

    def note(self, message: Any) -> None:
        with self._condition:
            if self._changes.note(message):
                self._condition.notify_all()

    def lost(self, name: str) -> None:
        with self._condition:
            self._changes.lost(name)
            self._condition.notify_all()

    def is_primary(self, name: str) -> bool:
        return name in {node.name for node in self._primaries()}

    def forget(self, name: str) -> None:
        with self._condition:
            self._changes.forget(name)

    def pause(self, seconds: float) -> None:
        self._closed.wait(seconds)
