"""``TestStore``: an event store that records what aggregates commit, for unit tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kvsourcing.closing import ClosesOnExit
from kvsourcing.errors import TestStoreError
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


@dataclass(frozen=True)
class _Response:
    """How a ``TestStore`` answers a refresh of one key (Go's ``whenState``)."""

    offset: int
    events: list[Event] | None
    state: Any


@dataclass
class TestStore(ClosesOnExit):
    """Records commits in ``history``; refreshes answer only as ``when`` configured them.

    As Go's ``TestStore``, committed events are recorded, not replayed: a test says what
    a refresh returns with ``when``. ``error_filter`` is consulted by every operation,
    ``close()`` included: when it returns an exception, that operation raises it and
    records nothing.
    """

    __test__ = False

    history: list[TestStoreHistoryItem] = field(default_factory=list)
    error_filter: TestStoreFilter = default_test_store_filter
    _whens: dict[str, _Response] = field(default_factory=dict, repr=False)

    def _check(self) -> None:
        err = self.error_filter()
        if err is not None:
            raise err

    def when(self, key: str, offset: int, events: list[Event] | None, state: Any = None) -> TestStore:
        """Configure how ``key`` refreshes (replacing an earlier set-up), as Go's ``When``:
        ``events`` are replayed when the aggregate is at ``offset``; with ``events=None``,
        ``state`` is restored as a snapshot at ``offset``. Returns self, to chain."""
        self._whens[key] = _Response(offset, None if events is None else list(events), state)
        return self

    def commit_events(self, writer: StoreWriterAdapter) -> None:
        self._check()
        offset, events = writer.get_uncommitted_events()
        self.history.append(TestStoreHistoryItem(writer.get_key(), offset, events, writer.get_state()))

    def refresh(self, reader: StoreLoaderAdapter) -> None:
        """Answer as Go's ``TestStore.Refresh``: an unconfigured key refreshes to nothing at
        sequence 0 and raises ``TestStoreError`` past it; a configured one replays its events
        only at their offset (``TestStoreError`` at another), or restores its state."""
        self._check()
        key = reader.get_key()
        sequence = reader.sequence_number()
        response = self._whens.get(key)
        if response is None:
            if sequence == 0:
                return
            raise TestStoreError(
                f"TestStore cannot refresh {key!r}, already at sequence {sequence}: no response is "
                f"configured for it; call when({key!r}, {sequence}, events) first"
            )
        if response.events is not None:
            if response.offset != sequence:
                raise TestStoreError(
                    f"TestStore cannot refresh {key!r}: its configured events follow sequence "
                    f"{response.offset}, but the aggregate is at {sequence}"
                )
            for event in response.events:
                reader.replay_event(event)
        elif response.state is not None:
            reader.restore_snapshot(response.offset, response.state)

    def close(self) -> None:
        self._check()


def new_test_store() -> TestStore:
    """A new, empty ``TestStore``."""
    return TestStore()


new_test_store.__test__ = False  # type: ignore[attr-defined]
