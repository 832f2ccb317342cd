"""``FeedConsumer``: follow the durable feed from a named checkpoint, at least once.

Every commit is recorded in its aggregate's bucket feed in the same atomic write as
the events (see ``FeedDriver``). A consumer reads the buckets it holds, delivers each
event to its handlers as a ``PublishedEvent``, in sequence order per aggregate, and
then stores the bucket's checkpoint in the same store. A consumer that dies after
delivering and before checkpointing delivers those events again when restarted (at
least once); none is ever skipped.

Several processes of one consumer share the work: each heartbeats into the consumer's
member list, the buckets are split into ``slices``, dealt round-robin to the live
members in the order of their names, and a member processes a slice only while it holds the
slice's lease, which it renews between entries, even in a long batch. A lease expires
``lease_seconds`` after its holder last renewed it, so the slices of a process that died
pass to the others; a checkpoint is written with compare-and-swap, so a process that lost
its lease cannot move it back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from kvsourcing.errors import ConfigurationError
from kvsourcing.handlers import PublishedEvent
from kvsourcing.protocols import EventHandler, EventRegistry
from kvsourcing.stores.keyvalue.driver import FeedDriver
from kvsourcing.stores.keyvalue.records import FeedEntry
from kvsourcing.stores.keyvalue.store import KeyValueStore, utc
from kvsourcing.telemetry import traced_delivery
from kvsourcing.types import EventType

log = logging.getLogger("kvsourcing.consumer")

ErrorCallback = Callable[[EventHandler, PublishedEvent, Exception], None]


def value_name(consumer: str, *parts: object) -> str:
    """The name of one of a consumer's values: ``consumer/<name>/<part>/...``."""
    return "/".join(("consumer", consumer, *map(str, parts)))


