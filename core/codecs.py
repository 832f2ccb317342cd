"""Codecs turn events and snapshots into bytes: msgpack by default, JSON for readable stores.

Both give back equal objects for dataclasses (nested too, rebuilt from type hints),
``datetime`` (its offset kept, and its IANA zone when it is a ``ZoneInfo``), ``date``,
``time``, ``timedelta``, ``Decimal``, ``UUID``, enums, ``bytes``, ints of any size,
tuples, sets and frozensets. Neither ever unpickles: a value's class comes from the
caller, never from the stored data.

The msgpack codec writes with ``msgpack`` (types msgspec would write without a trace of
their type, such as a tuple or an offset-aware ``datetime``, are typed extensions) and
reads with msgspec: plain values with those extensions decoded, and an event of a class
of plain fields built straight from its bytes (``kvsourcing.typed``). The stored layout
is the one kvsourcing 0.1.0 wrote (``tests/fixtures/records-0.1.0.json``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import functools
import json
import math
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

import msgpack
import msgspec

from kvsourcing.errors import EncodingError
from kvsourcing.structure import build, dataclass_to_dict, datetime_text, fields_getter, parse_datetime
from kvsourcing.typed import DirectDecoders


@runtime_checkable
class Codec(Protocol):
    """Encodes an object to bytes and decodes bytes back, as ``cls`` when given."""

    def encode(self, obj: Any) -> bytes: ...

    def decode(self, data: bytes, cls: type | None = None) -> Any: ...


_DATETIME, _DATE, _TIME, _TIMEDELTA, _DECIMAL, _UUID, _TUPLE, _SET, _FROZENSET, _BIGINT = range(1, 11)


def _locate(obj: Any, fits: Callable[[Any], bool], path: str = "") -> str:
    """The path of the innermost part of ``obj`` that ``fits`` rejects, for error messages."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        children: list[tuple[str, Any]] = [(f"{path}.{k}", v) for k, v in dataclass_to_dict(obj).items()]
    elif isinstance(obj, dict):
        children = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
        children += [(f"{path} key {k!r}", k) for k in obj]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    else:
        children = []
    for child_path, child in children:
        if not fits(child):
            return _locate(child, fits, child_path)
    return path or "<value>"


def batch_method(codec: Any, single: str, batch: str) -> Callable[..., Any] | None:
    """``codec``'s batch method ``batch`` when it may stand in for ``single``; ``None`` when a
    subclass (or the instance) overrides ``single`` below the class that defines ``batch``:
    the batch would bypass the override for every record written or read."""
    if single in getattr(codec, "__dict__", ()):
        return None
    cls = type(codec)
    stands = _batches.get((cls, single, batch))
    if stands is None:
        mro = cls.__mro__
        batch_owner = next((i for i, c in enumerate(mro) if batch in vars(c)), None)
        single_owner = next((i for i, c in enumerate(mro) if single in vars(c)), len(mro))
        stands = _batches[cls, single, batch] = batch_owner is not None and batch_owner <= single_owner
    return getattr(codec, batch) if stands else None


_batches: dict[tuple[type, str, str], bool] = {}


def encode_all(codec: Codec, objs: Sequence[Any]) -> list[bytes]:
    """Encode many objects with ``codec``, in one pass when it has an ``encode_many`` that
    stands for its ``encode``."""
    encode_many = batch_method(codec, "encode", "encode_many")
    if encode_many is not None:
        encoded: list[bytes] = encode_many(objs)
        return encoded
    return [codec.encode(obj) for obj in objs]


def decode_all(codec: Codec, blobs: Sequence[bytes]) -> list[Any]:
    """Decode many blobs with ``codec``, in one pass when it has a ``decode_many`` that
    stands for its ``decode``."""
    decode_many = batch_method(codec, "decode", "decode_many")
    if decode_many is not None:
        decoded: list[Any] = decode_many(blobs)
        return decoded
    return [codec.decode(blob) for blob in blobs]


def _enum_value(obj: enum.Enum) -> Any:
    return obj.value


def _int(obj: int) -> Any:
    """An int as msgpack packs it, or as an extension beyond msgpack's 64 bits."""
    value = int(obj)
    if -(2**63) <= value < 2**64:
        return value
    # Hex, not decimal: Python converts ints to decimal text in quadratic time, and refuses
    # past 4300 digits. Read back by ``int(text, 0)``, which takes decimal text too.
    return msgpack.ExtType(_BIGINT, hex(value).encode())


def _extension(code: int, to_bytes: Callable[[Any], bytes], obj: Any) -> Any:
    return msgpack.ExtType(code, to_bytes(obj))


