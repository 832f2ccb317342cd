"""``FeedSuite``: the tests every store with a durable feed (a ``FeedDriver``) must pass.

Subclass it as ``StoreSuite`` and define ``new_store(self, *, snapshot_interval=0)``;
the stores it returns must share their data (consumers of one store see one feed).
Tests use fresh aggregate keys and consumer names, so the store may hold other data.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from kvsourcing.errors import EncodingError, StoreUnavailableError
from kvsourcing.handlers import PublishedEvent
from kvsourcing.protocols import EventHandler, EventStore
from kvsourcing.registry import StandardEventRegistry
from kvsourcing.retry import retry
from kvsourcing.stores.keyvalue.consumer import FeedConsumer
from kvsourcing.stores.keyvalue.records import partition_bucket
from kvsourcing.stores.keyvalue.values import trim_consumed
from kvsourcing.testing.commits import LostReply
from kvsourcing.testing.domain import Counter, Increment, Incremented, Renamed, registry
from kvsourcing.testing.transfers import TransferTests


class Recorder:
    """A handler that records the events of one test's aggregates; ``kill_after`` simulates
    a process dying (a ``BaseException`` out of the handler) after that many events."""

    def __init__(self, prefix: str, kill_after: int | None = None) -> None:
        self.prefix = prefix
        self.seen: list[tuple[str, int, Any]] = []
        self.kill_after = kill_after
        self.lock = threading.Lock()

    def handle(self, published: PublishedEvent) -> None:
        if not published.key.startswith(self.prefix):
            return
        if self.kill_after is not None and len(self.seen) >= self.kill_after:
            raise Killed()
        with self.lock:
            self.seen.append((published.key, published.sequence, published.data))


class Killed(BaseException):
    """Stands for the process being killed mid-batch."""


class FeedSuite(TransferTests):
    """Durable feed, checkpointed consumers and idempotent commits; subclasses define ``new_store``."""

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        raise NotImplementedError("a FeedSuite subclass must define new_store()")

    @pytest.fixture
    def store(self) -> Any:
        store = self.new_store()
        yield store
        store.close()

    @staticmethod
    def prefix() -> str:
        return f"feed-{uuid.uuid4().hex[:12]}-"

    @staticmethod
    def consumer(store: Any, name: str, recorder: Recorder, **options: Any) -> FeedConsumer:
        consumer = FeedConsumer(store, name, registry(), poll_interval=0.01, **options)
        consumer.add_handler(recorder)
        return consumer

    @staticmethod
    def drain(consumer: FeedConsumer, until: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "consumer did not catch up in time"
            if not consumer.run_once():
                time.sleep(0.01)

    @staticmethod
    def assert_in_order(
        seen: list[tuple[str, int, Any]], expected: dict[str, int], *, exactly_once: bool
    ) -> None:
        by_key: dict[str, list[int]] = defaultdict(list)
        for key, sequence, _ in seen:
            by_key[key].append(sequence)
        assert set(by_key) == set(expected)
        for key, sequences in by_key.items():
            if exactly_once:
                assert sequences == list(range(1, expected[key] + 1)), key
            else:
                assert sorted(set(sequences)) == list(range(1, expected[key] + 1)), key
                first_seen = list(dict.fromkeys(sequences))
                assert first_seen == sorted(first_seen), key

    def write_concurrently(
        self, store: Any, prefix: str, commits: int, threads: int, aggregates: int
    ) -> dict[str, int]:
        """``commits`` commands of 1-3 events from ``threads`` threads on ``aggregates`` keys."""
        written: dict[str, int] = defaultdict(int)
        lock = threading.Lock()
        errors: list[BaseException] = []

        def worker(index: int) -> None:
            try:
                for n in range(index, commits, threads):
                    key, size = f"{prefix}{n % aggregates}", 1 + n % 3
                    retry(10_000, _incrementing(Counter(key, store), size))
                    with lock:
                        written[key] += size
            except BaseException as exc:
                errors.append(exc)

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=300)
        assert not errors, errors
        return dict(written)

    def test_every_commit_reaches_a_consumer_once_in_order_across_a_restart(self, store: Any) -> None:
        prefix, name = self.prefix(), f"projection-{uuid.uuid4().hex[:8]}"
        recorder = Recorder(prefix)
        first = self.consumer(store, name, recorder)
        expected: dict[str, int] = {}
        writers = threading.Thread(
            target=lambda: expected.update(self.write_concurrently(store, prefix, 1000, 4, 50))
        )
        writers.start()
        while writers.is_alive() and len(recorder.seen) < 200:
            first.run_once()
        first.stop()
        writers.join()
        assert recorder.seen, "the first consumer should have delivered some events before its restart"
        second = self.consumer(store, name, recorder)
        self.drain(second, lambda: len(recorder.seen) >= sum(expected.values()))
        second.run_once()
        second.stop()
        assert len(recorder.seen) == sum(expected.values())
        self.assert_in_order(recorder.seen, expected, exactly_once=True)

    def test_late_consumer_catches_up_from_the_beginning(self, store: Any) -> None:
        prefix = self.prefix()
        for n in range(5):
            Counter(f"{prefix}{n}", store).handle(Increment(n + 1))
        recorder = Recorder(prefix)
        with self.consumer(store, f"late-{uuid.uuid4().hex[:8]}", recorder) as consumer:
            self.drain(consumer, lambda: len(recorder.seen) >= 5)
        assert sorted((k, s, e) for k, s, e in recorder.seen) == [
            (f"{prefix}{n}", 1, Incremented(n + 1)) for n in range(5)
        ]

    def test_consumer_killed_mid_batch_loses_nothing(self, store: Any) -> None:
        prefix, name = self.prefix(), f"killed-{uuid.uuid4().hex[:8]}"
        expected = {f"{prefix}{n}": 0 for n in range(10)}
        for n in range(60):
            key = f"{prefix}{n % 10}"
            Counter(key, store).handle(Increment())
            expected[key] += 1
        dying = Recorder(prefix, kill_after=25)
        doomed = self.consumer(store, name, dying, lease_seconds=0.5, batch_size=7)
        with pytest.raises(Killed):
            self.drain(doomed, lambda: False)
        survivor = Recorder(prefix)
        survivor.seen = list(dying.seen)
        successor = self.consumer(store, name, survivor, lease_seconds=0.5)
        self.drain(successor, lambda: {(k, s) for k, s, _ in survivor.seen} >= _all(expected))
        successor.stop()
        self.assert_in_order(survivor.seen, expected, exactly_once=False)

    def test_two_consumer_processes_split_the_buckets(self, store: Any) -> None:
        prefix, name = self.prefix(), f"shared-{uuid.uuid4().hex[:8]}"
        left, right = Recorder(prefix), Recorder(prefix)
        a = self.consumer(store, name, left, slices=8)
        b = self.consumer(store, name, right, slices=8)
        a.run_once()
        b.run_once()
        a._heartbeat_at = b._heartbeat_at = 0.0
        a.run_once()
        b.run_once()
        assert a.slices_held and b.slices_held
        assert not a.slices_held & b.slices_held
        assert a.slices_held | b.slices_held == set(range(min(8, store.driver.buckets)))
        expected = {}
        for n in range(40):
            key = f"{prefix}{n}"
            Counter(key, store).handle(Increment())
            expected[key] = 1
        deadline = time.monotonic() + 30
        while len(left.seen) + len(right.seen) < 40 and time.monotonic() < deadline:
            a.run_once()
            b.run_once()
        a.stop()
        b.stop()
        assert left.seen and right.seen
        assert not {k for k, _, _ in left.seen} & {k for k, _, _ in right.seen}
        self.assert_in_order(left.seen + right.seen, expected, exactly_once=True)

    def test_a_busy_member_takes_over_a_dead_members_slice_in_the_middle_of_its_backlog(
        self, store: Any
    ) -> None:
        """Renewing leases inside a long batch used to put off the heartbeat that takes free
        slices, so a busy survivor took a dead member's slice only once its backlog drained."""
        prefix, name = self.prefix(), f"takeover-{uuid.uuid4().hex[:8]}"
        busy, dead = Recorder(prefix), Recorder(prefix)
        # The dead member's lease (0.3 s) runs out while the survivor's handler pauses on its
        # first event for longer than the survivor's heartbeat period (a third of 3 s) and
        # shorter than its own lease: the next event of the same batch must take the slice.
        survivor = self.consumer(store, name, busy, slices=2, lease_seconds=3.0, batch_size=10)
        doomed = self.consumer(store, name, dead, slices=2, lease_seconds=0.3)
        pause = _PauseOnce(1.1)
        survivor.add_handler(pause)
        for member in (survivor, doomed, survivor, doomed):  # the survivor starts alone, then they split
            member._heartbeat()
        assert len(survivor.slices_held) == len(doomed.slices_held) == 1
        (mine,), (theirs,) = survivor.slices_held, doomed.slices_held
        own_key, dead_key = (keys_in_slice(store, prefix, slice_, 2)[0] for slice_ in (mine, theirs))
        for _ in range(30):
            Counter(own_key, store).handle(Increment())
        Counter(dead_key, store).handle(Increment())
        pause.armed = True
        survivor.run_once()  # the doomed member is never called again: it died
        assert pause.paused, "the survivor should have delivered an event"
        assert survivor.slices_held == {mine, theirs}, "the dead member's slice was not taken mid-batch"
        assert len([1 for key, _, _ in busy.seen if key == own_key]) < 30, "the backlog was drained"
        self.drain(survivor, lambda: {(k, s) for k, s, _ in busy.seen} >= {(dead_key, 1), (own_key, 30)})
        survivor.stop()
        self.assert_in_order(busy.seen, {own_key: 30, dead_key: 1}, exactly_once=True)

    def test_a_dead_members_slice_passes_to_a_busy_member_within_a_lease_and_a_poll(self, store: Any) -> None:
        """A member heartbeat only every third of its own lease, so a dead member's slice
        waited for the survivor's next heartbeat (here three seconds after its death, for a
        lease of half a second): now it is taken when the dead member's entry expires, or a
        poll later if its slice lease outlived the entry by a moment."""
        prefix, name, run = self.prefix(), f"crash-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
        own_key, dead_key = (keys_in_slice(store, prefix, slice_, 2)[0] for slice_ in (0, 1))
        for _ in range(BACKLOG):
            Counter(own_key, store).handle(Increment())
        Counter(dead_key, store).handle(Increment())
        survivor = self.consumer(store, name, Recorder(prefix), **SURVIVOR, owner=f"a-{run}")
        watch = TakeoverWatch(prefix, survivor, 1)
        survivor.add_handler(watch)
        doomed = self.consumer(store, name, Recorder(prefix), **DOOMED, owner=f"b-{run}")
        for member in (survivor, doomed, survivor, doomed):  # owners sort: the survivor is dealt slice 0
            member._heartbeat()
        died = time.monotonic()  # the doomed member is never called again, nor stopped
        assert (survivor.slices_held, doomed.slices_held) == (frozenset({0}), frozenset({1}))
        survivor.start()
        try:
            while watch.taken_at is None and time.monotonic() < died + WAIT:
                time.sleep(0.02)
        finally:
            survivor.stop()
        watch.check(died)

    def test_an_event_the_registry_cannot_build_stops_its_own_bucket_only(self, store: Any) -> None:
        """It escaped ``run_once`` before the handlers' ``try``: no bucket after it was read."""
        prefix, name = self.prefix(), f"unbuildable-{uuid.uuid4().hex[:8]}"
        buckets = store.driver.buckets
        keys = _keys_in_distinct_buckets(store, prefix, 6)
        bad_key, good_keys = keys[0], keys[1:]
        bad = Counter(bad_key, store)
        bad.handle(Increment())
        bad.apply_event(Renamed("fits the writer's class, not the reader's"))
        bad.commit()
        bad.handle(Increment())
        for key in good_keys:
            Counter(key, store).handle(Increment(2))
        failures: list[tuple[EventHandler | None, PublishedEvent, Exception]] = []
        recorder = Recorder(prefix)
        consumer = FeedConsumer(
            store,
            name,
            _registry_that_cannot_read_renamed(),
            on_error=lambda handler, published, exc: failures.append((handler, published, exc)),
        )
        consumer.add_handler(recorder)
        wanted = {(key, 1) for key in good_keys} | {(bad_key, 1)}
        self.drain(consumer, lambda: {(key, sequence) for key, sequence, _ in recorder.seen} >= wanted)
        consumer.run_once()
        delivered = {(key, sequence) for key, sequence, _ in recorder.seen}
        assert (bad_key, 1) in delivered, "the events before the bad one were not delivered"
        assert (bad_key, 3) not in delivered, "its bucket went on past the event it could not build"
        failures = [failure for failure in failures if failure[1].key == bad_key]
        assert failures, "on_error was not told"
        handler, published, exc = failures[0]
        assert handler is None
        assert (published.key, published.sequence, published.type) == (bad_key, 2, "Renamed")
        assert isinstance(exc, EncodingError)
        assert bad_key in str(exc) and "Renamed" in str(exc) and "sequence 2" in str(exc)
        assert consumer.checkpoint(partition_bucket(bad_key, buckets)) is not None
        consumer.stop()

    def test_a_consumer_on_a_driver_that_pushes_waits_in_read_feed_and_is_woken_by_the_commit(
        self, store: Any
    ) -> None:
        """On a driver that ``pushes``, the commit is returned by a ``read_feed`` call that
        was already waiting when it was made, not by a poll after it."""
        driver, prefix = store.driver, self.prefix()
        key = f"{prefix}0"
        idle, committed = threading.Event(), threading.Event()
        calls: list[tuple[bool, float, list[Any]]] = []
        real = driver.read_feed

        def spy(after: dict[int, str | None], limit: int, *, wait: float = 0.0) -> list[Any]:
            before_commit = not committed.is_set()
            if wait > 0 and not real(after, limit):
                idle.set()  # caught up: this call waits
            entries: list[Any] = real(after, limit, wait=wait)
            calls.append((before_commit, wait, [e for e in entries if e.key == key]))
            return entries

        recorder = Recorder(prefix)
        consumer = self.consumer(store, f"pushed-{uuid.uuid4().hex[:8]}", recorder, lease_seconds=60.0)
        driver.read_feed = spy
        try:
            consumer.start()
            if driver.pushes:
                assert idle.wait(30), "the consumer never waited in read_feed"
            Counter(key, store).handle(Increment())
            committed.set()
            deadline = time.monotonic() + 30
            while not recorder.seen and time.monotonic() < deadline:
                time.sleep(0.005)
            consumer.stop()
        finally:
            del driver.read_feed
        assert [(k, s) for k, s, _ in recorder.seen] == [(key, 1)]
        (returned_by,) = [(before, wait) for before, wait, mine in calls if mine]
        if driver.pushes:
            assert returned_by[0] and returned_by[1] > 0, "the commit was found by a poll, not pushed"
        else:
            assert returned_by == (False, 0.0), "a driver that does not push was asked to wait"

    def test_trim_removes_only_what_every_named_consumer_consumed(self, store: Any) -> None:
        prefix, ahead, behind = (
            self.prefix(),
            f"ahead-{uuid.uuid4().hex[:8]}",
            f"behind-{uuid.uuid4().hex[:8]}",
        )
        key = f"{prefix}0"
        for _ in range(3):
            Counter(key, store).handle(Increment())
        fast, slow = Recorder(prefix), Recorder(prefix)
        with self.consumer(store, ahead, fast) as consumer:
            self.drain(consumer, lambda: len(fast.seen) >= 3)
        slow_consumer = self.consumer(store, behind, slow, batch_size=1)
        self.drain(slow_consumer, lambda: len(slow.seen) >= 1)
        slow_consumer.stop()
        assert [(k, s) for k, s, _ in slow.seen] == [(key, 1)]
        assert trim_consumed(store, [ahead, f"never-{uuid.uuid4().hex[:8]}"]) == 0
        assert trim_consumed(store, [ahead, behind]) >= 1
        assert trim_consumed(store, [ahead, behind]) == 0
        with self.consumer(store, behind, slow) as consumer:
            self.drain(consumer, lambda: len(slow.seen) >= 3)
        assert [(k, s) for k, s, _ in slow.seen] == [(key, 1), (key, 2), (key, 3)]
        late = Recorder(prefix)
        with self.consumer(store, f"late-{uuid.uuid4().hex[:8]}", late) as consumer:
            self.drain(consumer, lambda: len(late.seen) >= 2)
            consumer.run_once()
        assert [(k, s) for k, s, _ in late.seen] == [(key, 2), (key, 3)], "only the consumed entry is gone"

    def test_values_read_one_by_one_or_together_agree(self, store: Any) -> None:
        driver, prefix = store.driver, self.prefix()
        names = [f"{prefix}{n}" for n in range(5)]
        assert driver.swap_value(names[0], None, b"zero")
        assert driver.swap_value(names[1], None, b"one", ttl=60)
        assert driver.swap_value(names[2], None, b"short", ttl=0.05)
        assert driver.swap_value(names[3], None, b"gone")
        assert driver.swap_value(names[3], b"gone", None)
        assert not driver.swap_value(names[0], b"wrong", b"never")
        time.sleep(0.1)
        asked = [*names, names[0]]
        assert driver.read_values(asked) == [driver.read_value(n) for n in asked]
        assert driver.read_values(asked) == [b"zero", b"one", None, None, None, b"zero"]
        assert driver.read_values([]) == []

    def test_resent_commit_id_writes_nothing_new(self, store: Any) -> None:
        prefix = self.prefix()
        key = f"{prefix}0"
        counter = Counter(key, store)
        assert counter.handle(Increment(5), commit_id="command-1") == [Incremented(5)]
        assert counter.handle(Increment(5), commit_id="command-1") == []
        assert (counter.count, counter.sequence_number()) == (5, 1)
        flaky = Counter(key, LostReply(store))
        flaky.refresh()
        flaky.apply_event(Incremented(2))
        with pytest.raises(StoreUnavailableError):
            flaky.commit()
        assert flaky.is_dirty()
        flaky.commit()
        assert not flaky.is_dirty()
        reader = Counter(key, store)
        reader.refresh()
        assert (reader.count, reader.sequence_number()) == (7, 2)
        recorder = Recorder(prefix)
        with self.consumer(store, f"ids-{uuid.uuid4().hex[:8]}", recorder) as consumer:
            self.drain(consumer, lambda: len(recorder.seen) >= 2)
            consumer.run_once()
        assert [(s, e) for _, s, e in recorder.seen] == [(1, Incremented(5)), (2, Incremented(2))]

    @pytest.mark.parametrize(
        ("commit_id", "error"),
        [
            ("", ValueError),
            ("a\nb", ValueError),
            ("\ud800", ValueError),
            ("x" * 1025, ValueError),
            (7, TypeError),
        ],
    )
    def test_a_commit_id_no_store_could_keep_is_refused_before_writing(
        self, store: Any, commit_id: Any, error: type[Exception]
    ) -> None:
        key = f"{self.prefix()}0"
        counter = Counter(key, store)
        with pytest.raises(error, match="commit id"):
            counter.handle(Increment(1), commit_id=commit_id)
        assert (counter.count, counter.sequence_number(), counter.is_dirty()) == (0, 0, False)
        reader = Counter(key, store)
        reader.refresh()
        assert reader.sequence_number() == 0


