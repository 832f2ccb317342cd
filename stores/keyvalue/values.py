"""The values a ``FeedConsumer`` keeps in the store, and trimming the feed by its checkpoints.

A consumer's member list (who shares the work of one named consumer) is one small value,
a msgpack map of owner to expiry (epoch seconds), written with compare-and-swap so that
concurrent members never lose each other's entries; an entry expires ``lease_seconds``
after its member last joined, as the member's slice leases do.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgpack

from kvsourcing.errors import ConfigurationError
from kvsourcing.steps import Call, Steps
from kvsourcing.stores.keyvalue.driver import FeedDriver
from kvsourcing.stores.keyvalue.store import KeyValueStore


def value_name(consumer: str, *parts: object) -> str:
    """The name of one of a consumer's values: ``consumer/<name>/<part>/...``."""
    return "/".join(("consumer", consumer, *map(str, parts)))


def join_steps(consumer: str, owner: str, lease_seconds: float) -> Steps[dict[str, float]]:
    """Put (or keep) ``owner`` in the list for ``lease_seconds`` more; the live members
    with their expiries (epoch seconds). Steps over a ``ValueDriver`` (``kvsourcing.steps``)."""
    name = value_name(consumer, "members")
    while True:
        raw = yield Call("read_value", (name,))
        now = time.time()
        members = {m: t for m, t in (msgpack.unpackb(raw) if raw else {}).items() if t > now}
        members[owner] = now + lease_seconds
        if (yield Call("swap_value", (name, raw, msgpack.packb(members)))):
            return members


def leave_steps(consumer: str, owner: str) -> Steps[None]:
    """Take ``owner`` off the list (a few attempts: an entry left behind expires anyway)."""
    name = value_name(consumer, "members")
    for _ in range(10):
        raw = yield Call("read_value", (name,))
        members = msgpack.unpackb(raw) if raw else {}
        if owner not in members:
            return
        del members[owner]
        if (yield Call("swap_value", (name, raw, msgpack.packb(members) if members else None))):
            return


def trim_consumed(store: KeyValueStore, consumers: Iterable[str]) -> int:
    """Remove the feed entries that every named consumer has consumed; returns how many.

    A bucket that one of the consumers has not consumed from yet is left whole. Name
    every consumer that follows the feed: entries are gone for good, so a consumer not
    named, or started afterwards, no longer sees them (it starts at the oldest entry kept).
    """
    driver = store.driver
    if not isinstance(driver, FeedDriver):
        raise ConfigurationError(f"{type(driver).__name__} keeps no feed to trim")
    names = list(dict.fromkeys(consumers))
    if not names:
        raise ValueError("name at least one consumer whose checkpoints bound the trim")
    stored = driver.read_values(
        [value_name(name, "checkpoint", bucket) for bucket in range(driver.buckets) for name in names]
    )
    removed = 0
    for bucket in range(driver.buckets):
        checkpoints = stored[bucket * len(names) : (bucket + 1) * len(names)]
        if all(raw is not None for raw in checkpoints):
            removed += driver.trim_feed(bucket, [raw.decode() for raw in checkpoints if raw is not None])
    return removed
