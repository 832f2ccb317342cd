"""Turning objects into plain data and back, guided by dataclass fields and type hints.

Stored events are plain mappings, so a reader that does not know an event's class
still gets its data; a reader that does rebuilds the class, nested dataclasses and
enums included, from the class's type hints. Nothing is ever built from a class
name found in the data: the caller always names the class.

msgspec builds the common case in C, straight from stored msgpack (``kvsourcing.typed``);
this is the general way, for what msgspec does not do: values stored as the codec's
extensions, unions of dataclasses (the arm the fields fit), ``Sequence`` hints that keep
a stored tuple, maps keyed by frozen dataclasses, zoned times written by hand, classes
with their own ``__init__``, hints that do not resolve yet, and data that does not fit
its hints, which is kept as stored rather than refused or coerced (``msgspec.convert``
would, for one, read a ``str`` in a ``bytes`` field as base64).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import enum
import functools
import keyword
import sys
import types
import typing
import uuid
import zoneinfo
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from decimal import Decimal
from typing import Any, cast

from kvsourcing.errors import EncodingError

Converter = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def dataclass_to_dict(obj: Any) -> dict[str, Any]:
    """The fields of a dataclass instance as a shallow ``dict`` (codecs recurse)."""
    return fields_getter(obj.__class__)(obj)


@functools.cache
def fields_getter(cls: type) -> Callable[[Any], dict[str, Any]]:
    """``dataclass_to_dict`` for instances of ``cls``: a function made once per class
    that reads each field by name, as ``dataclasses`` makes ``__init__`` (every commit
    encodes its events through it; a comprehension over the names costs four times as much)."""
    names = _field_names(cls)
    if not all(name.isidentifier() and not keyword.iskeyword(name) for name in names):
        return lambda obj: {name: getattr(obj, name) for name in names}
    namespace: dict[str, Any] = {}
    fields = ", ".join(f"{name!r}: obj.{name}" for name in names)
    exec(f"def fields_of(obj):\n    return {{{fields}}}", namespace)  # field names only, all identifiers
    getter: Callable[[Any], dict[str, Any]] = namespace["fields_of"]
    return getter


def public_attributes(obj: Any) -> dict[str, Any]:
    """An object's state: its fields if a dataclass, else its public instance attributes."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclass_to_dict(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


_resolved_hints: dict[type, dict[str, Any]] = {}
_unresolved_hints: dict[type, tuple[int, ...]] = {}


def _namespaces(cls: type) -> tuple[int, ...]:
    """How many names the modules hints of ``cls`` are evaluated in hold, and how many
    modules are loaded: a hint that did not resolve may resolve once these grow."""
    modules = sys.modules
    return (len(modules), *(len(vars(modules[c.__module__])) for c in cls.__mro__ if c.__module__ in modules))


def _hints(cls: type) -> dict[str, Any]:
    """``cls``'s evaluated type hints, cached once they resolve (a forward reference
    that does not resolve yet is tried again once a name is defined or a module loaded,
    not on every call: evaluating them, and failing, is slow)."""
    hints = _resolved_hints.get(cls)
    if hints is None:
        namespaces = _namespaces(cls)
        if _unresolved_hints.get(cls) == namespaces:
            return {}
        try:
            hints = _resolved_hints[cls] = typing.get_type_hints(cls)
        except Exception:
            _unresolved_hints[cls] = namespaces
            return {}
        _unresolved_hints.pop(cls, None)
    return hints


def hints_if_resolved(cls: type) -> dict[str, Any] | None:
    """``cls``'s evaluated type hints, or ``None`` while some do not resolve."""
    hints = _hints(cls)
    return hints if cls in _resolved_hints else None


def datetime_text(value: dt.datetime) -> str:
    """``value`` in ISO 8601, followed by its IANA zone in brackets (as RFC 9557 writes
    it) when its zone is a named ``ZoneInfo``: the offset alone would lose the zone's
    later changes of offset (daylight saving time)."""
    text = value.isoformat()
    zone = value.tzinfo
    if isinstance(zone, zoneinfo.ZoneInfo) and zone.key:
        text += f"[{zone.key}]"
    return text