def _unsupported(obj: Any) -> Any:
    raise TypeError(f"unsupported type {type(obj).__qualname__}")


def _set_or_items(kind: type[set[Any]] | type[frozenset[Any]], items: list[Any]) -> Any:
    """``kind(items)``, or ``items`` when some decode unhashable (frozen dataclasses are
    stored as mappings): a ``set[...]`` hint rebuilds them, and the data stays readable."""
    try:
        return kind(items)
    except TypeError:
        return items


def _dict_or_pairs(pairs: list[tuple[Any, Any]]) -> Any:
    """A map as a ``dict``, or as its ``(key, value)`` pairs when a key decodes unhashable."""
    try:
        return dict(pairs)
    except TypeError:
        return pairs


class MsgpackCodec:
    """The default codec: compact, fast, and safe (msgpack with typed extension codes)."""

    def __init__(self) -> None:
        self._packer_options = {
            "default": self._default,
            "strict_types": True,
            "use_bin_type": True,
        }
        self._conversions: dict[type, Callable[[Any], Any]] = {}
        self._spare_packers: list[msgpack.Packer] = []
        self._plain_decoder = msgspec.msgpack.Decoder(ext_hook=self._ext_hook)
        self._record_decoder = msgspec.msgpack.Decoder(tuple[str, msgspec.Raw, str])
        self._direct = DirectDecoders(self._ext_hook)
        # Checked in order: datetime before date, its base class.
        self._extensions: tuple[tuple[type, int, Callable[[Any], bytes]], ...] = (
            (dt.datetime, _DATETIME, lambda v: datetime_text(v).encode()),
            (dt.date, _DATE, lambda v: v.isoformat().encode()),
            (dt.time, _TIME, lambda v: v.isoformat().encode()),
            (dt.timedelta, _TIMEDELTA, lambda v: self._pack([v.days, v.seconds, v.microseconds])),
            (Decimal, _DECIMAL, lambda v: str(v).encode()),
            (uuid.UUID, _UUID, lambda v: v.bytes),
            (tuple, _TUPLE, lambda v: self._pack(list(v))),
            (frozenset, _FROZENSET, lambda v: self._pack(list(v))),
            (set, _SET, lambda v: self._pack(list(v))),
        )

    def _default(self, obj: Any) -> Any:
        """msgpack's hook for what it does not pack itself; the conversion is looked up
        once per type, so a commit of many events of one type pays for it once."""
        cls = type(obj)
        convert = self._conversions.get(cls)
        if convert is None:
            convert = self._conversions[cls] = self._conversion_for(cls)
        return convert(obj)

    def _conversion_for(self, cls: type) -> Callable[[Any], Any]:
        if dataclasses.is_dataclass(cls):
            return fields_getter(cls)
        if issubclass(cls, enum.Enum):
            return _enum_value
        if issubclass(cls, int):
            return _int
        for base, code, to_bytes in self._extensions:
            if issubclass(cls, base):
                return functools.partial(_extension, code, to_bytes)
        for plain in (dict, list, str, float, bytes):
            if issubclass(cls, plain):
                return plain
        return _unsupported

    def _pack(self, obj: Any) -> bytes:
        # msgpack is untyped (packb returns None only for a Packer with autoreset=False)
        return cast(bytes, msgpack.packb(obj, **self._packer_options))

    def _ext_hook(self, code: int, data: bytes | memoryview, pairs: bool = False) -> Any:
        if code == _DATETIME:
            return parse_datetime(bytes(data).decode())
        if code == _DATE:
            return dt.date.fromisoformat(bytes(data).decode())
        if code == _TIME:
            return dt.time.fromisoformat(bytes(data).decode())
        if code == _TIMEDELTA:
            return dt.timedelta(*self._unpack(data, pairs))
        if code == _DECIMAL:
            return Decimal(bytes(data).decode())
        if code == _UUID:
            return uuid.UUID(bytes=bytes(data))
        if code == _TUPLE:
            return tuple(self._unpack(data, pairs))
        if code == _SET:
            return _set_or_items(set, self._unpack(data, pairs))
        if code == _FROZENSET:
            return _set_or_items(frozenset, self._unpack(data, pairs))
        if code == _BIGINT:
            return int(bytes(data), 0)
        raise EncodingError(f"unknown msgpack extension code {code} in stored data")

    def _unpack(self, data: bytes | memoryview, pairs: bool = False) -> Any:
        """Unpack ``data``; ``pairs`` gives a map with an unhashable key as its pairs."""
        if not pairs:
            return self._plain_decoder.decode(data)
        return msgpack.unpackb(
            data,
            ext_hook=functools.partial(self._ext_hook, pairs=True),
            object_pairs_hook=_dict_or_pairs,
            strict_map_key=False,
            raw=False,
        )

    def _fits(self, obj: Any) -> bool:
        try:
            self._pack(obj)
        except Exception:
            return False
        return True

    def encode(self, obj: Any) -> bytes:
        """Pack ``obj``; an unsupported value raises ``EncodingError`` naming where it is."""
        try:
            return self._pack(obj)
        except RecursionError as exc:
            raise EncodingError("value is nested too deeply to encode") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            if "recursion limit" in str(exc):  # msgpack's nesting limit: locating it costs O(depth²)
                raise EncodingError(f"value is nested too deeply to encode ({exc})") from exc
            try:
                where = _locate(obj, self._fits)
            except RecursionError:
                where = "<value>"
            raise EncodingError(f"cannot encode {where}: {exc}") from exc

    def decode(self, data: bytes, cls: type | None = None) -> Any:
        """Unpack ``data``, rebuilt as ``cls`` when given: straight from the bytes by msgspec
        when ``cls`` decodes directly (``kvsourcing.typed``) and the data fits its hints."""
        if isinstance(cls, type):
            direct = self._direct.get(cls)
            if direct is not None:
                try:
                    return direct.decode(data)
                except msgspec.MsgspecError:
                    pass  # a value the hints do not describe: the general builder keeps it
        plain = self._plain(data)
        return plain if cls is None else build(cls, plain)

    def _plain(self, data: bytes | memoryview) -> Any:
        """``data`` as plain values, the codec's extensions decoded."""
        try:
            return self._plain_decoder.decode(data)
        except EncodingError:
            raise
        except Exception as exc:
            # A map key that decodes unhashable (a frozen dataclass) takes the slow way
            # that gives such a map as its pairs; anything else fails there too.
            try:
                return self._unpack(data, pairs=True)
            except EncodingError:
                raise
            except Exception:
                raise EncodingError(f"stored data is not valid msgpack: {exc}") from exc

    def encode_many(self, objs: Sequence[Any]) -> list[bytes]:
        """Encode many objects with one packer (faster); an unsupported value raises
        ``EncodingError``, which ``encode`` of that object alone locates.

        The packer is one of the codec's spares, taken and given back (``list.pop`` and
        ``append`` are atomic, so each thread packs with its own): a new one per commit
        costs as much as packing a small event."""
        spares = self._spare_packers
        try:
            packer = spares.pop()
        except IndexError:
            packer = msgpack.Packer(**self._packer_options)
        try:
            if len(objs) == 1:  # a commit's usual one event: a map and its list cost a third more
                return [packer.pack(objs[0])]
            return list(map(packer.pack, objs))
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            packer.reset()  # drop what the failed object left in the buffer
            raise EncodingError(f"cannot encode a value: {exc}") from exc
        finally:
            spares.append(packer)

    def decode_many(self, blobs: Sequence[bytes]) -> list[Any]:
        """Decode many blobs, each on its own (so that a corrupt one cannot borrow bytes
        from the next): in one comprehension, or one by one when some blob needs more."""
        decode = self._plain_decoder.decode
        try:
            return [decode(blob) for blob in blobs]
        except Exception:
            return [self._plain(blob) for blob in blobs]

    def decode_events(self, blobs: Sequence[bytes], registry: Any) -> list[Any]:
        """Stored ``[type, data, domain]`` records as ``registry``'s events, for a load.

        With a ``registry.stored_event_classes()``, each record is one msgspec call that
        builds the event of a class that decodes directly (``kvsourcing.typed``); the data
        of any other record is decoded and handed to ``registry.create_event``, as is a
        record that does not fit its class's hints. Raises ``EncodingError`` if a record is
        not ``[type, data, domain]``: the caller's general way then says which one.
        """
        classes = getattr(registry, "stored_event_classes", None)
        records = self._direct.records(frozenset() if classes is None else classes())
        header = self._record_decoder.decode
        create_event = registry.create_event
        plain = self._plain
        try:
            if records is None:
                return [create_event(event_type, plain(data)) for event_type, data, _ in map(header, blobs)]
            decode, raw_types = records.decode, records.raw_types
            events: list[Any] = []
            append = events.append
            for blob in blobs:
                try:
                    record = decode(blob)
                except msgspec.ValidationError:
                    event_type, data, _ = header(blob)
                    append(create_event(event_type, plain(data)))
                    continue
                raw_type = raw_types.get(type(record))
                append(record.data if raw_type is None else create_event(raw_type, plain(record.data)))
        except msgspec.MsgspecError as exc:
            raise EncodingError(f"a stored record is not an event ([type, data, domain]): {exc}") from exc
        return events


