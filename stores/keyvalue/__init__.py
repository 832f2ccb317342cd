"""The generic key-value tablestore base: drivers supply ``append``/``load``, the base the rest."""

from kvsourcing.stores.keyvalue.driver import Commit, Driver, Loaded, Snapshot, partition_bucket
from kvsourcing.stores.keyvalue.store import KeyedEvent, KeyValueStore, new_store

__all__ = [
    "Commit",
    "Driver",
    "KeyValueStore",
    "KeyedEvent",
    "Loaded",
    "Snapshot",
    "new_store",
    "partition_bucket",
]