def parse_datetime(text: str) -> dt.datetime:
    """The ``datetime`` that ``datetime_text`` wrote (or any ISO 8601 text)."""
    if not text.endswith("]"):
        return dt.datetime.fromisoformat(text)
    instant, _, key = text[:-1].rpartition("[")
    try:
        zone = zoneinfo.ZoneInfo(key)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        raise EncodingError(f"stored time {text!r} names a time zone this machine does not know") from exc
    parsed = dt.datetime.fromisoformat(instant)
    if parsed.tzinfo is None:  # hand-written: a wall time in that zone
        return parsed.replace(tzinfo=zone)
    # The same wall time in the zone, with the fold that gives the stored offset: no
    # conversion, which overflows at the ends of the calendar and moves times in a gap.
    for fold in (0, 1):
        local = parsed.replace(tzinfo=zone, fold=fold)
        if local.utcoffset() == parsed.utcoffset():
            return local
    return parsed.astimezone(zone)  # the zone's rules changed since: the same instant


_FROM_TEXT: dict[Any, Callable[[str], Any]] = {
    dt.datetime: parse_datetime,
    dt.date: dt.date.fromisoformat,
    dt.time: dt.time.fromisoformat,
    Decimal: Decimal,
    uuid.UUID: uuid.UUID,
}
"""Types a hand-written mapping (a JSON scenario, an upcaster's input) may give as text."""


@functools.cache
def converter_for(hint: Any) -> Converter:
    """A function that turns plain data into a value of type ``hint`` (identity when none needed)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return functools.partial(build_dataclass, hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return lambda value: value if isinstance(value, hint) else hint(value)
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        return functools.partial(_build_named_tuple, hint)
    parse = _FROM_TEXT.get(hint)
    if parse is not None:
        return lambda value: parse(value) if isinstance(value, str) else value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:
            inner = converter_for(arms[0])
            if inner is _identity:
                return _identity
            return lambda value: None if value is None else inner(value)
        classes = _union_classes(arms)
        if not classes:
            return _identity

        def build_the_arm_that_fits(value: Any) -> Any:
            arm = union_arm(classes, value) if isinstance(value, Mapping) else None
            return value if arm is None else build_dataclass(arm, value)

        return build_the_arm_that_fits
    if origin in (list, set, frozenset) and args:
        inner = converter_for(args[0])
        if inner is _identity:
            return _identity if origin is list else lambda value: origin(value)
        return lambda value: origin(inner(v) for v in value)
    if origin in (collections.abc.Sequence, collections.abc.MutableSequence) and args:
        inner = converter_for(args[0])
        if inner is _identity:
            return _identity
        return lambda value: tuple(map(inner, value)) if isinstance(value, tuple) else list(map(inner, value))
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            inner = converter_for(args[0])
            return lambda value: tuple(inner(v) for v in value)
        convs = [converter_for(a) for a in args]
        return lambda value: tuple(c(v) for c, v in zip(convs, value, strict=False))
    if origin in (dict, Mapping, MutableMapping) and len(args) == 2:
        kconv, vconv = converter_for(args[0]), converter_for(args[1])
        if kconv is _identity and vconv is _identity:
            return _identity
        # A map whose keys decode unhashable (frozen dataclasses) is stored data's (key, value) pairs.
        return lambda value: {
            kconv(k): vconv(v) for k, v in (value.items() if isinstance(value, Mapping) else value)
        }
    return _identity


def _build_named_tuple(cls: type, value: Any) -> Any:
    """A ``NamedTuple`` from its stored items, converting each by its field's hint."""
    if isinstance(value, cls):
        return value
    hints = _hints(cls)
    return cls(
        *(
            converter_for(hints.get(name, Any))(v)
            for name, v in zip(cast(Any, cls)._fields, value, strict=False)
        )
    )


_plans: dict[type, tuple[tuple[str, Converter, bool], ...]] = {}