_JSON_INT_BITS = 14_000
"""Ints longer than this (about 4200 decimal digits) are written as tagged hex text."""


def _tag(kind: str, value: Any) -> dict[str, Any]:
    return {"$t": kind, "v": value}


class JsonCodec:
    """A human-readable codec: UTF-8 JSON, with ``{"$t": kind, "v": ...}`` for non-JSON types."""

    def _tree(self, obj: Any, path: str) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, enum.Enum):
            return self._tree(obj.value, path)
        if isinstance(obj, int):
            value = int(obj)
            # Past about 4300 digits Python will not write (or read) an int as decimal text.
            return _tag("int", hex(value)) if value.bit_length() > _JSON_INT_BITS else value
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else _tag("float", repr(obj))
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            obj = dataclass_to_dict(obj)
        if isinstance(obj, dict):
            if all(isinstance(k, str) for k in obj) and "$t" not in obj:
                return {k: self._tree(v, f"{path}[{k!r}]") for k, v in obj.items()}
            pairs = [[self._tree(k, f"{path} key"), self._tree(v, f"{path}[{k!r}]")] for k, v in obj.items()]
            return _tag("map", pairs)
        if isinstance(obj, list):
            return [self._tree(v, f"{path}[{i}]") for i, v in enumerate(obj)]
        for kind, typ in (("tuple", tuple), ("frozenset", frozenset), ("set", set)):
            if isinstance(obj, typ):
                return _tag(kind, [self._tree(v, f"{path}[{i}]") for i, v in enumerate(obj)])
        if isinstance(obj, (bytes, bytearray)):
            return _tag("bytes", base64.b64encode(obj).decode())
        if isinstance(obj, dt.timedelta):
            return _tag("timedelta", [obj.days, obj.seconds, obj.microseconds])
        if isinstance(obj, dt.datetime):
            return _tag("datetime", datetime_text(obj))
        if isinstance(obj, dt.date):
            return _tag("date", obj.isoformat())
        if isinstance(obj, dt.time):
            return _tag("time", obj.isoformat())
        if isinstance(obj, (Decimal, uuid.UUID)):
            return _tag(type(obj).__name__.lower(), str(obj))
        raise EncodingError(f"cannot encode {path or '<value>'}: unsupported type {type(obj).__qualname__}")

    _readers: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "float": float,
        "int": lambda text: int(text, 16),
        "map": _dict_or_pairs,
        "tuple": tuple,
        "set": functools.partial(_set_or_items, set),
        "frozenset": functools.partial(_set_or_items, frozenset),
        "bytes": base64.b64decode,
        "timedelta": lambda parts: dt.timedelta(*parts),
        "datetime": parse_datetime,
        "date": dt.date.fromisoformat,
        "time": dt.time.fromisoformat,
        "decimal": Decimal,
        "uuid": uuid.UUID,
    }

    def _hook(self, obj: dict[str, Any]) -> Any:
        if len(obj) == 2 and "$t" in obj and "v" in obj:
            reader = self._readers.get(obj["$t"])
            if reader is None:
                raise EncodingError(f"unknown JSON tag {obj['$t']!r} in stored data")
            value = obj["v"]
            if obj["$t"] == "map":
                value = [(_hashable(k), v) for k, v in value]
            return reader(value)
        return obj

    def encode(self, obj: Any) -> bytes:
        """Write ``obj`` as compact UTF-8 JSON; an unsupported value raises ``EncodingError``."""
        try:
            tree = self._tree(obj, "")
        except RecursionError as exc:
            raise EncodingError("value is nested too deeply to encode") from exc
        try:
            return json.dumps(tree, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:  # a lone surrogate in some str
            raise EncodingError(f"cannot encode {_locate(obj, self._fits)}: {exc}") from exc

    def _fits(self, obj: Any) -> bool:
        try:
            json.dumps(self._tree(obj, ""), ensure_ascii=False).encode()
        except Exception:
            return False
        return True

    def decode(self, data: bytes, cls: type | None = None) -> Any:
        """Read JSON written by ``encode``, rebuilt as ``cls`` when given."""
        try:
            plain = json.loads(data, object_hook=self._hook)
        except EncodingError:
            raise
        except Exception as exc:  # malformed JSON, or a tagged value that its reader rejects
            raise EncodingError(f"stored data is not valid JSON: {exc}") from exc
        return build(cls, plain)


def _hashable(key: Any) -> Any:
    """JSON arrays used as map keys come back as lists; make them tuples so they hash."""
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


DEFAULT_CODEC: Codec = MsgpackCodec()
