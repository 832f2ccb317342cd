"""The tablestore base: everything a key-value event store does that no driver should repeat.

It validates keys, encodes events and snapshots with the store's codec, decides when
a snapshot is due, hands the driver one atomic ``Commit``, and maps what the driver
reports to ``ConcurrencyFault`` or ``SequenceGapError``. A commit whose id the driver
finds already stored (a re-send after a lost reply) succeeds without writing, and the
writer hears of it through ``commit_already_stored()`` when it has that method. On
load it restores the snapshot and replays the records after it; a record whose type the aggregate's
registry does not know is replayed as its mapping (and still bumps the sequence).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from kvsourcing.closing import ClosesOnExit
from kvsourcing.codecs import DEFAULT_CODEC, Codec
from kvsourcing.errors import (
    ConcurrencyFault,
    DirtyAggregateError,
    SequenceGapError,
)
from kvsourcing.keys import validate_commit_id, validate_key
from kvsourcing.mapper import SNAPSHOT, Cipher, Mapper
from kvsourcing.protocols import StoreLoaderAdapter, StoreWriterAdapter
from kvsourcing.steps import Call, Steps, run_sync
from kvsourcing.stores.keyvalue.driver import AsyncEventDriver, EventDriver
from kvsourcing.stores.keyvalue.records import ALREADY_STORED, Commit, Refusal, require_distinct_keys
from kvsourcing.stores.keyvalue.transcoding import KeyedEvent, Transcoder, utc
from kvsourcing.telemetry import traced_commit, traced_refresh

__all__ = ["KeyValueStore", "KeyedEvent", "StoreLogic", "new_store", "utc"]


DriverT = TypeVar("DriverT", EventDriver, AsyncEventDriver)


class StoreLogic(Transcoder, Generic[DriverT]):
    """What a key-value store decides, with no I/O: encoding, the snapshot policy, checks,
    and the store's operations as ``Steps`` that ask for driver calls. ``KeyValueStore``
    runs them on a sync driver, ``AsyncKeyValueStore`` awaits them on an async one. A
    commit, one driver call, is two plain functions instead (``_commit_of`` or
    ``_commits_of`` before the call, ``_refused`` after a refusal), which both stores call
    around it: a generator, its ``Call`` and its runner cost 9 000 instructions a commit."""

    def __init__(
        self,
        driver: DriverT,
        *,
        codec: Codec | None = None,
        snapshot_interval: int = 0,
        compression: str | None = None,
        cipher: Cipher | None = None,
    ) -> None:
        if isinstance(snapshot_interval, bool) or not isinstance(snapshot_interval, int):
            raise TypeError(f"snapshot_interval must be an int, not {type(snapshot_interval).__name__}")
        if snapshot_interval < 0:
            raise ValueError(f"snapshot_interval must be 0 (off) or positive, got {snapshot_interval}")
        self._driver: DriverT = driver
        self._use_codec(DEFAULT_CODEC if codec is None else codec)
        self._interval = snapshot_interval
        self._mapper = Mapper(compression, cipher)  # at rest: compress, then encrypt (kvsourcing.mapper)

    @property
    def driver(self) -> DriverT:
        """The driver this store writes through."""
        return self._driver

    @property
    def mapper(self) -> Mapper:
        """How this store compresses and encrypts what it stores (``kvsourcing.mapper``)."""
        return self._mapper

    @property
    def snapshot_interval(self) -> int:
        """Events between snapshots (0: no snapshots are written)."""
        return self._interval

    def _commits_of(
        self, writers: Sequence[StoreWriterAdapter]
    ) -> tuple[list[StoreWriterAdapter], list[Commit]]:
        """The writers with new events and their ``Commit``s, for one atomic driver call
        (``commit_together``); a key named twice raises ``ValueError``."""
        prepared, commits = [], []
        for writer in writers:
            commit = self._commit_of(writer)
            if commit is not None:
                prepared.append(writer)
                commits.append(commit)
        if len(commits) > 1:
            require_distinct_keys(commits)
        return prepared, commits

    def _refused(
        self, writers: Sequence[StoreWriterAdapter], commits: Sequence[Commit], refusal: Refusal
    ) -> None:
        """Act on the driver's refusal of ``commits``: nothing was written. A clash raises that
        aggregate's ``ConcurrencyFault``; when a commit's id is already stored (a re-send
        after a lost reply), every writer hears of it through ``commit_already_stored()``."""
        if refusal.head == ALREADY_STORED:
            for writer in writers:
                already_stored = getattr(writer, "commit_already_stored", None)
                if already_stored is not None:
                    already_stored()
            return
        commit = commits[refusal.index]
        if refusal.head > commit.expected:
            raise ConcurrencyFault(commit.key, commit.expected + 1)
        raise SequenceGapError(
            f"cannot write {commit.key!r} after sequence {commit.expected}: the store holds only "
            f"{refusal.head} event(s) for it; refresh the aggregate before committing"
        )

    def _commit_of(self, writer: StoreWriterAdapter) -> Commit | None:
        """The driver's ``Commit`` of a writer's new events (``None`` when it has none)."""
        key = validate_key(writer.get_key())
        committed, events = writer.get_uncommitted_events()
        if not events:
            return None
        records = self._encode_events(writer.get_event_registry(), key, committed, events)
        last = committed + len(records)
        snapshot = None
        if self._interval and last // self._interval > committed // self._interval:
            snapshot = self._encode_state(key, last, writer)
        get_commit_id = getattr(writer, "get_commit_id", None)
        commit_id = None if get_commit_id is None else get_commit_id()
        if commit_id is None:
            return Commit(key, committed, records, snapshot)
        names_commit = getattr(writer, "names_commit", None)
        named = names_commit is not None and bool(names_commit())
        return Commit(key, committed, records, snapshot, validate_commit_id(commit_id), named)

    def refresh_steps(self, reader: StoreLoaderAdapter) -> Steps[None]:
        """Bring ``reader`` up to date: the newest snapshot if newer, then the events after it.

        A reader that asks for a commit id to be checked (``commit_id_to_check()``, as
        ``handle(command, commit_id=...)`` does) hears through ``commit_already_stored()``
        when that commit is stored, read by the same load.
        """
        key = validate_key(reader.get_key())
        if reader.is_dirty():
            raise DirtyAggregateError(
                f"aggregate {key!r} has uncommitted events: commit them before refreshing"
            )
        check = getattr(reader, "commit_id_to_check", None)
        commit_id = None if check is None else check()
        if commit_id is not None:
            validate_commit_id(commit_id)
        loaded = yield Call("load", (key, reader.sequence_number()), {"commit_id": commit_id})
        if loaded.snapshot is not None:
            state = self._read(key, loaded.snapshot.sequence, SNAPSHOT, loaded.snapshot.state)
            reader.restore_snapshot(loaded.snapshot.sequence, state)
        replay_event = reader.replay_event
        for event in self._decode_events(key, loaded.first, loaded.records, reader.get_event_registry()):
            replay_event(event)
        if loaded.stored:
            getattr(reader, "commit_already_stored")()  # noqa: B009 (asked for by commit_id_to_check)

    def read_events_steps(self, key: str, after: int = 0) -> Steps[list[KeyedEvent]]:
        """An aggregate's stored events after ``after`` as plain data, with each commit's id
        and time, ignoring snapshots."""
        key = validate_key(key)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError(f"after must be a sequence number (an int >= 0), not {after!r}")
        loaded = yield Call("load", (key, after), {"use_snapshot": False, "metadata": True})
        commits = iter(loaded.commits)
        info = next(commits, None)
        events = []
        for sequence, (event_type, data, domain) in enumerate(
            self._decode_records(key, loaded.first, loaded.records), loaded.first
        ):
            while info is not None and info.last < sequence:
                info = next(commits, None)
            if info is None or info.first > sequence:
                events.append(KeyedEvent(key, sequence, event_type, data, domain))
            else:
                events.append(
                    KeyedEvent(key, sequence, event_type, data, domain, info.commit_id, utc(info.recorded_at))
                )
        return events

    def read_snapshot_steps(self, key: str) -> Steps[tuple[int, Any] | None]:
        """``(sequence, state as plain data)`` of an aggregate's newest snapshot, or ``None``."""
        key = validate_key(key)
        loaded = yield Call("load", (key, 0))
        snapshot = loaded.snapshot
        if snapshot is None:
            return None
        return snapshot.sequence, self._read(key, snapshot.sequence, SNAPSHOT, snapshot.state)