def _dataclass_plan(cls: type) -> tuple[tuple[str, Converter, bool], ...]:
    """``(field, converter, init?)`` of each field; cached once ``cls``'s hints resolve, so a
    class registered before a class its hints name is defined is converted once it is."""
    plan = _plans.get(cls)
    if plan is None:
        hints = _hints(cls)
        plan = tuple((f.name, converter_for(hints.get(f.name, Any)), f.init) for f in dataclasses.fields(cls))
        if cls in _resolved_hints:
            _plans[cls] = plan
    return plan


def _union_classes(arms: Sequence[Any]) -> tuple[type, ...]:
    """The dataclass arms of a union that a stored mapping picks between (``union_arm``);
    none when another arm may hold a mapping too (``dict``, ``Mapping``, ``Any``): then
    nothing stored says which arm a mapping was, so it stays as is."""
    for arm in arms:
        base = typing.get_origin(arm) or arm
        if base is Any or base is object:
            return ()
        try:
            if isinstance(base, type) and issubclass(base, Mapping):
                return ()
        except TypeError:
            pass
    return tuple(arm for arm in arms if isinstance(arm, type) and dataclasses.is_dataclass(arm))


def union_arm(classes: tuple[type, ...], data: Mapping[str, Any]) -> type | None:
    """The one dataclass of ``classes`` (a union's arms) that ``data`` fits: its keys are
    fields of the class, and they cover every field without a default. ``None`` when no
    class or several fit: nothing stored says which one it was, so the data stays as is."""
    fitting = [
        cls
        for cls in classes
        if data.keys() <= frozenset(_field_names(cls)) and _required_fields(cls) <= data.keys()
    ]
    return fitting[0] if len(fitting) == 1 else None


@functools.cache
def _required_fields(cls: type) -> frozenset[str]:
    return frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )


def build_dataclass(cls: type, data: Any) -> Any:
    """Build dataclass ``cls`` from a mapping, converting nested values by the field hints.

    Keys the class does not have are dropped (data written by a newer version);
    fields missing from the data take their defaults.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise EncodingError(f"cannot build {cls.__name__} from {type(data).__name__}: expected a mapping")
    kwargs: dict[str, Any] = {}
    late: dict[str, Any] = {}
    for name, convert, init in _dataclass_plan(cls):
        if name in data:
            (kwargs if init else late)[name] = convert(data[name])
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise EncodingError(f"cannot build {cls.__name__} from stored data: {exc}") from exc
    for name, value in late.items():
        object.__setattr__(obj, name, value)
    return obj


@functools.cache
def is_plain_dataclass(cls: type) -> bool:
    """Whether ``cls`` is a dataclass that ``cls(**stored_fields)`` builds: every field
    is an ``__init__`` argument whose stored value needs no conversion (which is not
    known, so not assumed, while its hints do not resolve)."""
    return (
        dataclasses.is_dataclass(cls)
        and all(convert is _identity and init for _, convert, init in _dataclass_plan(cls))
        and cls in _resolved_hints
    )


@functools.cache
def constructor_for(cls: type) -> Callable[[Mapping[str, Any]], Any]:
    """The fastest way to build ``cls`` from a mapping of its fields, worked out once.

    A dataclass whose fields need no conversion is built by ``cls(**data)``, falling
    back to ``build_dataclass`` for data of another shape (an extra or missing key).
    """
    if not dataclasses.is_dataclass(cls):
        return lambda data: cls(**data)
    if not is_plain_dataclass(cls):
        return functools.partial(build_dataclass, cls)

    def construct(data: Mapping[str, Any]) -> Any:
        try:
            return cls(**data)
        except TypeError:
            return build_dataclass(cls, data)

    return construct


def build(cls: type | None, data: Any) -> Any:
    """Build an instance of ``cls`` from plain data; ``None`` or a plain class gives ``data`` back."""
    if cls is None:
        return data
    if dataclasses.is_dataclass(cls):
        return build_dataclass(cls, data)
    return converter_for(cls)(data)


_SCALARS = (int, float, str, bytes, bool, type(None), Decimal, uuid.UUID, dt.datetime, dt.date, dt.time)


@functools.cache
def _holds_only_plain_data(hint: Any) -> bool:
    """Whether a value of type ``hint`` can hold no dataclass or enum (``dict[str, int]``,
    not ``dict``, ``Any`` or ``list[Item]``), so that it need not be searched for one."""
    if hint in _SCALARS or hint is dt.timedelta:
        return True
    args = typing.get_args(hint)
    return bool(typing.get_origin(hint) and args) and all(
        arg is Ellipsis or _holds_only_plain_data(arg) for arg in args
    )


_plain_fields: dict[type, bool] = {}


def _fields_hold_only_plain_data(cls: type) -> bool:
    """Whether every field of dataclass ``cls`` is hinted with plain data only (known once
    its hints resolve), so that its instances need no search."""
    known = _plain_fields.get(cls)
    if known is not None:
        return known
    hints = _hints(cls)
    if cls not in _resolved_hints:
        return False
    try:
        known = all(_holds_only_plain_data(hints.get(f.name, Any)) for f in dataclasses.fields(cls))
    except TypeError:
        known = False
    _plain_fields[cls] = known
    return known


def _single_arm(hint: Any) -> Any:
    """``X`` for ``X | None``; ``hint`` otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
        if len(arms) == 1:
            return arms[0]
    return hint


