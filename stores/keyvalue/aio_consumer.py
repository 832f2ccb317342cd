"""``AsyncFeedConsumer`` (``kvsourcing.aio.FeedConsumer``): the feed consumer for asyncio.

Every decision is ``ConsumerLogic``'s, shared with the sync ``FeedConsumer``; this class
awaits its steps on an async driver, and runs as a task on the event loop: on a driver
that pushes, the task waits in ``read_feed``, and ``stop()`` cancels that wait.

A client may swallow a cancellation: on Python 3.11 ``asyncio.wait_for`` returns the
result of an inner call that finished as it was cancelled, and redis-py sends each
command through one. So ``stop()`` also tells the loop to end, and cancels the task
again until it has.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kvsourcing.steps import run_async
from kvsourcing.stores.keyvalue.consuming import ConsumerLogic
from kvsourcing.stores.keyvalue.delivery import log

RECANCEL_SECONDS = 0.05
"""How long ``stop()`` waits for the cancelled task before cancelling it again."""


class AsyncFeedConsumer(ConsumerLogic):
    """A named, checkpointed consumer of an async store's feed: ``await run_once()``, or
    ``start()`` it as a task and ``await stop()``. Handlers are plain (sync) callables."""

    def __init__(self, store: Any, name: str, *args: Any, **options: Any) -> None:
        super().__init__(store, name, *args, **options)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._calls = _AsyncCalls(self)

    async def checkpoint(self, bucket: int) -> str | None:
        """The stored feed position of ``bucket`` (``None``: nothing consumed yet)."""
        return await run_async(self._checkpoint_steps(bucket), self._driver)

    async def run_once(self) -> int:
        """Deliver the events waiting in the held buckets (one batch each); returns how many."""
        polled = await run_async(self._poll_steps(wait=False), self._calls)
        return 0 if polled is None else polled[1]

    def start(self) -> None:
        """Consume in a task on the running loop until ``stop()`` (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"kvsourcing-{self.name}")

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                polled = await run_async(self._poll_steps(wait=True), self._calls)
            except Exception:
                if self._stopping:
                    return
                log.exception("consumer %s failed to poll; retrying", self.name)
                polled = None
            if polled is not None and (polled[1] or (self._pushes and not polled[0])):
                continue  # delivered (there may be more), or already waited in read_feed
            await asyncio.sleep(min(self._poll_interval, max(0.0, self._until_heartbeat())))

    async def stop(self) -> None:
        """Stop the task (a wait in ``read_feed`` is cancelled; entries it was reading are
        left for the next holder of their buckets), release the leases and leave the member list."""
        task, self._task = self._task, None
        self._stopping = True
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
        await run_async(self._leave_steps(), self._driver)

    async def __aenter__(self) -> AsyncFeedConsumer:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()


class _AsyncCalls:
    """The async driver as the consumer's steps call it: a read without a wait asks none,
    and one that waited answers ``None`` when ``stop()`` came meanwhile (its entries are
    left for the next holder)."""

    def __init__(self, consumer: AsyncFeedConsumer) -> None:
        driver = consumer._driver
        self._consumer = consumer
        self.read_value = driver.read_value
        self.read_values = driver.read_values
        self.swap_value = driver.swap_value

    async def read_feed(self, after: dict[int, str | None], limit: int, *, wait: float) -> Any:
        driver = self._consumer._driver
        if wait <= 0:
            return await driver.read_feed(after, limit)
        entries = await driver.read_feed(after, limit, wait=wait)
        return None if self._consumer._stopping else entries
