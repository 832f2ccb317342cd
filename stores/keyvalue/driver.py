"""The primitives a key-value driver supplies to the tablestore base, by role.

A driver stores opaque, already encoded records; the base does everything else
(validation, encoding, the snapshot policy, mapping refusals to faults). The roles:

* ``EventDriver``, which every driver is: ``append`` writes one or more aggregates'
  commits in one atomic operation, ``load`` reads an aggregate back, ``close``.
* ``FeedDriver``: an ``EventDriver`` that also records every commit in the durable
  feed of its aggregate's bucket, inside the same atomic write, and reads it back.
* ``ValueDriver``: small named values with compare-and-swap, on which ``FeedConsumer``
  keeps its checkpoints and leases.
* ``RewritingDriver``: an ``EventDriver`` that can replace an aggregate's records in
  place, which ``kvsourcing reencrypt`` needs.

``DriverBase`` (``kvsourcing.stores.keyvalue.base``) supplies what these share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from kvsourcing.stores.keyvalue.records import Commit, FeedEntry, Loaded, Refusal, Snapshot


@runtime_checkable
class EventDriver(Protocol):
    """The backend primitives behind ``kvsourcing.stores.keyvalue.new_store``."""

    def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        """Write every commit in one atomic operation, all or none.

        Each commit is written only if its aggregate is at ``commit.expected`` and its
        ``commit_id`` is not already stored for that aggregate (that check comes first).
        Return ``None`` when all were written; else a ``Refusal`` naming the first commit
        that could not be, having written nothing. The commits name distinct aggregates.
        Raise ``StoreUnavailableError`` when the backend cannot be reached,
        ``CommitTooLargeError`` beyond the backend's atomic limits, and
        ``CrossPartitionError`` when the backend cannot write these aggregates atomically
        (a Redis Cluster, keys in different slots): always before writing anything.
        """
        ...

    def append(self, commit: Commit) -> int | None:
        """``append_many([commit])``: ``None`` when written, else ``Refusal.head``
        (``ALREADY_STORED`` or the aggregate's actual sequence). ``DriverBase`` supplies it."""
        ...

    def load(
        self, key: str, after: int, *, use_snapshot: bool = True, commit_id: str | None = None,
        metadata: bool = False,
    ) -> Loaded:  # fmt: skip
        """The newest snapshot newer than ``after`` (if any, and wanted) and the records after it.

        When no snapshot is returned, ``Loaded.first`` is ``after + 1``; otherwise it is the
        snapshot's sequence + 1. With ``commit_id``, ``Loaded.stored`` says whether that
        (named) commit is stored for ``key``, read in the same operation where the backend
        allows. With ``metadata``, ``Loaded.commits`` holds the commits of the records.
        """
        ...

    def close(self) -> None:
        """Release the driver's connections (idempotent)."""
        ...


@runtime_checkable
class AsyncEventDriver(Protocol):
    """``EventDriver`` for asyncio: the same calls as coroutines (``AsyncDriverBase``)."""

    async def append_many(self, commits: Sequence[Commit]) -> Refusal | None: ...

    async def load(
        self, key: str, after: int, *, use_snapshot: bool = True, commit_id: str | None = None,
        metadata: bool = False,
    ) -> Loaded: ...  # fmt: skip

    async def close(self) -> None: ...


Driver = EventDriver
"""The name of ``EventDriver`` before the contract was split by role."""


@runtime_checkable
class ValueDriver(Protocol):
    """Small named values with compare-and-swap (a consumer's checkpoints and leases)."""

    def read_value(self, name: str) -> bytes | None:
        """The value stored under ``name`` (``None`` when absent or expired)."""
        ...

    def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        """The values of ``names``, in order, as ``read_value`` gives each, in as few
        round trips as the backend allows."""
        ...

    def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        """Atomically replace ``name``'s value by ``new`` (``None`` deletes it) if it is
        ``expected`` (``None``: absent or expired); ``ttl`` seconds makes ``new`` expire.
        Returns whether it was replaced."""
        ...


@runtime_checkable
class FeedDriver(EventDriver, ValueDriver, Protocol):
    """A driver that also keeps the durable feed.

    Every successful append adds one ``FeedEntry`` per commit (the commit's key, first
    sequence, records and metadata) to the feed of bucket ``partition_bucket(key,
    buckets)`` in the same atomic write, so no event is in the store but missing from the
    feed, or the reverse. ``feed`` is false for a driver opened with ``feed=False``: it
    records no feed, and ``FeedConsumer`` refuses it.
    """

    buckets: int
    feed: bool

    def read_feed(self, after: dict[int, str | None], limit: int, *, wait: float = 0.0) -> list[FeedEntry]:
        """Up to ``limit`` entries of each bucket in ``after``, those after its position
        (``None``: from the start), oldest first within each bucket. When there is none
        and ``wait`` > 0, a driver that can be told of new entries (``pushes``) waits up to
        ``wait`` seconds for some; others return at once."""
        ...

    def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        """Remove the entries of ``bucket`` that every one of ``checkpoints`` has passed
        (those at or before the earliest); later entries keep their positions. Returns
        how many entries were removed."""
        ...


@runtime_checkable
class RewritingDriver(EventDriver, Protocol):
    """A driver with the optional ``rewrite`` primitive (``kvsourcing reencrypt``)."""

    def rewrite(
        self, key: str, expected_head: int, records: Sequence[bytes], snapshot: Snapshot | None = None
    ) -> int | None:
        """Replace records ``1..expected_head`` of ``key`` by ``records`` (the same events,
        re-encoded), and its snapshot by ``snapshot`` when given, only if the head is still
        ``expected_head`` and the stored snapshot is at ``snapshot.sequence``. Returns
        ``None`` when written, else the head found, having written nothing more: the caller
        reads again. Commits' ids and times and feed entries stay as they are. Raise
        ``ValueError`` (``records.check_rewrite``) unless there are ``expected_head`` records.
        A driver documents whether the replacement is atomic or, over its limits, done in
        idempotent parts."""
        ...
