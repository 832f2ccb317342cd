"""``FeedConsumer``: follow the durable feed from a named checkpoint, at least once.

A consumer reads the feed buckets it holds (``FeedDriver``), delivers each event to its
handlers as a ``PublishedEvent`` in sequence order per aggregate, then stores the bucket's
checkpoint in the same store: one that dies in between delivers those events again when
restarted (at least once); none is ever skipped.

Processes of one consumer share the work: each heartbeats into the member list
(``values``), the buckets are split into ``slices`` dealt round-robin to the live members,
and a member processes a slice only while it holds its lease. The heartbeat renews the
leases held, takes the free slices dealt and gives back the others, every third of
``lease_seconds``, between the entries of a long batch too: the slices of a process that
died pass to the others within a lease and a third, however busy they are. Checkpoints
are written with compare-and-swap, so a process that lost its lease cannot move one back.

On a driver that ``pushes`` (memory, Redis) the background loop waits in ``read_feed``
for new entries instead of polling every ``poll_interval``, so an event reaches the
handlers milliseconds after its commit and an idle consumer costs a read per heartbeat;
a wait ends by the next heartbeat, and ``stop()`` does not wait for it.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from kvsourcing.errors import ConfigurationError
from kvsourcing.protocols import EventHandler, EventRegistry
from kvsourcing.stores.keyvalue.delivery import ErrorCallback, build_event, log_error
from kvsourcing.stores.keyvalue.driver import FeedDriver
from kvsourcing.stores.keyvalue.records import FeedEntry
from kvsourcing.stores.keyvalue.store import KeyValueStore
from kvsourcing.stores.keyvalue.values import join, leave, value_name
from kvsourcing.telemetry import traced_delivery

log = logging.getLogger("kvsourcing.consumer")


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
        self._on_error = on_error or functools.partial(log_error, name)
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
        after = {b: p for b, p in self._checkpoints.items() if not wait or self._retry_at.get(b, 0.0) <= now}
        if not after:
            return None
        pushed = wait and self._pushes
        entries = self._read(after) if pushed else self._driver.read_feed(after, self._batch_size)
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
                self._moved_under_us(bucket)
        return delivered

    def _moved_under_us(self, bucket: int) -> None:
        """Another member moved ``bucket``'s checkpoint: a former holder if the lease is still
        this member's (go on from it: dropping the slice would idle it until that lease ran out)."""
        slice_ = bucket % self._slices
        names = [self._value("lease", slice_), self._value("checkpoint", bucket)]
        lease, checkpoint = self._driver.read_values(names)
        if lease == self._lease and bucket in self._checkpoints:
            self._checkpoints[bucket] = None if checkpoint is None else checkpoint.decode()
        else:
            log.warning("consumer %s lost bucket %d to another member", self.name, bucket)
            self._drop(slice_)

    @traced_delivery
    def _deliver(self, entry: FeedEntry) -> bool:
        for sequence, record in enumerate(entry.records, start=entry.first):
            published, unbuildable = build_event(
                self._store, self._registries, self.name, entry, sequence, record
            )
            if unbuildable is not None:
                self._on_error(None, published, unbuildable)
                return False
            for handler in self._handlers:
                try:
                    handler.handle(published)
                except Exception as exc:
                    self._on_error(handler, published, exc)
                    return False
        return True

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
        """Stop the background thread (not waiting for one parked in ``read_feed``, which ends
        with its wait and delivers nothing), release the leases and leave the member list."""
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
