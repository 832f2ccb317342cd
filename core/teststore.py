"""``TestStore``: an event store that records what aggregates commit, for unit tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kvsourcing.closing import ClosesOnExit
from kvsourcing.protocols import StoreLoaderAdapter, StoreWriterAdapter
from kvsourcing.types import Event

TestStoreFilter = Callable[[], BaseException | None]


def default_test_store_filter() -> None:
    """The default filter: never fails."""
    return None


def test_store_failure_filter(err: BaseException) -> TestStoreFilter:
    """A filter that makes every ``TestStore`` operation raise ``err``."""
    return lambda: err


test_store_failure_filter.__test__ = False  # type: ignore[attr-defined]


@dataclass
class TestStoreHistoryItem:
    """One commit as a ``TestStore`` saw it: events written after ``offset``, and the state."""

    __test__ = False

    key: str
    offset: int
    events: list[Event]
    state: Any = None


@dataclass
class TestStore(ClosesOnExit):
    """Records commits in ``history`` and replays them (and ``when`` items) on refresh.

    ``error_filter`` is consulted by every operation, ``close()`` included: when it
    returns an exception, that operation raises it and records nothing.
    """

    __test__ = False

    history: list[TestStoreHistoryItem] = field(default_factory=list)
    error_filter: TestStoreFilter = default_test_store_filter

    def _check(self) -> None:
        err = self.error_filter()
        if err is not None:
            raise err

    def when(self, key: str, offset: int, events: list[Event], state: Any = None) -> TestStore:
        """Add history as if ``events`` had been committed after ``offset``; returns self."""
        self.history.append(TestStoreHistoryItem(key, offset, list(events), state))
        return self

    def commit_events(self, writer: StoreWriterAdapter) -> None:
        self._check()
        offset, events = writer.get_uncommitted_events()
        self.history.append(TestStoreHistoryItem(writer.get_key(), offset, events, writer.get_state()))

    def refresh(self, reader: StoreLoaderAdapter) -> None:
        self._check()
        key = reader.get_key()
        for item in self.history:
            if item.key != key:
                continue
            for sequence, event in enumerate(item.events, start=item.offset + 1):
                if sequence > reader.sequence_number():
                    reader.replay_event(event)

    def close(self) -> None:
        self._check()


def new_test_store() -> TestStore:
    """A new, empty ``TestStore``."""
    return TestStore()


new_test_store.__test__ = False  # type: ignore[attr-defined]
