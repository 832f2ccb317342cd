"""A small counter domain the store compliance suite writes and reads."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kvsourcing.aggregate import AggregateBase
from kvsourcing.protocols import EventStore
from kvsourcing.registry import EventDefinition, StandardEventRegistry


@dataclass
class Incremented:
    by: int = 1


@dataclass
class Renamed:
    name: str


@dataclass
class Detail:
    at: dt.datetime
    amount: Decimal
    tags: tuple[str, ...] = ()


@dataclass
class Audited:
    """An event with every kind of value the codecs must carry."""

    id: uuid.UUID
    detail: Detail
    when: dt.date
    blob: bytes
    labels: set[str] = field(default_factory=set)
    scores: dict[int, float] = field(default_factory=dict)


@dataclass
class Reset:
    """Written by newer code only: older registries do not know it."""

    to: int


@dataclass
class Increment:
    by: int = 1


def _is_v1_renamed(data: Any) -> bool:
    return "title" in data


def _upcast_v1_renamed(data: Any) -> Renamed:
    return Renamed(name=data["title"])


def registry(*, newer: bool = False) -> StandardEventRegistry:
    """The counter's events; ``newer=True`` also knows ``Reset``, as a later release would."""
    reg = StandardEventRegistry("compliance")
    reg.register_event(Incremented)
    reg.register_event(Renamed, EventDefinition(_is_v1_renamed, _upcast_v1_renamed))
    reg.register_event(Audited)
    if newer:
        reg.register_event(Reset)
    return reg


class Counter(AggregateBase):
    """Counts increments; records what it replayed, privately, so tests can see it."""

    count: int
    name: str
    audits: list[Audited]

    def __init__(self, key: str, store: EventStore, *, newer: bool = False) -> None:
        super().__init__()
        self.count = 0
        self.name = ""
        self.audits = []
        self._replayed: list[Any] = []
        self.initialize(key, registry(newer=newer), store)
        self.automatic_wireup()

    def replay_event(self, event: Any) -> None:
        self._replayed.append(event)
        super().replay_event(event)

    def replay_incremented(self, event: Incremented) -> None:
        self.count += event.by

    def replay_renamed(self, event: Renamed) -> None:
        self.name = event.name

    def replay_audited(self, event: Audited) -> None:
        self.audits.append(event)

    def replay_reset(self, event: Reset) -> None:
        self.count = event.to

    def handle_increment(self, command: Increment) -> list[Any]:
        return [Incremented(command.by)]
