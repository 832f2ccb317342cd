"""The stores behind the ``backend`` fixture (memory, Redis, DynamoDB on moto), for tests of
behaviour the keyvalue base adds to all of them (encryption, compression, telemetry).

``backend.open(**options)`` opens a store over the same data each time (so data written with
one set of options can be read with another), and ``backend.raw_values()`` lists every
value the backend holds for it, as bytes, the feed included.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kvsourcing.stores import memory
from kvsourcing.stores.keyvalue import KeyValueStore
from kvsourcing.testing.domain import Counter


def write(store: KeyValueStore, key: str, *events: Any) -> Counter:
    """Commit ``events`` to the counter ``key`` in one commit, after a refresh."""
    counter = Counter(key, store)
    counter.refresh()
    for event in events:
        counter.apply_event(event)
    counter.commit()
    return counter


def read(store: KeyValueStore, key: str) -> Counter:
    """The counter ``key`` as ``store`` loads it."""
    counter = Counter(key, store)
    counter.refresh()
    return counter


@dataclass
class Backend:
    name: str
    open: Callable[..., KeyValueStore]
    raw_values: Callable[[], list[bytes]]


def memory_backend() -> Backend:
    driver = memory.MemoryDriver()

    def raw() -> list[bytes]:
        values = [record for stream in driver._streams.values() for record in stream.records]
        values += [stream.snapshot.state for stream in driver._streams.values() if stream.snapshot]
        values += [record for feed in driver._feeds for entry in feed for record in entry.records]
        return values + [value for value, _ in driver._values.values()]

    return Backend("memory", lambda **options: KeyValueStore(driver, **options), raw)


def redis_backend(server: Any) -> Backend:
    from kvsourcing.stores import redis as redis_store

    client = server.client()
    prefix = f"rest{uuid.uuid4().hex[:8]}"

    def raw() -> list[bytes]:
        values: list[bytes] = []
        for name in client.scan_iter(match=f"{{{prefix}:*"):
            kind = client.type(name)
            if kind == b"list":
                values += client.lrange(name, 0, -1)
            elif kind == b"hash":
                values += client.hvals(name)
            elif kind == b"stream":
                values += [v for _, fields in client.xrange(name) for v in fields.values()]
            elif kind == b"zset":
                values += client.zrange(name, 0, -1)
            elif kind == b"string":
                values.append(client.get(name))
            else:
                raise AssertionError(f"unexpected Redis type {kind!r} of {name!r}")
        return values

    def open_store(**options: Any) -> KeyValueStore:
        return redis_store.new_store(client, prefix=prefix, buckets=4, **options)  # type: ignore[return-value]

    return Backend("redis", open_store, raw)


def dynamodb_backend(client: Any, table: str) -> Backend:
    from kvsourcing.stores.dynamodb import new_store

    def flatten(value: dict[str, Any]) -> list[bytes]:
        (kind, inner), *_ = value.items()
        if kind == "B":
            return [inner]
        if kind in ("S", "N"):
            return [inner.encode()]
        if kind == "BS":
            return list(inner)
        if kind in ("SS", "NS"):
            return [v.encode() for v in inner]
        if kind == "L":
            return [b for item in inner for b in flatten(item)]
        if kind == "M":
            return [b for item in inner.values() for b in flatten(item)]
        return []

    def raw() -> list[bytes]:
        values: list[bytes] = []
        for page in client.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                for attribute in item.values():
                    values += flatten(attribute)
        return values

    def open_store(**options: Any) -> KeyValueStore:
        return new_store(table, client=client, buckets=4, **options)  # type: ignore[return-value]

    return Backend("dynamodb", open_store, raw)
