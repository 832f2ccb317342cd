"""``AsyncMemoryDriver``: the memory store's driver for asyncio, over a ``MemoryDriver``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kvsourcing.stores.keyvalue import Commit, FeedEntry, Loaded, Refusal

if TYPE_CHECKING:
    from kvsourcing.stores.memory import MemoryDriver


class AsyncMemoryDriver:
    """A ``MemoryDriver`` for asyncio: the same calls as coroutines. They never wait on
    I/O (the lock is held only while lists are read or extended), so they run in place;
    ``read_feed`` lets the other tasks run first, as a read on a network store would (a
    consumer draining a backlog would otherwise hold the loop until it is done), and
    with ``wait`` it awaits a commit's callback (``MemoryDriver.listen``): it pushes."""

    system_name = "memory"
    pushes = True

    def __init__(self, driver: MemoryDriver) -> None:
        self.sync = driver
        self.buckets = driver.buckets
        self.feed = driver.feed

    async def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        return self.sync.append_many(commits)

    async def load(self, key: str, after: int, **options: Any) -> Loaded:
        return self.sync.load(key, after, **options)

    async def read_feed(
        self, after: dict[int, str | None], limit: int, *, wait: float = 0.0
    ) -> list[FeedEntry]:
        await asyncio.sleep(0)
        if wait <= 0:
            return self.sync.read_feed(after, limit)
        loop = asyncio.get_running_loop()
        appended = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the reader is gone
                loop.call_soon_threadsafe(appended.set)

        deadline = loop.time() + wait
        self.sync.listen(wake)
        try:
            while True:
                appended.clear()
                entries = self.sync.read_feed(after, limit)
                remaining = deadline - loop.time()
                if entries or not after or remaining <= 0:
                    return entries
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await appended.wait()
        finally:
            self.sync.unlisten(wake)

    async def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        return self.sync.trim_feed(bucket, checkpoints)

    async def read_value(self, name: str) -> bytes | None:
        return self.sync.read_value(name)

    async def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        return self.sync.read_values(names)

    async def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        return self.sync.swap_value(name, expected, new, ttl)

    async def close(self) -> None:
        self.sync.close()
