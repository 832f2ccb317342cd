"""``FeedSuite``: the tests every store with a durable feed (a ``FeedDriver``) must pass.

Subclass it as ``StoreSuite`` and define ``new_store(self, *, snapshot_interval=0)``;
the stores it returns must share their data (consumers of one store see one feed).
Tests use fresh aggregate keys and consumer names, so the store may hold other data.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from kvsourcing.errors import StoreUnavailableError
from kvsourcing.handlers import PublishedEvent
from kvsourcing.protocols import EventStore
from kvsourcing.retry import retry
from kvsourcing.stores.keyvalue.consumer import FeedConsumer, trim_consumed
from kvsourcing.testing.commits import LostReply
from kvsourcing.testing.domain import Counter, Increment, Incremented, registry
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
        a._renewed = b._renewed = 0.0
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
    return lambda: counter.run(lambda: [counter.apply_event(Incremented()) for _ in range(size)])


def _all(expected: dict[str, int]) -> set[tuple[str, int]]:
    return {(key, sequence) for key, count in expected.items() for sequence in range(1, count + 1)}
