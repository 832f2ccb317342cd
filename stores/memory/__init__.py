"""The embedded in-memory store: a thread-safe keyvalue driver for tests, demos and caches."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from kvsourcing.codecs import Codec
from kvsourcing.config import redact_url
from kvsourcing.errors import ConfigurationError
from kvsourcing.mapper import Cipher
from kvsourcing.stores.keyvalue import (
    ALREADY_STORED,
    DEFAULT_COMMIT_ID_TTL,
    Commit,
    FeedEntry,
    KeyValueStore,
    Loaded,
    Snapshot,
    partition_bucket,
    validate_commit_id_ttl,
)
from kvsourcing.stores.keyvalue import new_store as new_keyvalue_store

__all__ = ["MemoryDriver", "from_url", "new_store"]

DEFAULT_BUCKETS = 16


class MemoryDriver:
    """Keeps each aggregate's records in a list and each bucket's feed in another, under
    one lock: every call is atomic."""

    system_name = "memory"
    """OpenTelemetry's ``db.system.name`` of this backend."""

    def __init__(
        self, *, buckets: int = DEFAULT_BUCKETS, commit_id_ttl: float | None = DEFAULT_COMMIT_ID_TTL
    ) -> None:
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, got {buckets}")
        self.buckets = buckets
        self.commit_id_ttl = validate_commit_id_ttl(commit_id_ttl)
        self._records: dict[str, list[bytes]] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._commit_ids: dict[str, dict[str, float]] = {}
        self._feeds: list[list[FeedEntry]] = [[] for _ in range(buckets)]
        self._trimmed = [0] * buckets
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._lock = threading.Lock()

    def append(self, commit: Commit) -> int | None:
        with self._lock:
            now = time.monotonic()
            commit_ids = self._commit_ids.setdefault(commit.key, {})
            if self.commit_id_ttl is not None:
                while commit_ids and next(iter(commit_ids.values())) <= now - self.commit_id_ttl:
                    del commit_ids[next(iter(commit_ids))]
            if commit.commit_id is not None and commit.commit_id in commit_ids:
                return ALREADY_STORED
            records = self._records.setdefault(commit.key, [])
            if len(records) != commit.expected:
                return len(records)
            records.extend(commit.records)
            if commit.snapshot is not None:
                self._snapshots[commit.key] = Snapshot(commit.last, commit.snapshot)
            if commit.commit_id is not None:
                commit_ids[commit.commit_id] = now
            bucket = partition_bucket(commit.key, self.buckets)
            feed = self._feeds[bucket]
            position = str(self._trimmed[bucket] + len(feed) + 1)
            feed.append(FeedEntry(bucket, position, commit.key, commit.expected + 1, tuple(commit.records)))
        return None

    def load(self, key: str, after: int, *, use_snapshot: bool = True) -> Loaded:
        with self._lock:
            records = self._records.get(key, [])
            snapshot = self._snapshots.get(key) if use_snapshot else None
            if snapshot is not None and snapshot.sequence > after:
                return Loaded(snapshot, snapshot.sequence + 1, records[snapshot.sequence :])
            return Loaded(None, after + 1, records[after:])

    def read_feed(self, after: dict[int, str | None], limit: int) -> list[FeedEntry]:
        with self._lock:
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
        """Optional primitive (``kvsourcing reencrypt``): replace records ``1..expected_head``
        of ``key`` by ``records`` (the same events, re-encoded), and its snapshot by
        ``snapshot`` when given, atomically and only if the head is still ``expected_head``
        and the stored snapshot is at ``snapshot.sequence``. Returns ``None`` when written,
        else the actual head (nothing written). Feed entries are left as they are."""
        if len(records) != expected_head:
            raise ValueError(f"rewrite of {expected_head} records got {len(records)}")
        with self._lock:
            stored = self._records.get(key, [])
            current = self._snapshots.get(key)
            if len(stored) != expected_head:
                return len(stored)
            if snapshot is not None and (current is None or current.sequence != snapshot.sequence):
                return len(stored)
            stored[:] = records
            if snapshot is not None:
                self._snapshots[key] = snapshot
        return None

    def close(self) -> None:
        """Nothing to release: the data lives as long as the driver."""


def new_store(
    *,
    snapshot_interval: int = 0,
    codec: Codec | None = None,
    buckets: int = DEFAULT_BUCKETS,
    commit_id_ttl: float | None = DEFAULT_COMMIT_ID_TTL,
    compression: str | None = None,
    cipher: Cipher | None = None,
) -> KeyValueStore:
    """A new, empty in-memory event store (``buckets`` partitions its feed; commit ids are
    kept ``commit_id_ttl`` seconds)."""
    driver = MemoryDriver(buckets=buckets, commit_id_ttl=commit_id_ttl)
    return new_keyvalue_store(
        driver, codec=codec, snapshot_interval=snapshot_interval, compression=compression, cipher=cipher
    )


_OPTIONS = ("snapshot_interval", "codec", "buckets", "commit_id_ttl", "compression", "cipher")


def _query_options(url: str, query: str) -> dict[str, Any]:
    """``snapshot_interval`` and ``compression`` from a ``memory://`` URL's query string."""
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in options:
            raise ConfigurationError(f"option {name!r} is given twice in {redact_url(url)!r}")
        if name == "snapshot_interval" and value.isdigit():
            options[name] = int(value)
        elif name == "compression" and value:
            options[name] = value
        else:
            raise ConfigurationError(
                f"memory store URL {redact_url(url)!r}: bad query option {name}={value!r}; "
                "it takes snapshot_interval=N and compression=zlib|zstd"
            )
    return options


def from_url(url: str, **options: Any) -> KeyValueStore:
    """``memory://``, with store options in its query (``memory://?compression=zstd``) or
    ``options`` (which win); they go to ``new_store``."""
    base, _, query = url.partition("?")
    if base.rstrip("/").lower() != "memory:":
        raise ConfigurationError(
            f"memory store URL takes no host or path: got {redact_url(url)!r}, use 'memory://'"
        )
    options = {**_query_options(url, query), **options}
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"memory store does not take option(s) {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(_OPTIONS)}"
        )
    return new_store(**options)
