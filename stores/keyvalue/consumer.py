"""``FeedConsumer``: follow the durable feed from a named checkpoint, at least once.

Every commit is recorded in its aggregate's bucket feed in the same atomic write as the
events (see ``FeedDriver``). A consumer reads the buckets it holds, delivers each event to
its handlers as a ``PublishedEvent``, in sequence order per aggregate, then stores the
bucket's checkpoint in the same store: a consumer that dies in between delivers those
events again when restarted (at least once); none is ever skipped.

Several processes of one consumer share the work: each heartbeats into the consumer's
member list (``values``), the buckets are split into ``slices``, dealt round-robin to
the live members in the order of their names, and a member processes a slice only while
it holds the slice's lease. The heartbeat, which renews the leases held, takes the free
slices a member is dealt and gives back those it no longer is, comes every third of
``lease_seconds``, between entries too, however long a batch: a lease expires
``lease_seconds`` after its holder last renewed it, so the slices of a process that died
pass to the others within a lease and a third, even while they are busy. A checkpoint is
written with compare-and-swap, so a process that lost its lease cannot move it back.

On a driver that ``pushes`` (memory, Redis) the background loop waits in ``read_feed``
for new entries instead of polling every ``poll_interval``, so an event reaches the
handlers milliseconds after its commit and an idle consumer costs a read per heartbeat;
a wait ends by the next heartbeat, and ``stop()`` does not wait for it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from kvsourcing.errors import ConfigurationError, EncodingError
from kvsourcing.handlers import PublishedEvent
from kvsourcing.protocols import EventHandler, EventRegistry
from kvsourcing.stores.keyvalue.driver import FeedDriver
from kvsourcing.stores.keyvalue.records import FeedEntry
from kvsourcing.stores.keyvalue.store import KeyValueStore, utc
from kvsourcing.stores.keyvalue.values import join, leave, trim_consumed, value_name
from kvsourcing.types import EventType

log = logging.getLogger("kvsourcing.consumer")

ErrorCallback = Callable[[EventHandler | None, PublishedEvent, Exception], None]
"""Told of an event a handler failed on, or (handler ``None``) that could not be built."""

__all__ = ["ErrorCallback", "FeedConsumer", "trim_consumed", "value_name"]


class FeedConsumer:
    """A named, checkpointed consumer of a key-value store's feed (an ``EventConsumer``).

    ``registries`` build event objects for their domains; events of other domains are
    delivered as their mappings. Call ``start()``/``stop()`` to run it on a background
    thread, or ``run_once()`` to process what is there now. An event a handler fails on, or
    that cannot be built (``on_error`` gets handler ``None``), stops its bucket only.
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
        self._pushes = bool(getattr(driver, "pushes", False))
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
        self._retry_at: dict[int, float] = {}
        self._renewed = 0.0
        self._stopping = threading.Event()
        self._state = threading.Lock()  # guards _waiting against stop()
        self._waiting = False
        self._thread: threading.Thread | None = None
        self._lease = self.owner.encode()

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
        """Refresh membership, give back the slices no longer dealt to this member, renew
        the leases it holds (dropping those it lost) and take the free ones it is dealt."""
        members = join(self._driver, self.name, self.owner, self._lease_seconds)
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

    def _until_heartbeat(self) -> float:
        """Seconds until the next heartbeat is due (<= 0: due now)."""
        return self._renewed + self._lease_seconds / 3 - time.monotonic()

    def _buckets_of(self, slice_: int) -> range:
        return range(slice_, self._driver.buckets, self._slices)

    def _drop(self, slice_: int) -> None:
        self._held.discard(slice_)
        for bucket in self._buckets_of(slice_):
            self._checkpoints.pop(bucket, None)
            self._retry_at.pop(bucket, None)

    def _release(self, slice_: int) -> None:
        self._driver.swap_value(self._value("lease", slice_), self._lease, None)
        self._drop(slice_)

    def run_once(self) -> int:
        """Deliver the events waiting in the held buckets (one batch each); returns how many."""
        polled = self._poll(wait=False)
        return 0 if polled is None else polled[1]

    def _poll(self, *, wait: bool) -> tuple[int, int] | None:
        """Heartbeat if due, read and deliver a batch of each held bucket: ``(entries read,
        events delivered)``, ``None`` if none was read. With ``wait`` (the loop), a bucket
        stopped by a failure rests ``poll_interval``, and a driver that pushes waits."""
        if self._until_heartbeat() <= 0:
            self._heartbeat()
        now = time.monotonic()
        after = {
            bucket: position
            for bucket, position in self._checkpoints.items()
            if not wait or self._retry_at.get(bucket, 0.0) <= now
        }
        if not after:
            return None
        entries = (
            self._read(after) if wait and self._pushes else self._driver.read_feed(after, self._batch_size)
        )
        if entries is None:
            return None
        by_bucket: dict[int, list[FeedEntry]] = {}
        for entry in entries:
            by_bucket.setdefault(entry.bucket, []).append(entry)
        delivered = 0
        for bucket, bucket_entries in by_bucket.items():
            delivered += self._consume(bucket, bucket_entries)
        return len(entries), delivered

    def _read(self, after: dict[int, str | None]) -> list[FeedEntry] | None:
        """Wait in ``read_feed`` until entries come, the next heartbeat or a resting bucket's
        retry; ``None`` when ``stop()`` came meanwhile (it did not wait for this read, whose
        entries are left for the next holder of their buckets)."""
        now = time.monotonic()
        seconds = min([self._until_heartbeat(), *(at - now for at in self._retry_at.values() if at > now)])
        with self._state:
            if self._stopping.is_set():
                return None
            self._waiting = True
        try:
            entries = self._driver.read_feed(after, self._batch_size, wait=max(0.0, seconds))
        finally:
            with self._state:
                self._waiting = False
                stopped = self._stopping.is_set()
        return None if stopped else entries

    def _consume(self, bucket: int, entries: list[FeedEntry]) -> int:
        delivered = 0
        position = self._checkpoints.get(bucket)
        done = position
        for entry in entries:
            if self._until_heartbeat() <= 0:
                self._heartbeat()
            if bucket not in self._checkpoints or self._checkpoints[bucket] != position:
                break  # its slice was lost: another member has it
            if not self._deliver(entry):
                self._retry_at[bucket] = time.monotonic() + self._poll_interval
                break
            delivered += len(entry.records)
            done = entry.position
        else:
            self._retry_at.pop(bucket, None)
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

    def _deliver(self, entry: FeedEntry) -> bool:
        for sequence, record in enumerate(entry.records, start=entry.first):
            published = self._build(entry, sequence, record)
            if published is None:
                return False
            for handler in self._handlers:
                try:
                    handler.handle(published)
                except Exception as exc:
                    self._on_error(handler, published, exc)
                    return False
        return True

    def _build(self, entry: FeedEntry, sequence: int, record: bytes) -> PublishedEvent | None:
        """The event as handlers get it; ``None`` (``on_error`` told) when it cannot be built."""
        domain, event_type, data = "", "", None
        try:
            stored = self._store.decode_record(entry.key, sequence, record)
            domain, event_type, data = stored.domain, stored.event_type, stored.data
            registry = self._registries.get(domain)
            event = data if registry is None else registry.create_event(event_type, data)
        except Exception as exc:
            err = EncodingError(
                f"consumer {self.name} cannot build event {event_type!r} (domain {domain!r}) of "
                f"{entry.key!r} at sequence {sequence}: {type(exc).__name__}: {exc}; its bucket waits "
                "here until the consumer's registries can build it"
            )
            err.__cause__ = exc
            self._on_error(None, self._published(entry, sequence, domain, event_type, data), err)
            return None
        return self._published(entry, sequence, domain, event_type, event)

    @staticmethod
    def _published(entry: FeedEntry, sequence: int, domain: str, kind: str, data: Any) -> PublishedEvent:
        at = None if entry.recorded_at is None else utc(entry.recorded_at)
        return PublishedEvent(domain, EventType(kind), entry.key, sequence, data, entry.commit_id, at)

    def start(self) -> None:
        """Consume on a background thread until ``stop()`` (idempotent)."""
        if self._thread is None or not self._thread.is_alive() or self._stopping.is_set():
            if self._thread is not None:
                self._thread.join()  # one that stop() left in a wait ends with it
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._loop, name=f"kvsourcing-consumer-{self.name}", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                polled = self._poll(wait=True)
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("consumer %s failed to poll; retrying", self.name)
                polled = None
            if polled is not None and (polled[1] or (self._pushes and not polled[0])):
                continue  # delivered (there may be more), or already waited in read_feed
            self._stopping.wait(min(self._poll_interval, max(0.0, self._until_heartbeat())))

    def stop(self) -> None:
        """Stop the background thread, release this member's leases and leave the member list.
        A thread waiting in ``read_feed`` is not waited for: it ends with its wait, delivering nothing."""
        with self._state:
            self._stopping.set()
            waiting = self._waiting
        if self._thread is not None and not waiting:
            self._thread.join()
        for slice_ in sorted(self._held):
            self._release(slice_)
        leave(self._driver, self.name, self.owner)

    def __enter__(self) -> FeedConsumer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _log_error(self, handler: EventHandler | None, published: PublishedEvent, exc: Exception) -> None:
        what = "cannot build the event" if handler is None else f"handler {handler!r} failed"
        event = f"{published.type} {published.key} at {published.sequence}"
        log.error("consumer %s: %s on %s (will retry): %s", self.name, what, event, exc)
