"""``FeedConsumer``: follow the durable feed from a named checkpoint, at least once.

A consumer reads the feed buckets it holds (``FeedDriver``), delivers each event to its
handlers as a ``PublishedEvent`` in sequence order per aggregate, then stores the bucket's
checkpoint in the same store: one that dies in between delivers those events again when
restarted (at least once); none is ever skipped.

Processes of one consumer share the work: each heartbeats into the member list
(``values``), the buckets are split into ``slices`` dealt round-robin to the live members,
and a member processes a slice only while it holds its lease. The heartbeat renews the
leases held, takes the free slices dealt and gives back the others, every third of
``lease_seconds`` and as soon as another member's entry in the list expires, between the
entries of a long batch too; a slice dealt but still leased is tried again every
``poll_interval``. So the slices of a process that died pass to the others within its
lease and a poll (and the time of the event in hand), however busy they are, give or
take the difference between the machines' clocks. Checkpoints are written with
compare-and-swap, so a process that lost its lease cannot move one back.

On a driver that ``pushes`` (memory, Redis) the background loop waits in ``read_feed``
for new entries instead of polling every ``poll_interval``, so an event reaches the
handlers milliseconds after its commit and an idle consumer costs a read per heartbeat;
a wait ends by the next heartbeat, and ``stop()`` does not wait for it.

The decisions are ``ConsumerLogic``'s (``consuming``), shared with the asyncio consumer
(``kvsourcing.aio.FeedConsumer``); this class runs them on a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from kvsourcing.steps import run_sync
from kvsourcing.stores.keyvalue.consuming import ConsumerLogic
from kvsourcing.stores.keyvalue.delivery import log
from kvsourcing.stores.keyvalue.records import FeedEntry


class FeedConsumer(ConsumerLogic):
    """A named, checkpointed consumer of a key-value store's feed (an ``EventConsumer``).

    ``registries`` build event objects for their domains; events of other domains are
    delivered as their mappings. Call ``start()``/``stop()`` to run it on a background
    thread, or ``run_once()`` to process what is there now. An event a handler fails on, or
    that cannot be built (``on_error`` gets handler ``None``), stops its bucket only.
    """

    def __init__(self, store: Any, name: str, *args: Any, **options: Any) -> None:
        super().__init__(store, name, *args, **options)
        self._stopping = threading.Event()
        self._state = threading.Lock()  # guards _waiting against stop()
        self._waiting = False
        self._thread: threading.Thread | None = None
        self._calls = _Calls(self)

    def checkpoint(self, bucket: int) -> str | None:
        """The stored feed position of ``bucket`` (``None``: nothing consumed yet)."""
        return run_sync(self._checkpoint_steps(bucket), self._driver)

    def run_once(self) -> int:
        """Deliver the events waiting in the held buckets (one batch each); returns how many."""
        polled = run_sync(self._poll_steps(wait=False), self._calls)
        return 0 if polled is None else polled[1]

    def _heartbeat(self) -> None:
        run_sync(self._heartbeat_steps(), self._driver)

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
                polled = run_sync(self._poll_steps(wait=True), self._calls)
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
        run_sync(self._leave_steps(), self._driver)

    def __enter__(self) -> FeedConsumer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class _Calls:
    """The driver as the consumer's steps call it, with waiting in ``read_feed`` made safe
    against ``stop()``: a read that waited answers ``None`` when ``stop()`` came meanwhile
    (it did not wait for this read, whose entries are left for the next holder)."""

    def __init__(self, consumer: FeedConsumer) -> None:
        driver = consumer._driver
        self._consumer = consumer
        self.read_value = driver.read_value
        self.read_values = driver.read_values
        self.swap_value = driver.swap_value

    def read_feed(
        self, after: dict[int, str | None], limit: int, *, wait: float
    ) -> Sequence[FeedEntry] | None:
        consumer = self._consumer
        if wait <= 0:
            entries: Sequence[FeedEntry] = consumer._driver.read_feed(after, limit)
            return entries
        with consumer._state:
            if consumer._stopping.is_set():
                return None
            consumer._waiting = True
        try:
            entries = consumer._driver.read_feed(after, limit, wait=wait)
        finally:
            with consumer._state:
                consumer._waiting = False
                stopped = consumer._stopping.is_set()
        return None if stopped else entries
