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


def _redis(client: Any, prefix: str) -> RawValues:
    stored: list[bytes] = []
    feed: list[bytes] = []
    for name in client.scan_iter(match=f"{{{prefix}:*", count=1000):
        kind = client.type(name)
        if kind == b"list":
            stored += client.lrange(name, 0, -1)
        elif kind == b"hash":
            stored += client.hvals(name)
        elif kind == b"stream":
            feed += [value for _, fields in client.xrange(name) for value in fields.values()]
        elif kind == b"zset":
            stored += client.zrange(name, 0, -1)
        elif kind == b"string":
            stored.append(client.get(name))
        elif kind != b"none":  # expired or deleted since the scan listed it
            raise AssertionError(f"unexpected Redis type {kind!r} of {name!r}")
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
