"""The embedded in-memory store: a thread-safe keyvalue driver for tests, demos and caches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kvsourcing.config import redact_url
from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.keyvalue import (
    ALREADY_STORED,
    Commit,
    CommitInfo,
    DriverBase,
    FeedEntry,
    KeyValueStore,
    Loaded,
    Refusal,
    Snapshot,
    check_options,
    check_rewrite,
    partition_bucket,
    query_options,
    validate_buckets,
)
from kvsourcing.stores.keyvalue import new_store as new_keyvalue_store
from kvsourcing.stores.keyvalue.aio import AsyncKeyValueStore
from kvsourcing.stores.memory.aio import AsyncMemoryDriver

__all__ = ["AsyncMemoryDriver", "MemoryDriver", "from_url", "new_async_store", "new_store", "open_async"]

DEFAULT_BUCKETS = 16


class _Stream:
    """One aggregate: its records, newest snapshot, commits' metadata and ids, and its
    feed bucket. A commit's metadata is kept as a tuple, made a ``CommitInfo`` when read
    (rarely, by ``read_events``), so that a commit does not pay for building one."""

    __slots__ = ("bucket", "commit_ids", "commits", "records", "snapshot")

    def __init__(self, bucket: int = 0) -> None:
        self.bucket = bucket
        self.records: list[bytes] = []
        self.snapshot: Snapshot | None = None
        self.commits: list[tuple[int, int, str | None, float]] = []
        self.commit_ids: dict[str, int] = {}


class _Appended(threading.Condition):
    """The condition a commit notifies: it wakes the threads waiting on it and calls the
    callbacks of the asyncio readers listening (``listen``)."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.callbacks: set[Callable[[], None]] = set()

    def notify_all(self) -> None:
        super().notify_all()
        for callback in self.callbacks:
            callback()


