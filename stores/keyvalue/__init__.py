"""The generic key-value tablestore base: drivers supply primitives, the base the rest."""

from kvsourcing.stores.keyvalue.base import (
    STORE_OPTIONS,
    AsyncDriverBase,
    DriverBase,
    check_options,
    query_options,
    validate_buckets,
)
from kvsourcing.stores.keyvalue.consumer import FeedConsumer
from kvsourcing.stores.keyvalue.driver import (
    Driver,
    EventDriver,
    FeedDriver,
    RewritingDriver,
    ValueDriver,
)
from kvsourcing.stores.keyvalue.records import (
    ALREADY_STORED,
    Commit,
    CommitInfo,
    FeedEntry,
    Loaded,
    Refusal,
    Snapshot,
    check_rewrite,
    hash_tag,
    partition_bucket,
)
from kvsourcing.stores.keyvalue.store import KeyedEvent, KeyValueStore, new_store
from kvsourcing.stores.keyvalue.values import trim_consumed

__all__ = [
    "ALREADY_STORED",
    "STORE_OPTIONS",
    "AsyncDriverBase",
    "Commit",
    "CommitInfo",
    "Driver",
    "DriverBase",
    "EventDriver",
    "FeedConsumer",
    "FeedDriver",
    "FeedEntry",
    "KeyValueStore",
    "KeyedEvent",
    "Loaded",
    "Refusal",
    "RewritingDriver",
    "Snapshot",
    "ValueDriver",
    "check_options",
    "check_rewrite",
    "hash_tag",
    "new_store",
    "partition_bucket",
    "query_options",
    "trim_consumed",
    "validate_buckets",
]
