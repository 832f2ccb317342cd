"""``AsyncStoreSuite``: the compliance tests of an async store (``kvsourcing.aio``).

Subclass it and define ``async def new_store(self, *, snapshot_interval=0)`` returning an
async store, and ``new_sync_store(self)`` returning the sync store of the same backend
and data (to show that each reads what the other wrote). Each test runs on a fresh event
loop (``asyncio.run``), so clients made by ``new_store`` belong to that loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kvsourcing import aio
from kvsourcing.errors import ConcurrencyFault, StoreUnavailableError
from kvsourcing.protocols import EventStore
from kvsourcing.steps import run_async
from kvsourcing.testing.domain import Account, Deposit, Deposited, Open, Opened, Withdraw, Withdrawn, bank
from kvsourcing.testing.feed_suite import BACKLOG, DOOMED, SURVIVOR, WAIT, TakeoverWatch, keys_in_slice

AsyncTest = Callable[[Any], Awaitable[None]]


class _LostReply:
    """An async store whose next commit is stored but whose reply is lost."""

    is_async = True

    def __init__(self, inner: Any) -> None:
        self.inner, self.lost = inner, False

    async def refresh(self, reader: Any) -> None:
        await self.inner.refresh(reader)

    async def commit_events(self, writer: Any) -> None:
        await self.inner.commit_events(writer)
        if not self.lost:
            self.lost = True
            raise StoreUnavailableError("connection reset before the reply (simulated)")

    async def close(self) -> None:
        await self.inner.close()


class _Recorder:
    """A handler that records ``(key, sequence)`` of the events of keys under ``prefix``."""

    def __init__(self, prefix: str, into: list[tuple[str, int]]) -> None:
        self.prefix, self.into = prefix, into

    def handle(self, published: Any) -> None:
        if published.key.startswith(self.prefix):
            self.into.append((published.key, published.sequence))


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


class AsyncStoreSuite:
    """The async store compliance suite; subclasses define ``new_store`` and ``new_sync_store``."""

    pushes = True
    """Whether the driver under test is told of new feed entries (``pushes``): a subclass
    for one that polls (DynamoDB) says so, and the suite then checks that it is never
    asked to wait instead of how soon a commit arrives."""

    async def new_store(self, *, snapshot_interval: int = 0) -> Any:
        raise NotImplementedError("an AsyncStoreSuite subclass must define async new_store()")

    def new_sync_store(self) -> EventStore:
        raise NotImplementedError("an AsyncStoreSuite subclass must define new_sync_store()")

    def run(self, test: AsyncTest, *, snapshot_interval: int = 0) -> None:
        async def main() -> None:
            store = await self.new_store(snapshot_interval=snapshot_interval)
            try:
                await test(store)
            finally:
                await store.close()

        asyncio.run(main())

    @staticmethod
    def key() -> str:
        return f"async-{uuid.uuid4().hex[:12]}{{bank}}"

    @staticmethod
    async def read(store: Any, key: str) -> Account:
        account = Account(key, store)
        await account.arefresh()
        return account

    def test_commands_round_trip_and_a_resent_command_is_a_no_op(self) -> None:
        async def test(store: Any) -> None:
            key = self.key()
            account = Account(key, store)
            assert await account.ahandle(Open("ann")) == [Opened("ann")]
            assert await account.ahandle(Deposit(100)) == [Deposited(100)]
            assert await account.ahandle(Withdraw(70), commit_id="w-1") == [Withdrawn(70)]
            await Account(key, store).ahandle(Deposit(5))
            again = Account(key, store)
            assert await again.ahandle(Withdraw(70), commit_id="w-1") == []
            assert again.handled() == 0
            reader = await self.read(store, key)
            assert (reader.balance, reader.sequence_number()) == (35, 4)
            events = await store.read_events(key)
            assert events[2].commit_id == "w-1" and events[2].recorded_at is not None

        self.run(test)

    def test_a_lost_reply_can_be_retried_and_stores_once(self) -> None:
        async def test(store: Any) -> None:
            key = self.key()
            await Account(key, store).ahandle(Deposit(10))
            flaky = Account(key, _LostReply(store))
            with pytest.raises(StoreUnavailableError):
                await flaky.ahandle(Deposit(5), commit_id="d-lost")
            assert await flaky.ahandle(Deposit(5), commit_id="d-lost") == []
            reader = await self.read(store, key)
            assert (reader.balance, reader.sequence_number()) == (15, 2)

        self.run(test)

    def test_a_concurrency_fault_writes_nothing(self) -> None:
        async def test(store: Any) -> None:
            key = self.key()
            first, second = await self.read(store, key), await self.read(store, key)
            first.apply_event(Deposited(1))
            await first.acommit()
            second.apply_event(Deposited(7))
            with pytest.raises(ConcurrencyFault):
                await second.acommit()
            reader = await self.read(store, key)
            assert (reader.balance, reader.sequence_number()) == (1, 1)

        self.run(test)

    def test_snapshots_load_flat(self) -> None:
        async def test(store: Any) -> None:
            key = self.key()
            account = Account(key, store)
            for _ in range(12):
                await account.ahandle(Deposit(1))
            assert await store.read_snapshot(key) == (10, {"owner": "", "balance": 10})
            reader = await self.read(store, key)
            assert (reader.balance, reader.sequence_number()) == (12, 12)

        self.run(test, snapshot_interval=5)

    def test_commit_together_is_all_or_none(self) -> None:
        async def test(store: Any) -> None:
            source, target = self.key(), self.key()
            await Account(source, store).ahandle(Deposit(50))
            debit, credit = await self.read(store, source), await self.read(store, target)
            await Account(target, store).ahandle(Deposit(1))
            debit.apply_event(Withdrawn(20))
            credit.apply_event(Deposited(20))
            with pytest.raises(ConcurrencyFault):
                await aio.commit_together(debit, credit)
            assert (debit.balance, debit.is_dirty(), credit.balance) == (50, False, 0)
            await debit.arefresh()
            await credit.arefresh()
            debit.apply_event(Withdrawn(20))
            credit.apply_event(Deposited(20))
            await aio.commit_together(debit, credit, commit_id="t-1")
            assert [(await self.read(store, k)).balance for k in (source, target)] == [30, 21]

        self.run(test)

    def test_fifty_coroutines_racing_on_one_aggregate_lose_nothing(self) -> None:
        async def test(store: Any) -> None:
            key = self.key()

            async def deposit() -> None:
                account = Account(key, store)
                await aio.retry(10_000, lambda: account.ahandle(Deposit(1)))

            await asyncio.gather(*(deposit() for _ in range(50)))
            reader = await self.read(store, key)
            assert (reader.balance, reader.sequence_number()) == (50, 50)

        self.run(test)

    def test_a_task_cancelled_during_a_commit_leaves_the_aggregate_whole(self) -> None:
        async def test(store: Any) -> None:
            key = self.key()
            outcomes = set()
            for delay in (0, 0, 0.0005, 0.001, 0.002, 0.005):
                account = await self.read(store, key)
                before = account.sequence_number()
                for amount in (1, 2, 3):
                    account.apply_event(Deposited(amount))
                task = asyncio.create_task(account.acommit())
                await asyncio.sleep(delay)
                task.cancel()
                try:
                    await task
                    outcomes.add("stored")
                except asyncio.CancelledError:
                    outcomes.add("cancelled")
                account.rollback()
                reader = await self.read(store, key)
                assert reader.sequence_number() in (before, before + 3), "whole or absent"
                assert reader.balance == 6 * reader.sequence_number() // 3
            await Account(key, store).ahandle(Deposit(100))  # the connection is still usable
            reader = await self.read(store, key)
            assert reader.balance % 6 == 100 % 6 and outcomes

        self.run(test)

    def test_an_async_feed_consumer_delivers_every_commit_once_with_its_metadata(self) -> None:
        async def test(store: Any) -> None:
            keys = [self.key() for _ in range(3)]
            seen: list[tuple[str, int, str | None]] = []

            class Recorder:
                def handle(self, published: Any) -> None:
                    if published.key in keys:
                        seen.append((published.key, published.sequence, published.commit_id))

            consumer = aio.FeedConsumer(store, f"async-{uuid.uuid4().hex[:8]}", bank, poll_interval=0.01)
            consumer.add_handler(Recorder())
            for key in keys:
                await Account(key, store).ahandle(Deposit(1), commit_id=f"first-{key}")
            assert await consumer.run_once() >= 0
            consumer.start()
            for key in keys:
                await Account(key, store).ahandle(Deposit(2), commit_id=f"second-{key}")
            for _ in range(1000):
                if len(seen) >= 6:
                    break
                await asyncio.sleep(0.01)
            await consumer.stop()
            assert sorted(seen) == sorted(
                (key, n, f"{name}-{key}") for key in keys for n, name in ((1, "first"), (2, "second"))
            )

        self.run(test)

    def test_two_async_consumers_of_one_name_split_the_slices_and_deliver_every_commit(self) -> None:
        """Two members on one event loop (and one client), each waiting in ``read_feed``,
        deliver the commits of their own slice, every one once and in order, and stop. The
        split is made by their heartbeats before they start, and the lease outlasts the
        test: no slice changes hands in it."""

        async def test(store: Any) -> None:
            run = uuid.uuid4().hex[:8]
            prefix = f"async-split-{run}-"
            keys = [keys_in_slice(store, prefix, slice_, 2, 4) for slice_ in (0, 1)]
            seen: list[list[tuple[str, int]]] = [[], []]
            members = []
            for n in range(2):
                member = aio.FeedConsumer(
                    store,
                    f"split-{run}",
                    bank,
                    owner=f"{n}-{run}",
                    slices=2,
                    lease_seconds=60,
                    poll_interval=0.01,
                )
                member.add_handler(_Recorder(prefix, seen[n]))
                members.append(member)
            for member in (*members, *members):  # the first takes both slices, then gives one back
                await run_async(member._heartbeat_steps(), store.driver)
            assert [member.slices_held for member in members] == [{0}, {1}]
            for member in members:
                member.start()
            for round_ in range(2):
                for key in keys[0] + keys[1]:
                    await Account(key, store).ahandle(Deposit(1), commit_id=f"{round_}-{key}")
            for _ in range(1000):
                if sum(map(len, seen)) >= 16:
                    break
                await asyncio.sleep(0.01)
            for member in members:
                await asyncio.wait_for(member.stop(), 10)
            for slice_ in (0, 1):
                assert sorted(seen[slice_]) == [(key, n) for key in sorted(keys[slice_]) for n in (1, 2)]
                assert all([n for k, n in seen[slice_] if k == key] == [1, 2] for key in keys[slice_])

        self.run(test)

    def test_a_dead_members_slice_passes_to_a_busy_member_within_a_lease_and_a_poll(self) -> None:
        """``FeedSuite``'s test of that name, for consumers on one event loop (the survivor's
        handler blocks it, as busy work does)."""

        async def test(store: Any) -> None:
            run = uuid.uuid4().hex[:8]
            prefix, name = f"async-crash-{run}-", f"crash-{run}"
            own_key, dead_key = (keys_in_slice(store, prefix, slice_, 2)[0] for slice_ in (0, 1))
            for _ in range(BACKLOG):
                await Account(own_key, store).ahandle(Deposit(1))
            await Account(dead_key, store).ahandle(Deposit(1))
            survivor = aio.FeedConsumer(store, name, bank, **SURVIVOR, owner=f"a-{run}", poll_interval=0.01)
            watch = TakeoverWatch(prefix, survivor, 1)
            survivor.add_handler(watch)
            doomed = aio.FeedConsumer(store, name, bank, **DOOMED, owner=f"b-{run}", poll_interval=0.01)
            for member in (survivor, doomed, survivor, doomed):  # owners sort: the survivor is dealt slice 0
                await run_async(member._heartbeat_steps(), store.driver)
            died = time.monotonic()  # the doomed member is never called again, nor stopped
            assert (survivor.slices_held, doomed.slices_held) == ({0}, {1})
            survivor.start()
            while watch.taken_at is None and time.monotonic() < died + WAIT:
                await asyncio.sleep(0.02)
            await survivor.stop()
            watch.check(died)

        self.run(test)

    def test_a_started_async_consumer_hears_of_a_commit_well_within_its_poll_interval(self) -> None:
        """On a driver that pushes, a commit made while the consumer waits (it has delivered
        the first one and is reading again) reaches the handler in well under its
        ``poll_interval`` of 5 s, which a polling consumer would sleep."""

        async def test(store: Any) -> None:
            driver, key = store.driver, self.key()
            assert bool(getattr(driver, "pushes", False)) is self.pushes, "not the declared capability"
            arrived: dict[int, float] = {}
            waits: list[float] = []
            idle = asyncio.Event()
            real = driver.read_feed

            class Clock:
                def handle(self, published: Any) -> None:
                    if published.key == key:
                        arrived[published.sequence] = time.monotonic()

            async def spy(after: dict[int, str | None], limit: int, *, wait: float = 0.0) -> Any:
                waits.append(wait)
                if arrived and wait > 0:
                    idle.set()  # caught up: this call waits
                return await real(after, limit, wait=wait)

            name = f"push-{uuid.uuid4().hex[:8]}"
            consumer = aio.FeedConsumer(store, name, bank, lease_seconds=60, poll_interval=5.0)
            consumer.add_handler(Clock())
            driver.read_feed = spy
            try:
                await Account(key, store).ahandle(Deposit(1))
                consumer.start()
                await asyncio.wait_for(_until(lambda: 1 in arrived), 30)
                if not self.pushes:
                    assert not any(waits), "a driver that does not push was asked to wait"
                    return
                await asyncio.wait_for(idle.wait(), 30)
                committed = time.monotonic()
                await Account(key, store).ahandle(Deposit(1))
                await asyncio.wait_for(_until(lambda: 2 in arrived), 30)
            finally:
                await consumer.stop()
                del driver.read_feed
            delay = arrived[2] - committed
            assert delay < 1.0, f"the commit reached the handler {delay:.2f} s after it was made: polled"

        self.run(test)

    def test_an_async_consumer_draining_a_backlog_lets_the_other_tasks_run(self) -> None:
        """A consumer catching up awaits the store between batches, so another task on its
        loop runs while it delivers, not once the whole backlog is done (the memory driver
        waits on no I/O: its ``read_feed`` yields to the loop)."""

        async def test(store: Any) -> None:
            prefix = f"async-backlog-{uuid.uuid4().hex[:8]}-"
            keys = [f"{prefix}{n}{{{prefix}}}" for n in range(10)]  # one bucket: 2 events a batch
            for key in keys:
                for _ in range(3):
                    await Account(key, store).ahandle(Deposit(1))
            seen: list[tuple[str, int]] = []
            name = f"backlog-{uuid.uuid4().hex[:8]}"
            consumer = aio.FeedConsumer(store, name, bank, batch_size=2, lease_seconds=60, poll_interval=0.01)
            consumer.add_handler(_Recorder(prefix, seen))

            async def other_task() -> int:
                """How many events were delivered when it first ran after the first one."""
                while not seen:
                    await asyncio.sleep(0)
                return len(seen)

            other = asyncio.create_task(other_task())
            consumer.start()
            try:
                delivered_then = await asyncio.wait_for(other, 60)
                await asyncio.wait_for(_until(lambda: len(seen) >= 30), 60)
            finally:
                await consumer.stop()
            assert delivered_then < 30, "the other task ran only once the consumer had drained its backlog"
            assert sorted(seen) == [(key, n) for key in sorted(keys) for n in (1, 2, 3)]

        self.run(test)

    def test_the_sync_and_async_stores_read_each_other(self) -> None:
        sync_store = self.new_sync_store()
        key = self.key()
        try:
            Account(key, sync_store).handle(Deposit(3), commit_id="sync-1")

            async def test(store: Any) -> None:
                account = await self.read(store, key)
                assert account.balance == 3
                assert await Account(key, store).ahandle(Deposit(3), commit_id="sync-1") == []
                await account.ahandle(Deposit(4), commit_id="async-1")

            self.run(test)
            reader = Account(key, sync_store)
            assert reader.handle(Deposit(4), commit_id="async-1") == []
            assert (reader.balance, reader.sequence_number()) == (7, 2)
        finally:
            sync_store.close()
