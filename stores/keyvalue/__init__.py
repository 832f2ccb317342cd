"""The generic key-value tablestore base: drivers supply ``append``/``load``, the base the rest."""

from kvsourcing.stores.keyvalue.driver import Commit, Driver, Loaded, Snapshot, partition_bucket

__all__ = ["Commit", "Driver", "Loaded", "Snapshot", "partition_bucket"]
