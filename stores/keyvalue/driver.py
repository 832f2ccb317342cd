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
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


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


def partition_bucket(key: str, buckets: int) -> int:
    """The stable partition bucket (``0 .. buckets-1``) of an aggregate key.

    Used by drivers to co-locate every record of one aggregate (a Redis hash tag, a
    feed partition); stable across processes and Python versions.
    """
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % buckets