class FeedConsumer:
    """A named, checkpointed consumer of a key-value store's feed (an ``EventConsumer``).

    ``registries`` build event objects for their domains; events of other domains are
    delivered as their mappings. Call ``start()``/``stop()`` to run it on a background
    thread, or ``run_once()`` to process what is there now.
    """

    def __init__(
        self,
        store: KeyValueStore,
        name: str,
        registries: EventRegistry | Iterable[EventRegistry] = (),
        *,
        owner: str | None = None,
        slices: int = 16,
        batch_size: int = 100,
        lease_seconds: float = 10.0,
        poll_interval: float = 0.2,
        on_error: ErrorCallback | None = None,
    ) -> None:
        driver = store.driver
        if not isinstance(driver, FeedDriver):
            raise ConfigurationError(
                f"{type(driver).__name__} keeps no feed: a FeedConsumer needs a FeedDriver"
            )
        if not driver.feed:
            raise ConfigurationError(
                "this store was opened with feed=False and records no feed: open it with feed=True "
                "(the default) to follow it with a FeedConsumer"
            )
        if not name or "/" in name:
            raise ValueError(f"consumer name must be non-empty and without '/': {name!r}")
        if not 0 < lease_seconds < math.inf or batch_size < 1 or slices < 1:
            raise ValueError(
                "lease_seconds must be a finite number of seconds > 0, and batch_size and slices positive"
            )
        self._store = store
        self._driver: FeedDriver = driver
        self.name = name
        self.owner = owner or uuid.uuid4().hex
        if isinstance(registries, EventRegistry):
            registries = [registries]
        self._registries = {r.domain(): r for r in registries}
        self._slices = min(slices, driver.buckets)
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._on_error = on_error or self._log_error
        self._handlers: list[EventHandler] = []
        self._held: set[int] = set()
        self._checkpoints: dict[int, str | None] = {}
        self._renewed = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease = self._lease_value()

    def _lease_value(self) -> bytes:
        return self.owner.encode()

    def _value(self, *parts: object) -> str:
        return value_name(self.name, *parts)

    def add_handler(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    @property
    def slices_held(self) -> frozenset[int]:
        """The slices this member holds leases on now."""
        return frozenset(self._held)

    def checkpoint(self, bucket: int) -> str | None:
        """The stored feed position of ``bucket`` (``None``: nothing consumed yet)."""
        raw = self._driver.read_value(self._value("checkpoint", bucket))
        return None if raw is None else raw.decode()

    def _heartbeat(self) -> None:
        """Refresh membership, then take or renew the leases of this member's slices."""
        members = self._join()
        me = members.index(self.owner)
        assigned = set(range(me, self._slices, len(members)))
        for slice_ in sorted(self._held - assigned):
            self._release(slice_)
        for slice_ in sorted(assigned):
            name = self._value("lease", slice_)
            expected = self._lease if slice_ in self._held else None
            if self._driver.swap_value(name, expected, self._lease, self._lease_seconds):
                if slice_ not in self._held:
                    self._held.add(slice_)
                    buckets = self._buckets_of(slice_)
                    stored = self._driver.read_values([self._value("checkpoint", b) for b in buckets])
                    for bucket, raw in zip(buckets, stored, strict=True):
                        self._checkpoints[bucket] = None if raw is None else raw.decode()
            else:
                self._drop(slice_)
        self._renewed = time.monotonic()

    def _renew(self) -> None:
        """Keep this member's membership and held leases alive during a long batch (a
        slice whose lease was lost is dropped); rebalancing waits for the next heartbeat."""
        self._join()
        for slice_ in sorted(self._held):
            if not self._driver.swap_value(
                self._value("lease", slice_), self._lease, self._lease, self._lease_seconds
            ):
                self._drop(slice_)
        self._renewed = time.monotonic()

    def _join(self) -> list[str]:
        name = self._value("members")
        while True:
            raw = self._driver.read_value(name)
            now = time.time()
            members = {m: t for m, t in (msgpack.unpackb(raw) if raw else {}).items() if t > now}
            members[self.owner] = now + self._lease_seconds
            if self._driver.swap_value(name, raw, msgpack.packb(members)):
                return sorted(members)

    def _leave(self) -> None:
        name = self._value("members")
        for _ in range(10):
            raw = self._driver.read_value(name)
            members = msgpack.unpackb(raw) if raw else {}
            if self.owner not in members:
                return
            del members[self.owner]
            if self._driver.swap_value(name, raw, msgpack.packb(members) if members else None):
                return

    def _buckets_of(self, slice_: int) -> range:
        return range(slice_, self._driver.buckets, self._slices)

    def _drop(self, slice_: int) -> None:
        self._held.discard(slice_)
        for bucket in self._buckets_of(slice_):
            self._checkpoints.pop(bucket, None)

    def _release(self, slice_: int) -> None:
        self._driver.swap_value(self._value("lease", slice_), self._lease, None)
        self._drop(slice_)

    def run_once(self) -> int:
        """Deliver the events waiting in the held buckets (one batch each); returns how many."""
        if self._renewal_due():
            self._heartbeat()
        if not self._held:
            return 0
        entries = self._driver.read_feed(dict(self._checkpoints), self._batch_size)
        by_bucket: dict[int, list[FeedEntry]] = {}
        for entry in entries:
            by_bucket.setdefault(entry.bucket, []).append(entry)
        delivered = 0
        for bucket, bucket_entries in by_bucket.items():
            delivered += self._consume(bucket, bucket_entries)
        return delivered

    def _consume(self, bucket: int, entries: list[FeedEntry]) -> int:
        delivered = 0
        position = self._checkpoints.get(bucket)
        done = position
        for entry in entries:
            if self._renewal_due():
                self._renew()
            if bucket not in self._checkpoints:  # its slice was lost: another member has it
                break
            if not self._deliver(entry):
                break
            delivered += len(entry.records)
            done = entry.position
        if done is not None and done != position:
            name = self._value("checkpoint", bucket)
            old = None if position is None else position.encode()
            if self._driver.swap_value(name, old, done.encode()):
                if bucket in self._checkpoints:  # not when its slice was lost during the batch
                    self._checkpoints[bucket] = done
            else:
                log.warning("consumer %s lost bucket %d to another member", self.name, bucket)
                self._drop(bucket % self._slices)
        return delivered

    def _renewal_due(self) -> bool:
        return time.monotonic() - self._renewed > self._lease_seconds / 3

    @traced_delivery
    def _deliver(self, entry: FeedEntry) -> bool:
        for sequence, record in enumerate(entry.records, start=entry.first):
            stored = self._store.decode_record(entry.key, sequence, record)
            registry = self._registries.get(stored.domain)
            event = stored.data if registry is None else registry.create_event(stored.event_type, stored.data)
            published = PublishedEvent(
                stored.domain,
                EventType(stored.event_type),
                entry.key,
                sequence,
                event,
                entry.commit_id,
                None if entry.recorded_at is None else utc(entry.recorded_at),
            )
            for handler in self._handlers:
                try:
                    handler.handle(published)
                except Exception as exc:
                    self._on_error(handler, published, exc)
                    return False
        return True

    def start(self) -> None:
        """Consume on a background thread until ``stop()`` (idempotent)."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._loop, name=f"kvsourcing-consumer-{self.name}", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                delivered = self.run_once()
            except Exception:
                log.exception("consumer %s failed to poll; retrying", self.name)
                delivered = 0
            if not delivered:
                self._stopping.wait(self._poll_interval)

    def stop(self) -> None:
        """Stop the background thread, release this member's leases and leave the member list."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for slice_ in sorted(self._held):
            self._release(slice_)
        self._leave()

    def __enter__(self) -> FeedConsumer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _log_error(self, handler: EventHandler, published: PublishedEvent, exc: Exception) -> None:
        log.error(
            "consumer %s: handler %r failed on %s %s at %d (will retry): %s",
            self.name,
            handler,
            published.type,
            published.key,
            published.sequence,
            exc,
        )


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