def _incrementing(counter: Counter, size: int) -> Callable[[], Any]:
    """A command body: refresh, apply ``size`` increments, commit (rolled back on a lost race)."""

    def increments() -> None:
        for _ in range(size):
            counter.apply_event(Incremented())

    return lambda: counter.run(increments)


DOOMED = {"slices": 2, "lease_seconds": 0.5}
SURVIVOR = {"slices": 2, "lease_seconds": 9.0, "batch_size": 5}
"""The takeover tests' members: the survivor's own heartbeat comes every 3 s, far later
than the dead member's lease (0.5 s) and a poll (0.01 s) and what the test allows more."""

BACKLOG, HANDLING = 40, 0.05
"""The survivor's backlog of events and its time for each (a takeover may wait for one)."""

JITTER = 0.85
"""What a busy test machine (and a store's round trips in the heartbeat) may add."""

WAIT = 4.5
"""How long the takeover tests wait: past the survivor's own next heartbeat (3 s)."""


class TakeoverWatch:
    """The survivor's handler in the takeover tests: it takes ``HANDLING`` seconds on each
    event of the test's aggregates, and notes when ``consumer`` first holds ``slice_`` (it
    runs where the consumer does, between its steps)."""

    def __init__(self, prefix: str, consumer: Any, slice_: int) -> None:
        self.prefix, self.consumer, self.slice = prefix, consumer, slice_
        self.handled = 0
        self.taken_at: float | None = None
        self.handled_before = 0

    def handle(self, published: PublishedEvent) -> None:
        if self.taken_at is None and self.slice in self.consumer.slices_held:
            self.taken_at, self.handled_before = time.monotonic(), self.handled
        if published.key.startswith(self.prefix):
            self.handled += 1
            time.sleep(HANDLING)

    def check(self, died: float) -> None:
        """The slice was taken in the survivor's backlog, within the dead member's lease,
        a poll, an event's handling and ``JITTER`` of ``died``."""
        assert self.taken_at is not None, f"the dead member's slice was not taken within {WAIT} s"
        taken = self.taken_at - died
        bound = float(DOOMED["lease_seconds"]) + self.consumer._poll_interval + HANDLING + JITTER
        assert taken <= bound, f"the dead member's slice was taken {taken:.2f} s after its death"
        assert 0 < self.handled_before < BACKLOG, "the survivor was not busy with its backlog then"


