"""``AsyncFeedWaker``: the asyncio Cluster driver's way to wait for new feed entries.

The decisions are ``push``'s (``listen_steps``, ``waiting_read_steps`` over
``BucketChanges``), shared with the sync ``waker``; this class awaits them, one task per
primary on the event loop, each listener on a connection of its own (never one of the
client's, which the commands need), with a condition that wakes the waiting readers. A
waiting reader holds no connection: cancelling it (``FeedConsumer.stop()``) leaves
nothing behind, and ``close()`` cancels the listeners and closes their connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster

from kvsourcing.steps import run_async
from kvsourcing.stores.redis.push import (
    READY_SECONDS,
    BucketChanges,
    Replies,
    listen_steps,
    waiting_read_steps,
)

AsyncRead = Callable[[dict[int, str | None], int], Awaitable[Replies]]
"""An awaited read of ``(after, limit)``."""


class AsyncFeedWaker:
    """``waker.FeedWaker`` for asyncio: tells readers of a Cluster's feed that one of their
    buckets has new entries (see ``push``); ``read`` is the driver's plain read."""

    def __init__(
        self, client: RedisCluster, prefix: bytes, feeds: Mapping[bytes, int], read: AsyncRead
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._changes = BucketChanges(feeds)
        self.read_buckets = read
        self._condition = asyncio.Condition()
        self._nodes: dict[str, ClusterNode] = {}
        self._listeners: dict[str, asyncio.Task[None]] = {}
        self._connections: dict[str, Any] = {}
        self._closed = False

    async def read(self, after: dict[int, str | None], limit: int, wait: float) -> Replies:
        """See ``FeedWaker.read``."""
        return await run_async(waiting_read_steps(after, limit, wait), self)

    async def mark(self, after: dict[int, str | None]) -> tuple[int, dict[int, str | None]]:
        """See ``FeedWaker.mark``."""
        if not self._client.get_primaries():
            await self._client.initialize()  # a client that sent nothing yet knows no node
        primaries = {} if self._closed else {node.name: node for node in self._client.get_primaries()}
        started = self._changes.to_listen(primaries)
        for name in started:
            self._nodes[name] = primaries[name]
            self._listeners[name] = asyncio.create_task(self._listen(name), name=f"kvsourcing-feed-{name}")
        if started:
            await self._wait_for(lambda: self._changes.hears(started), READY_SECONDS)
        return self._changes.generation, self._changes.to_read(after)

    async def note_read(self, asked: dict[int, str | None], replies: Replies, limit: int, since: int) -> None:
        self._changes.note_read(asked, replies, limit, since)

    async def wait(self, buckets: Collection[int], since: int, timeout: float) -> None:
        """See ``FeedWaker.wait``."""
        await self._wait_for(
            lambda: self._closed or self._changes.changed_since(buckets, since),
            self._changes.wait_seconds(timeout),
        )

    async def close(self) -> None:
        """Cancel the listeners, close their connections and wake every reader."""
        self._closed = True
        listeners = list(self._listeners.values())
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        await self._notify()

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with self._condition:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._condition.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def _listen(self, name: str) -> None:
        try:
            await run_async(listen_steps(name, self._prefix), self)
        except BaseException:
            await self.disconnect(name)  # cancelled by close(): the steps did not get to it
            raise

    # The calls of ``listen_steps``.

    async def closed(self) -> bool:
        return self._closed

    async def connect(self, name: str) -> None:
        node = self._nodes[name]
        connection = node.connection_class(**{**node.connection_kwargs, "protocol": 2})
        self._connections[name] = connection
        await connection.connect()  # type: ignore[no-untyped-call]

    async def command(self, name: str, *args: Any) -> Any:
        connection = self._connections[name]
        await connection.send_command(*args)
        return await connection.read_response()

    async def receive(self, name: str, seconds: float) -> Any:
        """The next message, or ``None`` after ``seconds`` without one."""
        return await self._connections[name].read_response(timeout=seconds)

    async def disconnect(self, name: str) -> None:
        connection = self._connections.pop(name, None)
        if connection is not None:
            await connection.disconnect()

    async def subscribed(self, name: str) -> None:
        self._changes.subscribed(name)
        await self._notify()

    async def note(self, message: Any) -> None:
        if self._changes.note(message):
            await self._notify()

    async def lost(self, name: str) -> None:
        self._changes.lost(name)
        await self._notify()

    async def is_primary(self, name: str) -> bool:
        return name in {node.name for node in self._client.get_primaries()}

    async def forget(self, name: str) -> None:
        self._changes.forget(name)
        self._listeners.pop(name, None)

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
