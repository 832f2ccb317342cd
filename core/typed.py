"""Which classes msgspec builds straight from their stored msgpack, in C, and the decoders that do.

msgspec reads a dataclass from its msgpack map faster than ``msgpack.unpackb`` reads the
map alone, but it reads only the layout it writes itself: a field whose stored value is
one of the codec's extensions (``datetime``, ``Decimal``, ``UUID``, ``tuple``, ``set``,
an int past 64 bits...) fails its typed decode. So a class decodes directly only when
every field is hinted with types the codec stores as plain msgpack, and msgspec builds
it as the general builder (``kvsourcing.structure``) would; any other class, and any
record that does not fit its class's hints, takes the general way.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from kvsourcing.structure import hints_if_resolved

ExtHook = Callable[[int, memoryview], Any]

_PLAIN = frozenset({str, int, float, bool, bytes, type(None), list, dict})
"""Hints whose values the codec stores as plain msgpack (an int past 64 bits, which is an
extension, fails the typed decode and takes the general way). msgspec reads an int stored
in a ``float`` field as a float (an equal value, exact up to 2**53), as the hint says."""


def _generated_init(cls: type) -> bool:
    """Whether ``cls.__init__`` is the one ``dataclasses`` wrote, taking every field: msgspec
    sets the fields without calling ``__init__`` (it does call ``__post_init__``)."""
    code = getattr(cls.__init__, "__code__", None)
    owner = next((c for c in cls.__mro__ if "__init__" in vars(c)), None)
    return (
        code is not None
        and code.co_filename == "<string>"  # dataclasses compiles the __init__ it writes
        and owner is not None
        and "__dataclass_fields__" in vars(owner)
        and all(f.init for f in dataclasses.fields(cls))
    )


def _direct(hint: Any, seen: set[type]) -> bool | None:
    """Whether values of ``hint`` decode directly (``None``: not known while hints do not resolve)."""
    if hint is Any or hint in _PLAIN:
        return True
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return True
        if dataclasses.is_dataclass(hint):
            return _direct_dataclass(hint, seen)
        return False
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _direct(args[0], seen)
    if origin is typing.Literal:
        return all(type(arg) in (str, int, bool) for arg in args)
    if origin in (list, dict, typing.Union, types.UnionType) and args:
        results = [_direct(arg, seen) for arg in args]
        return None if None in results else all(results)
    return False


def _direct_dataclass(cls: type, seen: set[type]) -> bool | None:
    if cls in seen:
        return True
    seen.add(cls)
    hints = hints_if_resolved(cls)
    if hints is None:
        return None
    if not _generated_init(cls):
        return False
    results = [_direct(hints.get(f.name, Any), seen) for f in dataclasses.fields(cls)]
    return None if None in results else all(results)


class DirectDecoders:
    """A msgspec decoder per class that decodes directly, made once (``None`` for a class
    that does not; asked again while its hints, or its fields' classes' hints, do not resolve)."""

    def __init__(self, ext_hook: ExtHook) -> None:
        self._ext_hook = ext_hook
        self._decoders: dict[type, msgspec.msgpack.Decoder[Any] | None] = {}

    def get(self, cls: type) -> msgspec.msgpack.Decoder[Any] | None:
        try:
            return self._decoders[cls]
        except KeyError:
            pass
        if not dataclasses.is_dataclass(cls):
            self._decoders[cls] = None
            return None
        direct = _direct_dataclass(cls, set())
        if direct is None:
            return None
        decoder = None
        if direct:
            try:
                decoder = msgspec.msgpack.Decoder(cls, ext_hook=self._ext_hook)
            except (TypeError, NameError):  # a union of dataclasses, say: msgspec cannot pick the arm
                decoder = None
        self._decoders[cls] = decoder
        return decoder