class _PauseOnce:
    """A handler that, once ``armed``, sleeps ``seconds`` on the first event it gets."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.armed, self.paused = seconds, False, False

    def handle(self, published: PublishedEvent) -> None:
        if self.armed and not self.paused:
            self.paused = True
            time.sleep(self.seconds)


@dataclass
class _Retitled:
    """Registered as ``Renamed`` by a reader whose class does not fit what was written."""

    title: str


def _registry_that_cannot_read_renamed() -> StandardEventRegistry:
    reader = StandardEventRegistry("compliance")
    reader.register_event(Incremented)
    reader.register_event(_Retitled, name="Renamed")
    return reader


def keys_in_slice(store: Any, prefix: str, slice_: int, slices: int, count: int = 1) -> list[str]:
    """The first ``count`` keys ``<prefix><n>`` whose bucket is in slice ``slice_`` of ``slices``."""
    buckets = store.driver.buckets
    keys = (
        f"{prefix}{n}"
        for n in itertools.count()
        if partition_bucket(f"{prefix}{n}", buckets) % slices == slice_
    )
    return list(itertools.islice(keys, count))


def _keys_in_distinct_buckets(store: Any, prefix: str, count: int) -> list[str]:
    by_bucket: dict[int, str] = {}
    for n in range(10_000):
        by_bucket.setdefault(partition_bucket(f"{prefix}{n}", store.driver.buckets), f"{prefix}{n}")
        if len(by_bucket) == count:
            break
    return list(by_bucket.values())


def _all(expected: dict[str, int]) -> set[tuple[str, int]]:
    return {(key, sequence) for key, count in expected.items() for sequence in range(1, count + 1)}