class MemoryDriver(DriverBase):
    """Keeps each aggregate's records in a list and each bucket's feed in another, under
    one lock: every call is atomic. Commit ids live with their aggregate for as long as
    the driver does, so the idempotency window is the aggregate's whole history. It
    ``pushes``: a commit wakes the ``read_feed`` calls waiting on the lock's condition."""

    system_name = "memory"
    pushes = True

    def __init__(self, *, buckets: int = DEFAULT_BUCKETS, feed: bool = True) -> None:
        self.buckets = validate_buckets(buckets, "memory")
        self.feed = bool(feed)
        self._streams: dict[str, _Stream] = {}
        self._feeds: list[list[FeedEntry]] = [[] for _ in range(buckets)]
        self._trimmed = [0] * buckets
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._lock = threading.Lock()
        self._appended = _Appended(self._lock)
        self._waiting = 0
        """``read_feed`` calls waiting for a commit (and listeners): only then does a commit
        wake them."""

    def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        with self._lock:
            streams = []
            for index, commit in enumerate(commits):
                stream = self._streams.get(commit.key) or _Stream(partition_bucket(commit.key, self.buckets))
                if commit.commit_id is not None and commit.commit_id in stream.commit_ids:
                    return Refusal(index, ALREADY_STORED)
                if len(stream.records) != commit.expected:
                    return Refusal(index, len(stream.records))
                streams.append(stream)
            now = time.time()
            for commit, stream in zip(commits, streams, strict=True):
                self._streams[commit.key] = stream
                first, last = commit.expected + 1, commit.expected + len(commit.records)
                stream.records.extend(commit.records)
                if commit.snapshot is not None:
                    stream.snapshot = Snapshot(last, commit.snapshot)
                stream.commits.append((first, last, commit.commit_id, now))
                if commit.commit_id is not None:
                    stream.commit_ids[commit.commit_id] = last
                if self.feed:
                    bucket, feed = stream.bucket, self._feeds[stream.bucket]
                    position = str(self._trimmed[bucket] + len(feed) + 1)
                    records = tuple(commit.records)
                    feed.append(
                        FeedEntry(bucket, position, commit.key, first, records, commit.commit_id, now)
                    )
            if self._waiting:
                self._appended.notify_all()
        return None

    def load(
        self, key: str, after: int, *, use_snapshot: bool = True, commit_id: str | None = None,
        metadata: bool = False,
    ) -> Loaded:  # fmt: skip
        with self._lock:
            stream = self._streams.get(key) or _Stream()
            stored = commit_id is not None and commit_id in stream.commit_ids
            snapshot = stream.snapshot if use_snapshot else None
            start = snapshot.sequence if snapshot is not None and snapshot.sequence > after else after
            commits = [CommitInfo(*info) for info in stream.commits if info[1] > start] if metadata else []
            return Loaded(
                snapshot if start != after else None, start + 1, stream.records[start:], stored, commits
            )

    def read_feed(self, after: dict[int, str | None], limit: int, *, wait: float = 0.0) -> list[FeedEntry]:
        self.check_feed_request(after, limit)
        deadline = time.monotonic() + wait
        with self._lock:
            while True:
                entries = self._entries_after(after, limit)
                remaining = deadline - time.monotonic()
                if entries or not after or remaining <= 0:
                    return entries
                self._waiting += 1
                try:
                    self._appended.wait(remaining)
                finally:
                    self._waiting -= 1

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (under the lock, from the committing thread) after each commit
        until ``unlisten``: how an asyncio reader waits without a thread."""
        with self._lock:
            self._appended.callbacks.add(callback)
            self._waiting += 1

    def unlisten(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._appended.callbacks.discard(callback)
            self._waiting -= 1

    def _entries_after(self, after: dict[int, str | None], limit: int) -> list[FeedEntry]:
        entries: list[FeedEntry] = []
        for bucket, position in after.items():
            start = int(position) if position else 0
            start = max(0, start - self._trimmed[bucket])
            entries.extend(self._feeds[bucket][start : start + limit])
        return entries

    def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        if not checkpoints:
            return 0
        with self._lock:
            count = min(min(int(p) for p in checkpoints) - self._trimmed[bucket], len(self._feeds[bucket]))
            if count <= 0:
                return 0
            del self._feeds[bucket][:count]
            self._trimmed[bucket] += count
            return count

    def _live(self, name: str) -> bytes | None:
        value = self._values.get(name)
        if value is None or (value[1] is not None and value[1] <= time.monotonic()):
            return None
        return value[0]

    def read_value(self, name: str) -> bytes | None:
        with self._lock:
            return self._live(name)

    def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        with self._lock:
            return [self._live(name) for name in names]

    def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        with self._lock:
            if self._live(name) != expected:
                return False
            if new is None:
                self._values.pop(name, None)
            else:
                self._values[name] = (new, None if ttl is None else time.monotonic() + ttl)
            return True

    def rewrite(
        self, key: str, expected_head: int, records: Sequence[bytes], snapshot: Snapshot | None = None
    ) -> int | None:
        """The ``RewritingDriver`` primitive (``kvsourcing reencrypt``), atomic under the lock."""
        check_rewrite(expected_head, records)
        with self._lock:
            stream = self._streams.get(key) or _Stream()
            if len(stream.records) != expected_head:
                return len(stream.records)
            if snapshot is not None and (
                stream.snapshot is None or stream.snapshot.sequence != snapshot.sequence
            ):
                return len(stream.records)
            stream.records[:] = records
            if snapshot is not None:
                stream.snapshot = snapshot
        return None


def new_store(*, buckets: int = DEFAULT_BUCKETS, feed: bool = True, **options: Any) -> KeyValueStore:
    """A new, empty in-memory event store (``buckets`` partitions its feed; ``feed=False``
    keeps none); the other options (``snapshot_interval``, ``codec``, ``compression``,
    ``cipher``) go to the store."""
    check_options("memory", options, ())
    return new_keyvalue_store(MemoryDriver(buckets=buckets, feed=feed), **options)


def memory_options(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of a ``memory://`` URL: those of its query (``memory://?compression=zstd``)
    and ``options`` (which win); ``ConfigurationError`` for a host, a path or a bad option."""
    base, _, query = url.partition("?")
    if base.rstrip("/").lower() != "memory:":
        raise ConfigurationError(
            f"memory store URL takes no host or path: got {redact_url(url)!r}, use 'memory://'"
        )
    merged = {**query_options(url, query, {"buckets": int}), **options}
    check_options("memory", merged, ("buckets",))
    return merged


def from_url(url: str, **options: Any) -> KeyValueStore:
    """``memory://``: a new, empty in-memory store (options go to ``new_store``)."""
    return new_store(**memory_options(url, options))


def new_async_store(
    *, buckets: int = DEFAULT_BUCKETS, feed: bool = True, **options: Any
) -> AsyncKeyValueStore:
    """``new_store`` for asyncio: a new, empty in-memory store with coroutine methods."""
    check_options("memory", options, ())
    return AsyncKeyValueStore(AsyncMemoryDriver(MemoryDriver(buckets=buckets, feed=feed)), **options)


async def open_async(url: str, **options: Any) -> AsyncKeyValueStore:
    """``memory://`` for ``kvsourcing.aio.open_store``."""
    return new_async_store(**memory_options(url, options))
