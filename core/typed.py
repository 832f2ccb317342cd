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
    code = getattr(getattr(cls, "__init__", None), "__code__", None)
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
    supertype = getattr(hint, "__supertype__", None)  # a NewType
    if supertype is not None:
        return _direct(supertype, seen)
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


_MAX_RECORD_DECODERS = 64
"""Record decoders kept per codec (one per distinct set of registered event classes)."""


class DirectDecoders:
    """A msgspec decoder per class that decodes directly, made once (``None`` for a class
    that does not; asked again while its hints, or its fields' classes' hints, do not resolve),
    and per registry's set of event classes a decoder of whole records."""

    def __init__(self, ext_hook: ExtHook) -> None:
        self._ext_hook = ext_hook
        self._decoders: dict[type, msgspec.msgpack.Decoder[Any] | None] = {}
        self._records: dict[
            frozenset[tuple[str, type | None]], tuple[RecordDecoder | None, tuple[type, ...]]
        ] = {}

    def records(self, classes: frozenset[tuple[str, type | None]]) -> RecordDecoder | None:
        """The ``RecordDecoder`` of a registry's ``(type name, class or None)`` pairs
        (``StandardEventRegistry.stored_event_classes``); ``None`` for none. Made again only
        once a class whose hints did not resolve is known to decode directly or not."""
        if not classes:
            return None
        cached = self._records.get(classes)
        if cached is not None:
            found, pending = cached
            if not any(self.get(cls) is not None or cls in self._decoders for cls in pending):
                return found
        direct = {name: self.get(cls) if cls is not None else None for name, cls in classes}
        try:
            found = RecordDecoder(
                {name: cls for name, cls in classes if cls is not None and direct[name] is not None},
                set(direct),
                self._ext_hook,
            )
        except TypeError:  # a union msgspec refuses: each record then goes through its header
            found = None
        if len(self._records) >= _MAX_RECORD_DECODERS:
            self._records.clear()
        pending = tuple(cls for _, cls in classes if cls is not None and cls not in self._decoders)
        self._records[classes] = found, pending
        return found

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


class RecordDecoder:
    """Decodes a stored ``[type, data, domain]`` record in one msgspec call, the type name
    picking the arm of a tagged union: the record of a class that decodes directly comes
    back with its event built, any other registered type with its data as ``msgspec.Raw``
    (its name in ``raw_types``). A record of an unregistered type, one whose data does not
    fit its class, or one that is not exactly three items raises ``msgspec.ValidationError``."""

    def __init__(self, direct: dict[str, type], names: set[str], ext_hook: ExtHook) -> None:
        arms = {name: _record_struct(name, direct.get(name, msgspec.Raw)) for name in sorted(names)}
        self.raw_types = {arm: name for name, arm in arms.items() if name not in direct}
        union: Any = typing.Union[tuple(arms.values())]  # noqa: UP007 (built at run time)
        self.decode = msgspec.msgpack.Decoder(union, ext_hook=ext_hook).decode


def _record_struct(name: str, data: type) -> type:
    # ``end`` refuses a fourth item (a record not written by kvsourcing): nothing decodes as UNSET.
    return msgspec.defstruct(
        "StoredRecord",
        [("data", data), ("domain", str), ("end", msgspec.UnsetType, msgspec.UNSET)],
        array_like=True,
        tag=name,
        tag_field="type",
        gc=False,
    )
