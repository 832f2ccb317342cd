"""Published events and ``EventHandlerBase``, which routes them to ``handle_*`` methods."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kvsourcing.protocols import EventRegistry
from kvsourcing.types import EVENT_HANDLE_METHOD_PREFIX, Event, EventType
from kvsourcing.wireup import prefixed_methods


@dataclass(frozen=True)
class PublishedEvent:
    """A stored event as delivered to handlers; ``data`` is the event object. After Go's
    five fields: the id of the commit that stored it and when (an aware UTC ``datetime``),
    ``None`` where unknown (events stored before commits kept them, or published by
    middleware, which runs before the store's time is known)."""

    domain: str
    type: EventType
    key: str
    sequence: int
    data: Event
    commit_id: str | None = None
    recorded_at: dt.datetime | None = None


class EventHandlerBase:
    """Base class of event handlers: ``handle_<name>(self, key: str, sequence: int, event: E)``
    methods are found by ``automatic_wireup`` and called for events of type ``E``."""

    def __init__(self) -> None:
        self._registry: EventRegistry | None = None
        self._self: Any = self
        self._handlers: dict[str, Callable[[str, int, Any], Any]] = {}

    def initialize(self, registry: EventRegistry, self_: Any = None) -> None:
        """Bind the registry that names event types and wire up ``self_`` (by default this
        handler) at once, as Go's ``Initialize`` calls ``AutomaticWireup(self)``."""
        if "_handlers" not in vars(self):
            EventHandlerBase.__init__(self)
        self._registry = registry
        self._self = self if self_ is None else self_
        self.automatic_wireup(self._self)

    def automatic_wireup(self, subject: Any = None) -> None:
        """Route events to ``subject``'s ``handle_*`` methods (``subject`` defaults to the
        initialized self), in place of those wired before, as Go's ``AutomaticWireup`` does.

        Raises ``WireupError`` for a ``handle_*`` method of the wired shape whose event
        parameter has no annotation."""
        if self._registry is None:
            raise RuntimeError("call initialize(registry) before automatic_wireup()")
        registry = self._registry
        subject = self._self if subject is None else subject
        self._handlers = {
            registry.get_event_type(event_cls)[0]: method
            for event_cls, method in prefixed_methods(
                subject, EVENT_HANDLE_METHOD_PREFIX, 3, skip=frozenset({"handle"})
            )
        }

    def handle(self, published: PublishedEvent) -> None:
        """Deliver ``published`` to its ``handle_*`` method; events with none are ignored."""
        handler = self._handlers.get(published.type)
        if handler is not None:
            handler(published.key, published.sequence, published.data)
