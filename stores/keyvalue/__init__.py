"""The generic key-value tablestore base: drivers supply ``append``/``load``, the base the rest."""

from kvsourcing.stores.keyvalue.consumer import FeedConsumer, trim_consumed
from kvsourcing.stores.keyvalue.driver import (
    ALREADY_STORED,
    DEFAULT_COMMIT_ID_TTL,
    Commit,
    Driver,
    FeedDriver,
    FeedEntry,
    Loaded,
    Snapshot,
    partition_bucket,
    validate_commit_id_ttl,
)
from kvsourcing.stores.keyvalue.store import KeyedEvent, KeyValueStore, new_store

__all__ = [
    "ALREADY_STORED",
    "DEFAULT_COMMIT_ID_TTL",
    "Commit",
    "Driver",
    "FeedConsumer",
    "FeedDriver",
    "FeedEntry",
    "KeyValueStore",
    "KeyedEvent",
    "Loaded",
    "Snapshot",
    "new_store",
    "partition_bucket",
    "trim_consumed",
    "validate_commit_id_ttl",
]
