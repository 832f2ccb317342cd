"""What a built-in driver's backend holds, read raw, for tests that look past the store at
the stored bytes (encryption at rest, re-encryption): the memory driver's lists, every
Redis key under the store's prefix, a scan of the DynamoDB table.

The drivers are recognised by their ``system_name`` and read through their attributes,
as the core imports no driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kvsourcing.crypto import KEY_ID_SIZE, key_id
from kvsourcing.mapper import FRAME

FEED_PARTITION = "\x1ff\x1f"
"""How a DynamoDB feed item's partition key starts (``stores/dynamodb/layout.py``)."""


@dataclass(frozen=True)
class RawValues:
    """The backend's values as bytes: ``stored`` (records, snapshots, commits' metadata,
    consumers' values) and ``feed`` (the feed's entries, which are never rewritten)."""

    stored: list[bytes]
    feed: list[bytes]

    @property
    def everything(self) -> list[bytes]:
        return self.stored + self.feed


def sealed_by(value: bytes, key: bytes) -> bool:
    """Whether ``value`` is a record or snapshot encrypted under ``key``: a frame whose
    ciphertext starts with the key's id."""
    return value[:1] == bytes((FRAME,)) and value[2 : 2 + KEY_ID_SIZE] == key_id(key)


def raw_values(driver: Any) -> RawValues:
    """Every value ``driver``'s backend holds for its store (a memory, Redis or DynamoDB driver)."""
    if driver.system_name == "memory":
        return _memory(driver)
    if driver.system_name == "redis":
        return _redis(driver.client, driver.prefix)
    if driver.system_name == "aws.dynamodb":
        return _dynamodb(driver.client, driver.table_name)
    raise NotImplementedError(f"no raw reader of {type(driver).__name__}'s backend")


def _memory(driver: Any) -> RawValues:
    streams = driver._streams.values()
    stored = [record for stream in streams for record in stream.records]
    stored += [stream.snapshot.state for stream in streams if stream.snapshot]
    stored += [value for value, _ in driver._values.values()]
    feed = [record for entries in driver._feeds for entry in entries for record in entry.records]
    return RawValues(stored, feed)


_REDIS_READS = {
    b"list": lambda pipe, name: pipe.lrange(name, 0, -1),
    b"hash": lambda pipe, name: pipe.hvals(name),
    b"stream": lambda pipe, name: pipe.xrange(name),
    b"zset": lambda pipe, name: pipe.zrange(name, 0, -1),
    b"string": lambda pipe, name: pipe.get(name),
}


def _redis(client: Any, prefix: str) -> RawValues:
    """Every key under the prefix, in two pipelines: their types, then their values."""
    names = list(client.scan_iter(match=f"{{{prefix}:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.type(name)
    kinds = [(name, kind) for name, kind in zip(names, pipe.execute(), strict=True) if kind != b"none"]
    pipe = client.pipeline(transaction=False)
    for name, kind in kinds:
        if kind not in _REDIS_READS:
            raise AssertionError(f"unexpected Redis type {kind!r} of {name!r}")
        _REDIS_READS[kind](pipe, name)
    stored: list[bytes] = []
    feed: list[bytes] = []
    for (_, kind), value in zip(kinds, pipe.execute(), strict=True):
        if kind == b"stream":
            feed += [field for _, fields in value for field in fields.values()]
        elif kind == b"string":
            stored += [value] if value is not None else []
        else:
            stored += value
    return RawValues(stored, feed)


def _dynamodb(client: Any, table: str) -> RawValues:
    stored: list[bytes] = []
    feed: list[bytes] = []
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            values = [value for attribute in item.values() for value in _flatten(attribute)]
            (feed if item["k"]["S"].startswith(FEED_PARTITION) else stored).extend(values)
    return RawValues(stored, feed)


def _flatten(value: dict[str, Any]) -> list[bytes]:
    ((kind, inner),) = value.items()
    if kind == "B":
        return [bytes(inner)]
    if kind in ("S", "N"):
        return [inner.encode()]
    if kind == "BS":
        return [bytes(item) for item in inner]
    if kind in ("SS", "NS"):
        return [item.encode() for item in inner]
    if kind == "L":
        return [b for item in inner for b in _flatten(item)]
    if kind == "M":
        return [b for item in inner.values() for b in _flatten(item)]
    return []
