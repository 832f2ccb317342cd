"""Registries map event and command classes to stable type names, and back."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kvsourcing.structure import build
from kvsourcing.types import (
    CommandType,
    EventDetector,
    EventFactory,
    EventType,
    normalize_type_name,
)


@dataclass(frozen=True)
class EventDefinition:
    """One older revision of an event: ``detector(data)`` recognises its stored mapping,
    ``factory(data)`` builds the current event class from it (upcasting)."""

    detector: EventDetector
    factory: EventFactory


def _type_name(obj_or_cls: Any) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return normalize_type_name(cls.__qualname__)


class _TypeTable:
    """Name ↔ class table shared by both registries; registration is thread-safe."""

    def __init__(self, domain: str, kind: str) -> None:
        self._domain = domain
        self._kind = kind
        self._by_name: dict[str, type] = {}
        self._lock = threading.Lock()

    def add(self, cls: type, name: str | None) -> str:
        if not isinstance(cls, type):
            raise TypeError(f"register a {self._kind} class, not an instance of {type(cls).__name__}")
        name = name or _type_name(cls)
        with self._lock:
            known = self._by_name.get(name)
            if known is not None and known is not cls:
                raise ValueError(
                    f"{self._kind} type {name!r} is already registered in domain {self._domain!r} "
                    f"by {known.__module__}.{known.__qualname__}; pass name= to register it under another"
                )
            self._by_name[name] = cls
        return name

    def name_of(self, obj_or_cls: Any) -> tuple[str, bool]:
        cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
        name = getattr(cls, "__kvsourcing_type__", None)
        if name is not None and self._by_name.get(name) is cls:
            return name, True
        name = _type_name(cls)
        return name, self._by_name.get(name) is cls

    def get(self, name: str) -> type | None:
        return self._by_name.get(name)


class StandardEventRegistry:
    """The events one aggregate type knows, with optional older revisions of each."""

    def __init__(self, domain: str) -> None:
        self._domain = domain
        self._table = _TypeTable(domain, "event")
        self._definitions: dict[str, tuple[EventDefinition, ...]] = {}

    def domain(self) -> str:
        return self._domain

    def register_event(self, cls: type, *definitions: EventDefinition, name: str | None = None) -> type:
        """Register ``cls`` (and readers of its older revisions); returns ``cls``, so it decorates."""
        type_name = self._table.add(cls, name)
        if name is not None:
            cls.__kvsourcing_type__ = type_name  # type: ignore[attr-defined]
        self._definitions[type_name] = definitions
        return cls

    def get_event_type(self, event: Any) -> tuple[EventType, bool]:
        """``(type name, registered?)`` of an event instance or class."""
        name, found = self._table.name_of(event)
        return EventType(name), found

    def event_class(self, event_type: str) -> type | None:
        """The class registered under ``event_type``, or ``None``."""
        return self._table.get(event_type)

    def create_event(self, event_type: str, data: Any = None) -> Any:
        """Build the event ``event_type`` from stored data; an unknown type gives the data back."""
        cls = self._table.get(event_type)
        if cls is None:
            return {} if data is None else data
        if data is None:
            return cls()
        for definition in self._definitions.get(event_type, ()):
            if definition.detector(data):
                return definition.factory(data)
        if not isinstance(data, Mapping):
            return data
        return build(cls, data) if dataclasses.is_dataclass(cls) else cls(**data)


class StandardCommandRegistry:
    """The commands one aggregate type accepts."""

    def __init__(self, domain: str) -> None:
        self._domain = domain
        self._table = _TypeTable(domain, "command")

    def domain(self) -> str:
        return self._domain

    def register_command(self, cls: type, *, name: str | None = None) -> CommandType:
        """Register ``cls``; returns its ``CommandType``."""
        return CommandType(self._table.add(cls, name))

    def get_command_type(self, command: Any) -> tuple[CommandType, bool]:
        name, found = self._table.name_of(command)
        return CommandType(name), found

    def create_command(self, command_type: str, data: Mapping[str, Any] | None = None) -> Any:
        """A new command of ``command_type`` (built from ``data`` when given), or ``None``."""
        cls = self._table.get(command_type)
        if cls is None:
            return None
        return cls() if data is None else build(cls, data)


def new_standard_event_registry(domain: str) -> StandardEventRegistry:
    return StandardEventRegistry(domain)


def new_standard_command_registry(domain: str) -> StandardCommandRegistry:
    return StandardCommandRegistry(domain)
