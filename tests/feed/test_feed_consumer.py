"""The feed consumer's leases under slow handlers, on the memory store (the lease and
checkpoint logic is the keyvalue base's, the same over every ``FeedDriver``)."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from kvsourcing import aio
from kvsourcing.handlers import PublishedEvent
from kvsourcing.stores import memory
from kvsourcing.stores.keyvalue import FeedConsumer, FeedEntry, partition_bucket
from kvsourcing.stores.keyvalue.aio import AsyncKeyValueStore
from kvsourcing.stores.keyvalue.values import value_name
from kvsourcing.testing.domain import Counter, Incremented


class _Slow:
    """A handler that takes ``delay`` seconds per event, recording who got what."""

    def __init__(self, who: str, log: list[tuple[str, int]], delay: float) -> None:
        self.who, self.log, self.delay = who, log, delay

    def handle(self, published: PublishedEvent) -> None:
        self.log.append((self.who, published.sequence))
        time.sleep(self.delay)


EVENTS = 25


def test_consumer_keeps_its_lease_through_a_batch_longer_than_the_lease() -> None:
    """A live member handling a long batch lost its lease (renewed only between batches),
    so a second member delivered the same events at the same time."""
    store = memory.new_store(buckets=1)
    counter = Counter("acct", store)
    for _ in range(EVENTS):
        counter.apply_event(Incremented())
        counter.commit()
    log: list[tuple[str, int]] = []
    # The batch (25 x 0.1 s) lasts twice the lease; renewals come every third of the lease
    # (0.4 s) plus one event, so a pause of the process up to ~0.7 s does not lose the lease.
    first = FeedConsumer(store, "projection", owner="a", lease_seconds=1.2, batch_size=100)
    second = FeedConsumer(store, "projection", owner="b", lease_seconds=1.2, batch_size=100)
    first.add_handler(_Slow("a", log, 0.1))
    second.add_handler(_Slow("b", log, 0.0))
    worker = threading.Thread(target=first.run_once)
    worker.start()
    while worker.is_alive() and not first.slices_held:  # "a" takes the lease first
        time.sleep(0.01)
    while worker.is_alive():
        second.run_once()
        time.sleep(0.05)
    worker.join()
    while second.run_once() or first.run_once():
        pass
    sequences = [sequence for _, sequence in log]
    assert sorted(sequences) == list(range(1, EVENTS + 1)), log
    first.stop()
    second.stop()


def test_a_member_that_loses_a_slice_during_a_batch_stops_reading_its_buckets() -> None:
    """Its checkpoint write after the batch must not put the lost bucket back in its reads."""
    store = memory.new_store(buckets=2)
    keys = {partition_bucket(f"acct-{n}", 2): f"acct-{n}" for n in range(10)}
    lost_key, kept_key = keys[0], keys[1]
    for key in (lost_key, kept_key):
        counter = Counter(key, store)
        for _ in range(3):
            counter.apply_event(Incremented())
            counter.commit()
    lease = value_name("projection", "lease", 0)
    seen: list[tuple[str, int]] = []

    class StealsTheSlice:
        def handle(self, published: PublishedEvent) -> None:
            seen.append((published.key, published.sequence))
            if published.key == lost_key and published.sequence == 1:
                assert store.driver.swap_value(lease, store.driver.read_value(lease), b"thief", 60)
                time.sleep(0.25)  # past a third of the lease: the member renews and finds it gone

    member = FeedConsumer(store, "projection", owner="a", slices=2, lease_seconds=0.6)
    member.add_handler(StealsTheSlice())
    member.run_once()
    assert member.slices_held == frozenset({1})
    counter = Counter(lost_key, store)
    counter.refresh()
    counter.apply_event(Incremented())
    counter.commit()
    seen.clear()
    member.run_once()
    assert all(key != lost_key for key, _ in seen), seen
    member.stop()


@pytest.mark.parametrize("lease_seconds", [0, -1, math.inf, math.nan])
def test_a_lease_must_be_a_finite_positive_time(lease_seconds: float) -> None:
    with pytest.raises(ValueError, match="lease_seconds must be a finite number"):
        FeedConsumer(memory.new_store(), "projection", lease_seconds=lease_seconds)


def test_a_member_whose_checkpoint_was_moved_by_a_former_holder_goes_on_from_it() -> None:
    """A member that releases a slice mid-batch still writes the checkpoint of what it
    delivered; the new holder's own write then fails. It dropped the slice, which nobody
    then read until its own lease, still in the store, ran out."""
    store = memory.new_store(buckets=1)
    counter = Counter("acct", store)
    for _ in range(3):
        counter.apply_event(Incremented())
        counter.commit()
    checkpoint = value_name("projection", "checkpoint", 0)
    seen: list[int] = []

    class FormerHolderWritesFirst:
        def handle(self, published: PublishedEvent) -> None:
            seen.append(published.sequence)
            if published.sequence == 1 and len(seen) == 1:
                assert store.driver.swap_value(checkpoint, None, b"1")  # it delivered event 1

    member = FeedConsumer(store, "projection", owner="b", slices=1, lease_seconds=60)
    member.add_handler(FormerHolderWritesFirst())
    member.run_once()
    assert member.slices_held == {0}
    member.run_once()
    assert member.checkpoint(0) == "3"
    assert seen == [1, 2, 3, 2, 3]
    member.stop()


class _SwallowsACancellation(memory.AsyncMemoryDriver):
    """An async driver that pushes, and whose first waiting read swallows its cancellation
    (as redis-py's send does on Python 3.11, through ``asyncio.wait_for``)."""

    pushes = True

    def __init__(self) -> None:
        super().__init__(memory.MemoryDriver())
        self.waiting = asyncio.Event()
        self.swallowed = False

    async def read_feed(
        self, after: dict[int, str | None], limit: int, *, wait: float = 0.0
    ) -> list[FeedEntry]:
        if wait <= 0:
            return await super().read_feed(after, limit)
        self.waiting.set()
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            self.swallowed = True
        return []


def test_stop_ends_an_async_consumer_whose_client_swallowed_the_cancellation() -> None:
    """``stop()`` cancelled the task once and waited for it: when the client swallowed the
    cancellation, the task read again and again, and ``stop()`` never returned."""

    async def main() -> None:
        driver = _SwallowsACancellation()
        consumer = aio.FeedConsumer(AsyncKeyValueStore(driver), "projection", lease_seconds=60)
        consumer.start()
        await driver.waiting.wait()
        task = consumer._task
        assert task is not None
        stopping = asyncio.ensure_future(consumer.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        if not done:  # free it, so that the test fails instead of hanging
            task.cancel()
            await stopping
        assert driver.swallowed
        assert done, "stop() waited for a task that went on reading"
        assert task.done()

    asyncio.run(main())
