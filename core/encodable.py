"""Whether an event class's fields are types the default codecs can store, checked at
registration so that a class no store can write fails when it is registered, not at its
first commit in production.

The check reads type hints only (once per class), never values: a hint it cannot judge
(``Any``, ``object``, a type variable, an unresolvable forward reference) passes.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import enum
import functools
import typing
import uuid
from decimal import Decimal
from types import NoneType, UnionType
from typing import Any

ENCODABLE = (
    str,
    int,
    float,
    bool,
    bytes,
    NoneType,
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
    Decimal,
    uuid.UUID,
)
"""Leaf types both default codecs (msgpack and JSON) encode, besides containers,
dataclasses and enums (``kvsourcing.codecs``)."""

CONTAINERS = (list, tuple, set, frozenset, dict)

DESCRIPTION = (
    "dataclasses, enums, str, int, float, bool, bytes, None, datetime, date, time, timedelta, "
    "Decimal, UUID, and lists, tuples, sets and dicts of these"
)

_OPAQUE = (typing.Any, object)
_ABSTRACT_CONTAINERS = {
    getattr(collections.abc, name)
    for name in (
        "Sequence",
        "MutableSequence",
        "Set",
        "MutableSet",
        "Mapping",
        "MutableMapping",
        "Collection",
        "Iterable",
    )
}


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an unresolvable forward reference: judge nothing rather than guess
        return {}


def _unencodable(hint: Any, seen: frozenset[type]) -> Any:
    """The part of ``hint`` no default codec encodes, or ``None``."""
    if hint in _OPAQUE or isinstance(hint, (typing.TypeVar, str, typing.ForwardRef)):
        return None
    supertype = getattr(hint, "__supertype__", None)  # a NewType
    if supertype is not None:
        return _unencodable(supertype, seen)
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _unencodable(typing.get_args(hint)[0], seen)
    if origin is typing.Literal or origin is typing.ClassVar:
        return None
    if origin in (typing.Union, UnionType) or origin in CONTAINERS or origin in _ABSTRACT_CONTAINERS:
        for arg in typing.get_args(hint):
            if arg is not Ellipsis:
                found = _unencodable(arg, seen)
                if found is not None:
                    return found
        return None
    if origin is not None:  # another generic (a user's own Generic class, say): judge its class
        return _unencodable(origin, seen)
    if not isinstance(hint, type):
        return None
    if hint in _ABSTRACT_CONTAINERS:
        return None
    if dataclasses.is_dataclass(hint):
        return unencodable_field(hint, seen)[1] if hint not in seen else None
    if issubclass(hint, (enum.Enum, *ENCODABLE, *CONTAINERS)):
        return None
    return hint


def unencodable_field(cls: type, seen: frozenset[type] = frozenset()) -> tuple[str, Any] | tuple[None, None]:
    """``(field, type)`` of the first field of dataclass ``cls`` (nested ones searched) whose
    hinted type no default codec encodes, or ``(None, None)``."""
    if not dataclasses.is_dataclass(cls):
        return None, None
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        found = _unencodable(hints.get(field.name, Any), seen | {cls})
        if found is not None:
            return field.name, found
    return None, None


@functools.cache
def encoding_problem(cls: type) -> str | None:
    """Why the default codecs cannot store instances of ``cls``, or ``None`` (cached per class)."""
    name, found = unencodable_field(cls)
    if name is None:
        return None
    shown = getattr(found, "__qualname__", repr(found))
    return (
        f"field {name!r} of {cls.__qualname__} is typed {shown}, which the default codecs cannot "
        f"encode (they encode {DESCRIPTION})"
    )
