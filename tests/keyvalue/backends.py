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
from kvsourcing.testing.raw import raw_values


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
    return Backend(
        "memory", lambda **options: KeyValueStore(driver, **options), lambda: raw_values(driver).everything
    )


def redis_backend(server: Any) -> Backend:
    from kvsourcing.stores import redis as redis_store

    client = server.client()
    prefix = f"rest{uuid.uuid4().hex[:8]}"

    def open_store(**options: Any) -> KeyValueStore:
        return redis_store.new_store(client, prefix=prefix, buckets=4, **options)  # type: ignore[return-value]

    return Backend("redis", open_store, lambda: raw_values(open_store().driver).everything)


def dynamodb_backend(client: Any, table: str) -> Backend:
    from kvsourcing.stores.dynamodb import new_store

    def open_store(**options: Any) -> KeyValueStore:
        return new_store(table, client=client, buckets=4, **options)  # type: ignore[return-value]

    return Backend("dynamodb", open_store, lambda: raw_values(open_store().driver).everything)