def _union_picks(hint: Any, value: Any) -> bool:
    """Whether ``hint`` is a union whose arms include ``value``'s class, and its stored
    fields would pick that arm back (``union_arm``)."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return False
    classes = _union_classes(typing.get_args(hint))
    return union_arm(classes, dataclass_to_dict(value)) is type(value)


def unnamed_class(value: Any, hint: Any = Any) -> type | None:
    """The first dataclass or enum class in ``value`` that ``hint`` does not name, or ``None``.

    Such a value is stored as plain data and comes back as plain data (a mapping, a bare
    value): a snapshot holding one would restore a state unlike the replayed one.
    """
    try:
        if _holds_only_plain_data(hint):
            return None
    except TypeError:  # an unhashable hint (say, Annotated with a list): search the value
        pass
    hint = _single_arm(hint)
    cls = type(value)
    if isinstance(value, enum.Enum):
        return None if hint is cls else cls
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hint is not cls and not _union_picks(hint, value):
            return cls
        if _fields_hold_only_plain_data(cls):
            return None
        hints = _hints(cls)
        parts = [(getattr(value, f.name), hints.get(f.name, Any)) for f in dataclasses.fields(value)]
    elif (
        isinstance(value, tuple)
        and hint is cls
        and isinstance(names := getattr(value, "_fields", None), tuple)
    ):
        hints = _hints(cls)
        parts = [(item, hints.get(name, Any)) for name, item in zip(names, value, strict=False)]
    else:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if isinstance(value, Mapping):
            key_hint, value_hint = args if len(args) == 2 and origin is not tuple else (Any, Any)
            parts = [(part, h) for k, v in value.items() for part, h in ((k, key_hint), (v, value_hint))]
        elif isinstance(value, list | tuple | set | frozenset):
            if origin is tuple and args and args[-1] is not Ellipsis:
                parts = list(zip(value, args, strict=False))
            else:
                parts = [(item, args[0] if args else Any) for item in value]
        else:
            return None
    for part, part_hint in parts:
        found = unnamed_class(part, part_hint)
        if found is not None:
            return found
    return None


def unrestorable_attribute(state: Any, attributes: Mapping[str, Any]) -> tuple[str, type] | None:
    """``(attribute, class)`` of the first of ``attributes`` (``state``'s public ones) holding
    a dataclass or enum that ``restore_attributes`` would give back as plain data, or ``None``."""
    hints = {} if isinstance(state, Mapping) else _hints(type(state))
    for name, value in attributes.items():
        found = unnamed_class(value, hints.get(name, Any))
        if found is not None:
            return name, found
    return None


def restore_attributes(target: Any, data: Mapping[str, Any]) -> None:
    """Set ``target``'s attributes from a mapping in place, converting by its class's hints."""
    if isinstance(target, MutableMapping):
        target.update(data)
        return
    hints = _hints(type(target))
    for name, value in data.items():
        object.__setattr__(target, name, converter_for(hints.get(name, Any))(value))
