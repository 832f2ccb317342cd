"""``StoreSuite``: the compliance tests every event store must pass.

A port of the Go package's ``utilities/test`` standard suite, plus what this
library promises beyond it (atomic multi-event commits, snapshots, old readers of
new events, concurrent writers). A driver's tests subclass it and define
``new_store``::

    class TestMyStore(StoreSuite):
        def new_store(self, *, snapshot_interval=0):
            return mystore.new_store(snapshot_interval=snapshot_interval)

Every test uses fresh aggregate keys, so ``new_store`` may return stores sharing data.
The re-encryption tests (``kvsourcing.testing.reencrypt``) need a key-value store, and
read the backend of a driver with the ``rewrite`` primitive raw: see that module.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from decimal import Decimal
from typing import Any, cast

import pytest

from kvsourcing.errors import (
    ConcurrencyFault,
    DirtyAggregateError,
    EncodingError,
    SequenceGapError,
    UnknownEventTypeError,
)
from kvsourcing.protocols import EventRegistry, EventStore
from kvsourcing.retry import retry
from kvsourcing.testing.commits import CommitTests
from kvsourcing.testing.domain import (
    Audited,
    Counter,
    Detail,
    Increment,
    Incremented,
    Renamed,
    Reset,
    registry,
)
from kvsourcing.testing.reencrypt import ReencryptTests


class RawWriter:
    """A writer adapter that claims any committed sequence, to test what stores refuse."""

    def __init__(self, key: str, committed: int, events: list[Any], reg: EventRegistry) -> None:
        self.key, self.committed, self.events = key, committed, events
        self.registry: Any = reg

    def get_key(self) -> str:
        return self.key

    def sequence_number(self) -> int:
        return self.committed + len(self.events)

    def get_event_registry(self) -> EventRegistry:
        return cast(EventRegistry, self.registry)

    def is_dirty(self) -> bool:
        return bool(self.events)

    def get_uncommitted_events(self) -> tuple[int, list[Any]]:
        return self.committed, list(self.events)

    def get_state(self) -> Any:
        return {"count": len(self.events)}


class Unregistered:
    """An event type no registry knows."""


class StoreSuite(CommitTests, ReencryptTests):
    """The store compliance suite; subclasses define ``new_store``."""

    def new_store(self, *, snapshot_interval: int = 0) -> Any:
        raise NotImplementedError("a StoreSuite subclass must define new_store()")

    @pytest.fixture
    def store(self) -> Any:
        store = self.new_store()
        yield store
        store.close()

    @pytest.fixture
    def snapshot_store(self) -> Any:
        store = self.new_store(snapshot_interval=5)
        yield store
        store.close()

    @staticmethod
    def fresh_key() -> str:
        return f"compliance-{uuid.uuid4()}"

    @staticmethod
    def load(store: EventStore, key: str, **options: Any) -> Counter:
        counter = Counter(key, store, **options)
        counter.refresh()
        return counter

    def test_startup_and_shutdown(self) -> None:
        with self.new_store() as store:
            assert self.load(store, self.fresh_key()).sequence_number() == 0

    def test_write_and_read_back_into_new_instance(self, store: EventStore) -> None:
        key = self.fresh_key()
        writer = Counter(key, store)
        writer.apply_event(Incremented(2))
        writer.apply_event(Renamed("first"))
        writer.commit()
        writer.apply_event(Incremented(3))
        writer.commit()
        reader = self.load(store, key)
        assert (reader.count, reader.name, reader.sequence_number()) == (5, "first", 3)
        assert not reader.is_dirty()

    def test_values_of_every_supported_type_round_trip(self, store: EventStore) -> None:
        key = self.fresh_key()
        event = Audited(
            id=uuid.uuid4(),
            detail=Detail(
                at=dt.datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5))),
                amount=Decimal("1234.5600"),
                tags=("a", "b"),
            ),
            when=dt.date(2026, 3, 1),
            blob=b"\x00\xffbytes",
            labels={"x", "y"},
            scores={1: 0.5, -2: 1e300},
        )
        writer = Counter(key, store)
        writer.apply_event(event)
        writer.commit()
        (read,) = self.load(store, key).audits
        assert read == event
        assert read.detail.at.utcoffset() == dt.timedelta(hours=5)
        assert isinstance(read.detail.tags, tuple) and isinstance(read.labels, set)

    def test_unmapped_event_fails_and_writes_nothing(self, store: EventStore) -> None:
        key = self.fresh_key()
        writer = Counter(key, store)
        writer.apply_event(Incremented())
        writer.apply_event(Unregistered())
        with pytest.raises(UnknownEventTypeError, match="Unregistered"):
            writer.commit()
        assert self.load(store, key).sequence_number() == 0

    def test_unencodable_value_fails_naming_the_field_and_writes_nothing(self, store: EventStore) -> None:
        key = self.fresh_key()
        writer = Counter(key, store)
        writer.apply_event(Incremented())
        writer.apply_event(Renamed(name=object()))  # type: ignore[arg-type]
        with pytest.raises(EncodingError, match=r"Renamed.*name.*object"):
            writer.commit()
        assert self.load(store, key).sequence_number() == 0

    def test_concurrency_fault(self, store: EventStore) -> None:
        key = self.fresh_key()
        first, second = self.load(store, key), self.load(store, key)
        first.apply_event(Incremented())
        first.commit()
        second.apply_event(Incremented(7))
        with pytest.raises(ConcurrencyFault) as caught:
            second.commit()
        assert (caught.value.aggregate_key, caught.value.event_sequence) == (key, 1)
        assert str(caught.value) == f"ConcurrencyFault: {key} at 1"
        reader = self.load(store, key)
        assert (reader.count, reader.sequence_number()) == (1, 1)

    def test_overlapping_multi_event_commit_writes_nothing(self, store: EventStore) -> None:
        key = self.fresh_key()
        reg = registry()
        store.commit_events(RawWriter(key, 0, [Incremented(1), Incremented(2), Incremented(3)], reg))
        late = RawWriter(key, 1, [Incremented(10), Incremented(20), Incremented(40)], reg)
        with pytest.raises(ConcurrencyFault) as caught:
            store.commit_events(late)
        assert caught.value.event_sequence == 2
        reader = self.load(store, key)
        assert (reader.count, reader.sequence_number()) == (6, 3)

    def test_write_past_end_fails(self, store: EventStore) -> None:
        key = self.fresh_key()
        with pytest.raises(SequenceGapError, match=key):
            store.commit_events(RawWriter(key, 5, [Incremented()], registry()))
        assert self.load(store, key).sequence_number() == 0

    def test_250_write_refresh_cycles(self, store: EventStore) -> None:
        key = self.fresh_key()
        counter = Counter(key, store)
        for expected in range(1, 251):
            counter.refresh()
            counter.apply_event(Incremented())
            counter.commit()
            assert counter.sequence_number() == expected
        reader = self.load(store, key)
        assert (reader.count, reader.sequence_number()) == (250, 250)

    def test_dirty_refresh_fails(self, store: EventStore) -> None:
        counter = Counter(self.fresh_key(), store)
        counter.apply_event(Incremented())
        with pytest.raises(DirtyAggregateError):
            counter.refresh()
        assert counter.is_dirty()

    def test_refresh_loads_only_new_events(self, store: EventStore) -> None:
        key = self.fresh_key()
        reader = self.load(store, key)
        writer = Counter(key, store)
        for by in (1, 2, 3):
            writer.apply_event(Incremented(by))
            writer.commit()
        reader.refresh()
        reader._replayed.clear()
        writer.apply_event(Incremented(4))
        writer.commit()
        reader.refresh()
        assert reader._replayed == [Incremented(4)]
        assert (reader.count, reader.sequence_number()) == (10, 4)

    def test_snapshot_and_tail_equal_full_replay(self, snapshot_store: EventStore) -> None:
        key = self.fresh_key()
        writer = Counter(key, snapshot_store)
        for size in (1, 3, 2, 4, 1, 6, 2, 4):
            for _ in range(size):
                writer.apply_event(Incremented(writer.sequence_number() + 1))
            writer.apply_event(Renamed(f"after-{writer.sequence_number()}"))
            writer.commit()
        total = writer.sequence_number()
        increments = sum(e.by for e in writer._replayed if isinstance(e, Incremented))
        reader = self.load(snapshot_store, key)
        assert (reader.count, reader.name, reader.sequence_number()) == (
            increments,
            writer.name,
            total,
        )
        assert len(reader._replayed) < 5, "the reader should start from the newest snapshot"

    def test_snapshot_written_when_commit_passes_a_multiple(self, snapshot_store: EventStore) -> None:
        key = self.fresh_key()
        writer = Counter(key, snapshot_store)
        for _ in range(4):
            writer.apply_event(Incremented())
        writer.commit()
        assert len(self.load(snapshot_store, key)._replayed) == 4, "no snapshot before 5"
        for _ in range(3):
            writer.apply_event(Incremented())
        writer.commit()
        reader = self.load(snapshot_store, key)
        assert reader._replayed == [], "the commit passing 5 snapshots its end, 7"
        assert (reader.count, reader.sequence_number()) == (7, 7)

    def test_unknown_event_type_is_replayed_as_mapping(self, store: EventStore) -> None:
        key = self.fresh_key()
        newer = Counter(key, store, newer=True)
        newer.apply_event(Incremented(5))
        newer.apply_event(Reset(to=100))
        newer.apply_event(Incremented(1))
        newer.commit()
        older = self.load(store, key)
        assert older.sequence_number() == 3
        assert older._replayed[1] == {"to": 100}
        assert older.count == 6
        assert self.load(store, key, newer=True).count == 101

    def test_older_event_revision_is_upcast(self, store: EventStore) -> None:
        key = self.fresh_key()
        legacy = RawWriter(key, 0, [], registry())
        legacy.events = [{"title": "legacy"}]
        legacy.registry = _LegacyRegistry()
        store.commit_events(legacy)
        reader = self.load(store, key)
        assert reader.name == "legacy" and reader._replayed == [Renamed("legacy")]

    def test_handle_recovers_from_a_lost_race_under_retry(self, store: EventStore) -> None:
        key = self.fresh_key()
        rival = self.load(store, key)
        racing = _RaceOnce(store, lambda: rival.handle(Increment(10)))
        loser = Counter(key, racing)
        retry(3, lambda: loser.handle(Increment(1)))
        assert racing.raced
        assert (loser.count, loser.sequence_number(), loser.is_dirty()) == (11, 2, False)
        reader = self.load(store, key)
        assert (reader.count, reader.sequence_number()) == (11, 2)

    def test_eight_threads_increment_one_aggregate_exactly_200_times(self, store: EventStore) -> None:
        key = self.fresh_key()
        errors: list[BaseException] = []

        def worker() -> None:
            counter = Counter(key, store)
            try:
                for _ in range(25):
                    retry(10_000, lambda: counter.handle(Increment()))
            except BaseException as exc:
                errors.append(exc)

        # A slow store (moto's server on a busy 2-core machine) took 99 s here: one
        # deadline for all the threads, well past that, and a clear failure if it passes.
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 270
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), "the writers did not finish in time"
        assert not errors, errors
        reader = self.load(store, key)
        assert (reader.count, reader.sequence_number()) == (200, 200)
        assert all(e == Incremented(1) for e in reader._replayed)


class _LegacyRegistry:
    """Writes a mapping under the ``Renamed`` type, as release 1 stored it."""

    def domain(self) -> str:
        return "compliance"

    def get_event_type(self, event: Any) -> tuple[str, bool]:
        return "Renamed", True


class _RaceOnce:
    """Wraps a store so that a rival commits right after the first refresh: a real lost race."""

    def __init__(self, inner: EventStore, rival: Any) -> None:
        self.inner, self.rival, self.raced = inner, rival, False

    def refresh(self, reader: Any) -> None:
        self.inner.refresh(reader)
        if not self.raced:
            self.raced = True
            self.rival()

    def commit_events(self, writer: Any) -> None:
        self.inner.commit_events(writer)

    def close(self) -> None:
        self.inner.close()
