"""``ConsumerLogic``: what a feed consumer decides, written once for the sync
``FeedConsumer`` and the asyncio one (``aio_consumer``).

Its I/O (the driver's reads and compare-and-swaps) is asked for as steps
(``kvsourcing.steps``); each consumer runs them on its driver, through a small target
that adds what waiting in ``read_feed`` means for it. How the work is shared, leased
and checkpointed is told in ``consumer``'s docstring.
"""

from __future__ import annotations

import functools
import math
import time
import uuid
from collections.abc import Iterable
from typing import Any

from kvsourcing.errors import ConfigurationError
from kvsourcing.protocols import EventHandler, EventRegistry
from kvsourcing.steps import Call, Steps
from kvsourcing.stores.keyvalue.delivery import ErrorCallback, build_event, log, log_error
from kvsourcing.stores.keyvalue.records import FeedEntry
from kvsourcing.stores.keyvalue.values import join_steps, leave_steps, value_name
from kvsourcing.telemetry import traced_delivery


class ConsumerLogic:
    """A named, checkpointed consumer of a store's feed, without its I/O (see the module)."""

    def __init__(
        self,
        store: Any,
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
        if not callable(getattr(driver, "read_feed", None)) or not hasattr(driver, "buckets"):
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
        self._driver = driver
        self._pushes = bool(getattr(driver, "pushes", False))
        self.name = name
        self.owner = owner or uuid.uuid4().hex
        if isinstance(registries, EventRegistry):
            registries = [registries]
        self._registries = {r.domain(): r for r in registries}
        self._buckets: int = driver.buckets
        self._slices = min(slices, self._buckets)
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._on_error = on_error or functools.partial(log_error, name)
        self._handlers: list[EventHandler] = []
        self._held: set[int] = set()
        self._checkpoints: dict[int, str | None] = {}
        self._retry_at: dict[int, float] = {}
        self._wanted: set[int] = set()
        self._heartbeat_at = 0.0
        self._claim_at = 0.0
        self._lease = self.owner.encode()

    def _value(self, *parts: object) -> str:
        return value_name(self.name, *parts)

    def add_handler(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    @property
    def slices_held(self) -> frozenset[int]:
        """The slices this member holds leases on now."""
        return frozenset(self._held)

    def _checkpoint_steps(self, bucket: int) -> Steps[str | None]:
        raw = yield Call("read_value", (self._value("checkpoint", bucket),))
        return None if raw is None else raw.decode()

    def _heartbeat_steps(self) -> Steps[None]:
        """Refresh membership, give back the slices no longer dealt to this member, renew
        the leases it holds (dropping those it lost) and claim the others it is dealt.

        The next one is due a third of a lease later, or when another member's entry
        expires if sooner: a live member renews its entry before, and a dead one's slices
        are dealt again as soon as it drops out of the list."""
        members = yield from join_steps(self.name, self.owner, self._lease_seconds)
        me = sorted(members).index(self.owner)
        dealt = set(range(me, self._slices, len(members)))
        for slice_ in sorted(self._held - dealt):
            yield from self._release_steps(slice_)
        for slice_ in sorted(self._held):
            name = self._value("lease", slice_)
            if not (yield Call("swap_value", (name, self._lease, self._lease, self._lease_seconds))):
                self._drop(slice_)
        self._wanted = dealt - self._held
        yield from self._claim_steps()
        wall, now = time.time(), time.monotonic()
        others = [expiry - wall for owner, expiry in members.items() if owner != self.owner]
        self._heartbeat_at = now + min([self._lease_seconds / 3, *others])

    def _claim_steps(self) -> Steps[None]:
        """Take the free slices among those dealt to this member and not held; the others
        are tried again after ``poll_interval`` (a dead member's lease may outlive its
        entry in the member list by a moment, a live one gives them back at its heartbeat)."""
        for slice_ in sorted(self._wanted):
            name = self._value("lease", slice_)
            if (yield Call("swap_value", (name, None, self._lease, self._lease_seconds))):
                self._wanted.discard(slice_)
                self._held.add(slice_)
                buckets = self._buckets_of(slice_)
                stored = yield Call("read_values", ([self._value("checkpoint", b) for b in buckets],))
                for bucket, raw in zip(buckets, stored, strict=True):
                    self._checkpoints[bucket] = None if raw is None else raw.decode()
        self._claim_at = time.monotonic() + self._poll_interval

    def _due_steps(self) -> Steps[None]:
        """The heartbeat if it is due, else the claim of the slices wanted if that is."""
        now = time.monotonic()
        if now >= self._heartbeat_at:
            yield from self._heartbeat_steps()
        elif self._wanted and now >= self._claim_at:
            yield from self._claim_steps()

    def _until_heartbeat(self) -> float:
        """Seconds until the next heartbeat or claim is due (<= 0: due now)."""
        due = min(self._heartbeat_at, self._claim_at) if self._wanted else self._heartbeat_at
        return due - time.monotonic()

    def _buckets_of(self, slice_: int) -> range:
        return range(slice_, self._buckets, self._slices)

    def _drop(self, slice_: int) -> None:
        self._held.discard(slice_)
        for bucket in self._buckets_of(slice_):
            self._checkpoints.pop(bucket, None)
            self._retry_at.pop(bucket, None)

    def _release_steps(self, slice_: int) -> Steps[None]:
        yield Call("swap_value", (self._value("lease", slice_), self._lease, None))
        self._drop(slice_)

    def _leave_steps(self) -> Steps[None]:
        """Release the leases held and leave the member list (a restart joins at once)."""
        for slice_ in sorted(self._held):
            yield from self._release_steps(slice_)
        self._wanted.clear()
        self._heartbeat_at = 0.0
        yield from leave_steps(self.name, self.owner)

    def _poll_steps(self, *, wait: bool) -> Steps[tuple[int, int] | None]:
        """Heartbeat if due, read and deliver a batch of each held bucket: ``(entries read,
        events delivered)``, ``None`` if none was read. With ``wait`` (the loop), a bucket
        stopped by a failure rests ``poll_interval``, and a driver that pushes waits in
        ``read_feed`` until entries come, the next heartbeat or a resting bucket's retry
        (its target answers ``None`` when the consumer stopped meanwhile)."""
        yield from self._due_steps()
        now = time.monotonic()
        after = {b: p for b, p in self._checkpoints.items() if not wait or self._retry_at.get(b, 0.0) <= now}
        if not after:
            return None
        seconds = 0.0
        if wait and self._pushes:
            retries = (at - now for at in self._retry_at.values() if at > now)
            seconds = max(0.0, min([self._until_heartbeat(), *retries]))
        entries = yield Call("read_feed", (after, self._batch_size), {"wait": seconds})
        if entries is None:
            return None
        by_bucket: dict[int, list[FeedEntry]] = {}
        for entry in entries:
            by_bucket.setdefault(entry.bucket, []).append(entry)
        delivered = 0
        for bucket, bucket_entries in by_bucket.items():
            delivered += yield from self._consume_steps(bucket, bucket_entries)
        return len(entries), delivered

    def _consume_steps(self, bucket: int, entries: list[FeedEntry]) -> Steps[int]:
        delivered = 0
        position = self._checkpoints.get(bucket)
        done = position
        for entry in entries:
            yield from self._due_steps()
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
            if (yield Call("swap_value", (name, old, done.encode()))):
                if bucket in self._checkpoints:  # not when its slice was lost during the batch
                    self._checkpoints[bucket] = done
            else:
                yield from self._moved_under_us_steps(bucket)
        return delivered

    def _moved_under_us_steps(self, bucket: int) -> Steps[None]:
        """Another member moved ``bucket``'s checkpoint: a former holder if the lease is still
        this member's (go on from it: dropping the slice would idle it until that lease ran out)."""
        slice_ = bucket % self._slices
        names = [self._value("lease", slice_), self._value("checkpoint", bucket)]
        lease, checkpoint = yield Call("read_values", (names,))
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
