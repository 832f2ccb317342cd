"""Go-parity publishing: middleware that publishes or logs commits, and an in-process distributor.

Publishing from middleware happens after the commit, so a process that dies between
the two loses the publish; for delivery that survives that, follow the durable feed
with ``kvsourcing.stores.keyvalue.FeedConsumer`` instead.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from kvsourcing.handlers import PublishedEvent
from kvsourcing.protocols import EventHandler, EventPublisher, EventRegistry
from kvsourcing.types import CommitMiddleware, Event, EventType, NextHandler, RefreshMiddleware

log = logging.getLogger("kvsourcing")


def new_publish_middleware(publisher: EventPublisher) -> CommitMiddleware:
    """A commit middleware that calls ``publisher.publish(key, sequence, event)`` for each
    event of a commit, after the commit succeeded; a commit whose id the store found
    already stored wrote nothing, so it publishes nothing."""

    def publish(writer: Any, next_: NextHandler) -> None:
        committed, events = writer.get_uncommitted_events()
        next_()
        already_stored = getattr(writer, "was_already_stored", None)
        if already_stored is not None and already_stored():
            return
        key = writer.get_key()
        for sequence, event in enumerate(events, start=committed + 1):
            publisher.publish(key, sequence, event)

    return publish


def new_logging_middleware(
    logger: logging.Logger | None = None, level: int = logging.INFO
) -> tuple[CommitMiddleware, RefreshMiddleware, None]:
    """Commit and refresh middleware logging one line each: key, sequence and duration.

    Use as ``store.use(*new_logging_middleware())``.
    """
    logger = logger or log

    def timed(action: str, adapter: Any, next_: NextHandler) -> None:
        started = time.perf_counter()
        try:
            next_()
        except Exception as exc:
            elapsed = (time.perf_counter() - started) * 1000
            logger.log(level, "%s %s failed after %.2f ms: %s", action, adapter.get_key(), elapsed, exc)
            raise
        elapsed = (time.perf_counter() - started) * 1000
        logger.log(
            level,
            "%s %s at sequence %d in %.2f ms",
            action,
            adapter.get_key(),
            adapter.sequence_number(),
            elapsed,
        )

    def commit(writer: Any, next_: NextHandler) -> None:
        timed("commit", writer, next_)

    def refresh(reader: Any, next_: NextHandler) -> None:
        timed("refresh", reader, next_)

    return commit, refresh, None


class InProcessDistributor:
    """An ``EventPublisher`` and ``EventConsumer`` in one: published events are queued and
    delivered, in order, to every handler on a background thread between ``start()`` and ``stop()``.

    A handler that raises is logged and does not stop delivery to the others.
    """

    def __init__(self, registry: EventRegistry) -> None:
        self._registry = registry
        self._handlers: list[EventHandler] = []
        self._queue: queue.Queue[PublishedEvent | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.on_error: Callable[[EventHandler, PublishedEvent, Exception], None] = self._log_error

    def add_handler(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def publish(self, key: str, sequence: int, event: Event) -> None:
        event_type, _ = self._registry.get_event_type(event)
        self._queue.put(PublishedEvent(self._registry.domain(), EventType(event_type), key, sequence, event))

    def start(self) -> None:
        """Start delivering on a background thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._deliver_all, name="kvsourcing-distributor", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Deliver what is queued, then stop the background thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def join(self) -> None:
        """Wait until every event published so far has been delivered."""
        self._queue.join()

    def _deliver_all(self) -> None:
        while True:
            published = self._queue.get()
            try:
                if published is None:
                    return
                for handler in self._handlers:
                    try:
                        handler.handle(published)
                    except Exception as exc:
                        self.on_error(handler, published, exc)
            finally:
                self._queue.task_done()

    @staticmethod
    def _log_error(handler: EventHandler, published: PublishedEvent, exc: Exception) -> None:
        log.exception(
            "handler %r failed on %s %s at %d: %s",
            handler,
            published.type,
            published.key,
            published.sequence,
            exc,
        )
