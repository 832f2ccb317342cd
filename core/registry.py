"""Registries map event and command classes to stable type names, and back."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kvsourcing.encodable import encoding_problem
from kvsourcing.errors import RegistrationError
from kvsourcing.structure import build, build_dataclass, constructor_for, is_plain_dataclass
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
        self._by_class: dict[type, str] = {}
        self._lock = threading.Lock()

    def add(self, cls: type, name: str | None) -> str:
        if not isinstance(cls, type):
            raise TypeError(f"register a {self._kind} class, not an instance of {type(cls).__name__}")
        name = name or _type_name(cls)
        with self._lock:
            known = self._by_name.get(name)
            if known is not None and known is not cls:
                raise RegistrationError(
                    f"{self._kind} type {name!r} is already registered in domain {self._domain!r} "
                    f"by {known.__module__}.{known.__qualname__}; pass name= to register it under another"
                )
            self._by_name[name] = cls
            self._by_class[cls] = name
        return name

    def name_of(self, obj_or_cls: Any) -> tuple[str, bool]:
        cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
        name = self._by_class.get(cls)
        if name is not None:
            return name, True
        return _type_name(cls), False

    def get(self, name: str) -> type | None:
        return self._by_name.get(name)


class StandardEventRegistry:
    """The events one aggregate type knows, with optional older revisions of each."""

    def __init__(self, domain: str) -> None:
        self._domain = domain
        self._table = _TypeTable(domain, "event")
        self._readers: dict[str, Callable[[Any], Any]] = {}
        self._stored: frozenset[tuple[str, type | None]] = frozenset()
        self._registered: dict[type, tuple[EventType, bool]] = {}
        """``get_event_type`` of each registered class's instances, ready: asked per event committed."""

    def domain(self) -> str:
        return self._domain

    def register_event(
        self,
        cls: type,
        *definitions: EventDefinition,
        name: str | None = None,
        check_encodable: bool = True,
    ) -> type:
        """Register ``cls`` (and readers of its older revisions); returns ``cls``, so it decorates.

        A dataclass with a field whose hinted type the default codecs cannot encode raises
        ``RegistrationError`` here rather than at its first commit; ``check_encodable=False``
        skips that check, for a store whose own codec encodes such a type.
        """
        problem = encoding_problem(cls) if check_encodable and isinstance(cls, type) else None
        if problem is not None:
            raise RegistrationError(
                f"cannot register event {cls.__qualname__}: {problem}; change the field's type, or "
                "pass check_encodable=False if the store's codec encodes it"
            )
        type_name = self._table.add(cls, name)
        self._registered[cls] = (EventType(type_name), True)
        self._readers[type_name] = _reader(cls, definitions)
        stored = {name: known for name, known in self._stored if name != type_name}
        stored[type_name] = None if definitions else cls
        self._stored = frozenset(stored.items())
        return cls

    def get_event_type(self, event: Any) -> tuple[EventType, bool]:
        """``(type name, registered?)`` of an event instance or class."""
        registered = self._registered.get(type(event))
        if registered is not None:
            return registered
        name, found = self._table.name_of(event)
        return EventType(name), found

    def event_class(self, event_type: str) -> type | None:
        """The class registered under ``event_type``, or ``None``."""
        return self._table.get(event_type)

    def stored_event_classes(self) -> frozenset[tuple[str, type | None]]:
        """``(type name, class)`` of every registered event type, the class ``None`` when
        stored data of that type may be an older revision (which a detector must see as a
        mapping, through ``create_event``): a codec may decode the others straight into
        their class. The same object until the next registration."""
        return self._stored

    def create_event(self, event_type: str, data: Any = None) -> Any:
        """Build the event ``event_type`` from stored data; an unknown type gives the data back."""
        read = self._readers.get(event_type)
        if read is None:
            return {} if data is None else data
        return read(data)


def _reader(cls: type, definitions: tuple[EventDefinition, ...]) -> Callable[[Any], Any]:
    """How ``create_event`` builds ``cls`` from stored data: older revisions first, then
    the class's own constructor, worked out once at registration."""
    plain = not definitions and is_plain_dataclass(cls)
    # ``read_plain`` below has tried ``cls(**data)`` already: the general way goes straight
    # to the builder that drops extra keys and defaults missing ones.
    construct = functools.partial(build_dataclass, cls) if plain else constructor_for(cls)

    def read(data: Any) -> Any:
        if data is None:
            return cls()
        for definition in definitions:
            if definition.detector(data):
                return definition.factory(data)
        if type(data) is dict or isinstance(data, Mapping):
            return construct(data)
        return data

    if not plain:
        return read

    def read_plain(data: Any) -> Any:
        # The common case in one call; anything else (None, a list, an extra or a
        # missing key) fails here and takes the general way.
        try:
            return cls(**data)
        except TypeError:
            return read(data)

    return read_plain


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

    def command_class(self, command_type: str) -> type | None:
        """The class registered under ``command_type``, or ``None``."""
        return self._table.get(command_type)

    def create_command(self, command_type: str, data: Mapping[str, Any] | None = None) -> Any:
        """A new command of ``command_type``, built from ``data`` when given. An unknown type
        gives a new mutable mapping (of ``data``), as Go's ``make(map[string]interface{})``."""
        cls = self._table.get(command_type)
        if cls is None:
            return {} if data is None else dict(data)
        return cls() if data is None else build(cls, data)


def new_standard_event_registry(domain: str) -> StandardEventRegistry:
    return StandardEventRegistry(domain)


def new_standard_command_registry(domain: str) -> StandardCommandRegistry:
    return StandardCommandRegistry(domain)
