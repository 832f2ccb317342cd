"""How a ``FeedConsumer`` turns a feed entry's records into the events its handlers get,
and what it says when a handler fails on one, or when one cannot be built."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from kvsourcing.errors import EncodingError
from kvsourcing.handlers import PublishedEvent
from kvsourcing.protocols import EventHandler, EventRegistry
from kvsourcing.stores.keyvalue.records import FeedEntry
from kvsourcing.stores.keyvalue.store import KeyValueStore, utc
from kvsourcing.types import EventType

log = logging.getLogger("kvsourcing.consumer")

ErrorCallback = Callable[[EventHandler | None, PublishedEvent, Exception], None]
"""Told of an event a handler failed on, or (handler ``None``) that could not be built."""


def build_event(
    store: KeyValueStore, registries: Mapping[str, EventRegistry], consumer: str, entry: FeedEntry,
    sequence: int, record: bytes,
) -> tuple[PublishedEvent, EncodingError | None]:  # fmt: skip
    """The event at ``sequence`` of ``entry`` as handlers get it, built by the registry of
    its domain (events of other domains keep their mapping); when it cannot be built (a
    corrupt record, an upcaster that raises, a field that does not fit), the stored data
    in its place and an ``EncodingError`` that names the event."""
    domain, event_type, data = "", "", None
    try:
        stored = store.decode_record(entry.key, sequence, record)
        domain, event_type, data = stored.domain, stored.event_type, stored.data
        registry = registries.get(domain)
        event = data if registry is None else registry.create_event(event_type, data)
    except Exception as exc:
        err = EncodingError(
            f"consumer {consumer} cannot build event {event_type!r} (domain {domain!r}) of "
            f"{entry.key!r} at sequence {sequence}: {type(exc).__name__}: {exc}; its bucket waits "
            "here until the consumer's registries can build it"
        )
        err.__cause__ = exc
        return published(entry, sequence, domain, event_type, data), err
    return published(entry, sequence, domain, event_type, event), None


def published(entry: FeedEntry, sequence: int, domain: str, event_type: str, data: Any) -> PublishedEvent:
    """A ``PublishedEvent`` with the commit id and time the feed entry carries."""
    at = None if entry.recorded_at is None else utc(entry.recorded_at)
    return PublishedEvent(domain, EventType(event_type), entry.key, sequence, data, entry.commit_id, at)


def log_error(consumer: str, handler: EventHandler | None, event: PublishedEvent, exc: Exception) -> None:
    """The default ``on_error``: one error line naming the event and what went wrong."""
    what = "cannot build the event" if handler is None else f"handler {handler!r} failed"
    where = f"{event.type} {event.key} at {event.sequence}"
    log.error("consumer %s: %s on %s (will retry): %s", consumer, what, where, exc)