class KeyValueStore(StoreLogic[EventDriver], ClosesOnExit):
    """An ``EventStore`` over a key-value driver; see the module docstring."""

    @traced_commit
    def commit_events(self, writer: StoreWriterAdapter) -> None:
        """Write the writer's new events (and a snapshot when due) in one atomic driver call;
        a refusal raises, or tells the writer its commit was already stored (``_refused``)."""
        commit = self._commit_of(writer)
        if commit is not None:
            refusal = self._driver.append_many((commit,))
            if refusal is not None:
                self._refused((writer,), (commit,), refusal)

    @traced_commit
    def commit_together(self, writers: Sequence[StoreWriterAdapter]) -> None:
        """Write the new events of several aggregates in one atomic driver call: all or none."""
        prepared, commits = self._commits_of(writers)
        if commits:
            refusal = self._driver.append_many(commits)
            if refusal is not None:
                self._refused(prepared, commits, refusal)

    @traced_refresh
    def refresh(self, reader: StoreLoaderAdapter) -> None:
        """See ``refresh_steps``."""
        run_sync(self.refresh_steps(reader), self._driver)

    def read_events(self, key: str, after: int = 0) -> list[KeyedEvent]:
        """See ``read_events_steps``."""
        return run_sync(self.read_events_steps(key, after), self._driver)

    def read_snapshot(self, key: str) -> tuple[int, Any] | None:
        """See ``read_snapshot_steps``."""
        return run_sync(self.read_snapshot_steps(key), self._driver)

    def close(self) -> None:
        """Close the driver."""
        self._driver.close()


def new_store(
    driver: EventDriver,
    *,
    codec: Codec | None = None,
    snapshot_interval: int = 0,
    compression: str | None = None,
    cipher: Cipher | None = None,
) -> KeyValueStore:
    """An event store over ``driver``; ``snapshot_interval=N`` snapshots every N events;
    ``compression`` (``"zlib"``, ``"zstd"``) and ``cipher`` apply to stored records and snapshots."""
    return KeyValueStore(
        driver, codec=codec, snapshot_interval=snapshot_interval, compression=compression, cipher=cipher
    )
