"""The embedded in-memory store: a thread-safe keyvalue driver for tests, demos and caches."""

from __future__ import annotations

import threading
from typing import Any

from kvsourcing.codecs import Codec
from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.keyvalue import Commit, KeyValueStore, Loaded, Snapshot
from kvsourcing.stores.keyvalue import new_store as new_keyvalue_store

__all__ = ["MemoryDriver", "from_url", "new_store"]


class MemoryDriver:
    """Keeps each aggregate's records in a list, under one lock: every call is atomic."""

    def __init__(self) -> None:
        self._records: dict[str, list[bytes]] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def append(self, commit: Commit) -> int | None:
        with self._lock:
            records = self._records.setdefault(commit.key, [])
            if len(records) != commit.expected:
                return len(records)
            records.extend(commit.records)
            if commit.snapshot is not None:
                self._snapshots[commit.key] = Snapshot(commit.last, commit.snapshot)
        return None

    def load(self, key: str, after: int, *, use_snapshot: bool = True) -> Loaded:
        with self._lock:
            records = self._records.get(key, [])
            snapshot = self._snapshots.get(key) if use_snapshot else None
            if snapshot is not None and snapshot.sequence > after:
                return Loaded(snapshot, snapshot.sequence + 1, records[snapshot.sequence :])
            return Loaded(None, after + 1, records[after:])

    def close(self) -> None:
        """Nothing to release: the data lives as long as the driver."""


def new_store(*, snapshot_interval: int = 0, codec: Codec | None = None) -> KeyValueStore:
    """A new, empty in-memory event store."""
    return new_keyvalue_store(MemoryDriver(), codec=codec, snapshot_interval=snapshot_interval)


def from_url(url: str, **options: Any) -> KeyValueStore:
    """``memory://``: a new, empty in-memory store (options go to ``new_store``)."""
    if url.rstrip("/") != "memory:":
        raise ConfigurationError(f"memory store URL takes no host or path: got {url!r}, use 'memory://'")
    unknown = set(options) - {"snapshot_interval", "codec"}
    if unknown:
        raise ConfigurationError(
            f"memory store does not take option(s) {', '.join(sorted(unknown))}; "
            "it takes snapshot_interval and codec"
        )
    return new_store(**options)
