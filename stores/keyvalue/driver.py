"""The primitives a key-value driver supplies to the tablestore base.

A driver stores opaque, already encoded records; the base does everything else
(validation, encoding, the snapshot policy, mapping clashes to faults). Two calls
carry the whole contract, and each must be one atomic operation on the backend:

* ``append(commit)`` writes ``commit.records`` as sequences ``expected+1 .. last``
  (and ``commit.snapshot`` at ``last`` when given) if and only if the aggregate is at
  ``commit.expected``. It returns ``None`` on success, or the sequence the aggregate
  was really at, having written nothing.
* ``load(key, after, use_snapshot=...)`` returns the newest snapshot when it is newer
  than ``after`` (and ``use_snapshot`` is true), and every record after the later of
  the two, read consistently.

A ``FeedDriver`` also keeps the durable global feed: in the same atomic write as the
commit it appends a ``FeedEntry`` to the feed of the aggregate's partition bucket, and
it keeps small named values (checkpoints, leases) with compare-and-swap.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

ALREADY_STORED: Final = -1
"""What ``append`` returns when the commit's ``commit_id`` is already stored for the aggregate."""

DEFAULT_COMMIT_ID_TTL: Final = 86_400.0
"""Seconds a driver keeps a commit id by default (a day); ``None`` keeps ids for ever.

A commit re-sent after its id was forgotten is still refused if the aggregate moved on
(its expected sequence no longer matches); only a command run again from a refreshed
aggregate, with the old id, would be written again.
"""


MAX_COMMIT_ID_TTL: Final = 100 * 365 * 86_400.0
"""The longest ``commit_id_ttl`` (a hundred years): expiry times stay numbers every backend
stores; ``None`` keeps ids for ever."""


def validate_commit_id_ttl(ttl: object) -> float | None:
    """``ttl`` as seconds (> 0, at most ``MAX_COMMIT_ID_TTL``), or ``None`` to keep commit ids for ever."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_COMMIT_ID_TTL:
        raise ValueError(
            f"commit_id_ttl must be a number of seconds > 0 and at most {MAX_COMMIT_ID_TTL:.0f} "
            f"(a hundred years), or None to keep ids for ever, not {ttl!r}"
        )
    return float(ttl)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's encoded state as it was at ``sequence``."""

    sequence: int
    state: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """One atomic append: records ``expected+1 .. last`` of aggregate ``key``."""

    key: str
    expected: int
    records: Sequence[bytes]
    snapshot: bytes | None = None
    commit_id: str | None = None

    @property
    def last(self) -> int:
        """The sequence of the commit's last record, and of its snapshot."""
        return self.expected + len(self.records)


@dataclass(frozen=True, slots=True)
class Loaded:
    """What ``load`` found: an optional snapshot, then records from ``first`` on."""

    snapshot: Snapshot | None
    first: int
    records: Sequence[bytes]

    @property
    def last(self) -> int:
        """The sequence of the last record (or of the snapshot, or ``first - 1``)."""
        return self.first - 1 + len(self.records)


@runtime_checkable
class Driver(Protocol):
    """The backend primitives behind ``kvsourcing.stores.keyvalue.new_store``."""

    def append(self, commit: Commit) -> int | None:
        """Write ``commit`` atomically if the aggregate is at ``commit.expected``.

        Return ``None`` when written, else the aggregate's actual sequence (nothing written).
        When ``commit.commit_id`` is already stored for this aggregate, write nothing and
        return ``ALREADY_STORED``: that check comes first, inside the same atomic operation.
        A driver may forget a commit id after its ``commit_id_ttl``.
        Raise ``StoreUnavailableError`` when the backend cannot be reached and
        ``CommitTooLargeError`` when the commit exceeds the backend's atomic limits.
        """
        ...

    def load(self, key: str, after: int, *, use_snapshot: bool = True) -> Loaded:
        """Return the snapshot newer than ``after`` (if any, and wanted) and the records after it.

        When no snapshot is returned, ``Loaded.first`` is ``after + 1``; otherwise it is
        the snapshot's sequence + 1.
        """
        ...

    def close(self) -> None:
        """Release the driver's connections (idempotent)."""
        ...


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One commit as its bucket's feed recorded it: records ``first ..`` of aggregate ``key``.

    ``position`` is the driver's token for the entry, increasing within its bucket:
    what a consumer's checkpoint stores, and what ``read_feed`` reads after.
    """

    bucket: int
    position: str
    key: str
    first: int
    records: Sequence[bytes]


@runtime_checkable
class FeedDriver(Driver, Protocol):
    """A driver that also keeps the durable feed and the consumers' small values.

    Every successful ``append`` adds one ``FeedEntry`` (the commit's key, first sequence
    and records) to the feed of bucket ``partition_bucket(key, buckets)`` in the same
    atomic write, so no event is in the store but missing from the feed, or the reverse.
    """

    buckets: int

    def read_feed(self, after: dict[int, str | None], limit: int) -> list[FeedEntry]:
        """Up to ``limit`` entries of each bucket in ``after``, those after its position
        (``None``: from the start), oldest first within each bucket."""
        ...

    def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        """Remove the entries of ``bucket`` that every one of ``checkpoints`` has passed
        (those at or before the earliest); later entries keep their positions. Returns
        how many entries were removed."""
        ...

    def read_value(self, name: str) -> bytes | None:
        """The value stored under ``name`` (``None`` when absent or expired)."""
        ...

    def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        """The values of ``names``, in order, as ``read_value`` gives each, in as few
        round trips as the backend allows (a consumer reads a slice's checkpoints so)."""
        ...

    def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        """Atomically replace ``name``'s value by ``new`` (``None`` deletes it) if it is
        ``expected`` (``None``: absent or expired); ``ttl`` seconds makes ``new`` expire.
        Returns whether it was replaced."""
        ...


def partition_bucket(key: str, buckets: int) -> int:
    """The stable partition bucket (``0 .. buckets-1``) of an aggregate key.

    Used by drivers to co-locate every record of one aggregate (a Redis hash tag, a
    feed partition); stable across processes and Python versions.
    """
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % buckets
