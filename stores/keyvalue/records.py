"""The data a key-value driver and the tablestore base hand each other.

Records are opaque, already encoded bytes: a driver stores and returns them without
looking inside. Everything here is plain data, so the same values serve the sync and
the async drivers.
"""

from __future__ import annotations

import dataclasses
import types
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

R = TypeVar("R")

ALREADY_STORED: Final = -1
"""``Refusal.head`` when a commit's id is already stored for its aggregate."""


def _quick_init(cls: type[R]) -> type[R]:
    """Give the frozen, slotted dataclass ``cls`` an ``__init__`` that sets each field
    through its slot's descriptor, with the same signature and defaults. The one
    ``dataclass`` writes calls ``object.__setattr__`` per field (a frozen class refuses
    assignment), at twice the cost, and every commit builds a ``Commit`` and a ``FeedEntry``."""
    namespace: dict[str, Any] = {}
    params, lines = [], []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        slot = getattr(cls, field.name)
        if not isinstance(slot, types.MemberDescriptorType) or not field.name.isidentifier():
            raise TypeError(f"{cls.__qualname__}.{field.name} is not a slot")
        namespace[f"_set_{field.name}"] = slot.__set__
        if field.default is dataclasses.MISSING:
            params.append(field.name)
        else:
            namespace[f"_default_{field.name}"] = field.default
            params.append(f"{field.name}=_default_{field.name}")
        lines.append(f"    _set_{field.name}(self, {field.name})\n")
    source = f"def __init__(self, {', '.join(params)}):\n{''.join(lines)}"
    exec(source, namespace)  # built of field names only, each an identifier
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = dict(cls.__init__.__annotations__)
    setattr(cls, "__init__", init)  # noqa: B010 (mypy refuses to assign a method)
    return cls


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's encoded state as it was at ``sequence``."""

    sequence: int
    state: bytes


@_quick_init
@dataclass(frozen=True, slots=True)
class Commit:
    """One aggregate's part of an atomic append: records ``expected+1 .. last`` of ``key``.

    ``commit_id`` names the commit; every driver keeps it with the commit's records (it is
    the events' metadata) and recognises a re-send of this very commit. ``named`` says the
    caller chose the id (``handle(command, commit_id=...)``): then a later
    ``load(key, after, commit_id=...)`` must find it, whatever was committed after it,
    within the driver's documented idempotency window.
    """

    key: str
    expected: int
    records: Sequence[bytes]
    snapshot: bytes | None = None
    commit_id: str | None = None
    named: bool = False

    @property
    def last(self) -> int:
        """The sequence of the commit's last record, and of its snapshot."""
        return self.expected + len(self.records)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an append wrote nothing: the commit at ``index`` could not be written.

    ``head`` is ``ALREADY_STORED`` when that commit's id is already stored for its
    aggregate, else the sequence the aggregate is really at.
    """

    index: int
    head: int


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """A stored commit's metadata: the sequences of its first and last records, its id and time.

    ``recorded_at`` is seconds since the epoch (UTC), by the writer's clock.
    """

    first: int
    last: int
    commit_id: str | None
    recorded_at: float


@dataclass(frozen=True, slots=True)
class Loaded:
    """What ``load`` found: an optional snapshot, then records from ``first`` on.

    ``stored`` says whether the commit id given to ``load`` is stored for the aggregate;
    ``commits`` (only when ``load(..., metadata=True)``) holds the metadata of the commits
    the records belong to, in sequence order; records written before commits carried
    metadata have none.
    """

    snapshot: Snapshot | None
    first: int
    records: Sequence[bytes]
    stored: bool = False
    commits: Sequence[CommitInfo] = ()

    @property
    def last(self) -> int:
        """The sequence of the last record (or of the snapshot, or ``first - 1``)."""
        return self.first - 1 + len(self.records)


@_quick_init
@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One commit as its bucket's feed recorded it: records ``first ..`` of aggregate ``key``.

    ``position`` is the driver's token for the entry, increasing within its bucket: what a
    consumer's checkpoint stores, and what ``read_feed`` reads after. ``commit_id`` and
    ``recorded_at`` are the commit's metadata (``None`` for entries written before them).
    """

    bucket: int
    position: str
    key: str
    first: int
    records: Sequence[bytes]
    commit_id: str | None = None
    recorded_at: float | None = None


def hash_tag(key: str) -> str:
    """The part of ``key`` that places it: the text inside its first ``{...}`` when that is
    not empty (Redis's hash-tag rule), else the whole key. Aggregates whose keys share a
    tag share a bucket, and so a Redis Cluster slot: they can be committed together."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def partition_bucket(key: str, buckets: int) -> int:
    """The stable partition bucket (``0 .. buckets-1``) of an aggregate key.

    Drivers co-locate every record of one aggregate by it (a Redis hash tag, a feed
    partition); stable across processes and Python versions. Keys with the same
    ``hash_tag`` share a bucket.
    """
    return zlib.crc32(hash_tag(key).encode("utf-8", "surrogatepass")) % buckets


def require_distinct_keys(commits: Sequence[Commit]) -> None:
    """Refuse an append that names one aggregate twice (``ValueError``)."""
    seen: set[str] = set()
    for commit in commits:
        if commit.key in seen:
            raise ValueError(f"aggregate {commit.key!r} appears twice in one atomic append")
        seen.add(commit.key)


def check_rewrite(expected_head: int, records: Sequence[bytes]) -> None:
    """Refuse a ``rewrite`` whose records are not exactly ``1..expected_head`` (``ValueError``)."""
    if len(records) != expected_head:
        raise ValueError(f"rewrite of {expected_head} records got {len(records)}")
