"""``Transcoder``: how a key-value store turns events and state into stored records and
back: the codec, then the mapper (compression, encryption), with every check that says
which record or attribute is wrong. ``StoreLogic`` builds on it."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kvsourcing.codecs import Codec, batch_method, decode_all, encode_all
from kvsourcing.errors import EncodingError, UnknownEventTypeError
from kvsourcing.mapper import EVENT, PLAIN, SNAPSHOT, Mapper
from kvsourcing.protocols import EventRegistry, StoreWriterAdapter
from kvsourcing.structure import public_attributes, unrestorable_attribute


@dataclass(frozen=True, slots=True)
class KeyedEvent:
    """A stored event as plain data: its aggregate, sequence, type name and decoded fields,
    and its commit's id and time (``None`` for events stored before commits kept them)."""

    key: str
    sequence: int
    event_type: str
    data: Any
    domain: str = ""
    commit_id: str | None = None
    recorded_at: dt.datetime | None = None


class Transcoder:
    """Events and state to records and back, with the store's codec and mapper."""

    _codec: Codec
    _mapper: Mapper
    _encode_many: Callable[[Sequence[Any]], list[bytes]]

    def _use_codec(self, codec: Codec) -> None:
        """Encode and decode with ``codec``; how it encodes a commit's events (its
        ``encode_many`` where that stands for its ``encode``, see ``encode_all``) is looked
        up here, once per store, not on every commit (an ``encode`` set on the codec object
        later is not seen)."""
        self._codec = codec
        encode_many = batch_method(codec, "encode", "encode_many")
        self._encode_many = encode_many or functools.partial(encode_all, codec)

    def _encode_events(
        self, registry: EventRegistry, key: str, committed: int, events: list[Any]
    ) -> list[bytes]:
        domain = registry.domain()
        items = []
        for event in events:
            event_type, known = registry.get_event_type(event)
            if not known:
                raise UnknownEventTypeError(
                    f"cannot commit {type(event).__qualname__} to {key!r}: its type is not registered "
                    f"in domain {domain!r}; call registry.register_event({type(event).__name__})"
                )
            items.append([event_type, event, domain])
        try:
            records = self._encode_many(items)
        except EncodingError:
            pass
        else:
            return self._mapper.wrap_records(key, committed + 1, records) if self._mapper.active else records
        for sequence, (event_type, event, _) in enumerate(items, start=committed + 1):
            try:
                self._codec.encode(event)
            except EncodingError as exc:
                raise EncodingError(
                    f"cannot commit event {event_type} to {key!r} at sequence {sequence}: {exc}"
                ) from exc
        raise EncodingError(f"cannot commit {len(items)} event(s) to {key!r}: the codec rejected them")

    def _encode_state(self, key: str, sequence: int, writer: StoreWriterAdapter) -> bytes:
        private: list[str] = getattr(writer, "private_state", list)()
        if private:
            raise EncodingError(
                f"cannot snapshot {key!r} at sequence {sequence}: attribute {private[0]!r} is private, "
                "so the snapshot would restore the aggregate without it; keep the state in public "
                "attributes, or give initialize() a state= function that returns the whole state "
                "(or name it in the class's transient_attributes if it is not state)"
            )
        state = writer.get_state()
        plain = public_attributes(state)
        unrestorable = unrestorable_attribute(state, plain)
        if unrestorable is not None:
            name, cls = unrestorable
            raise EncodingError(
                f"cannot snapshot {key!r} at sequence {sequence}: attribute {name!r} holds a "
                f"{cls.__qualname__} that no class-level type hint names, so the snapshot would "
                f"restore it as plain data; annotate the attribute on the class (for example "
                f"'{name}: {cls.__name__}' or '{name}: dict[str, {cls.__name__}]')"
            )
        try:
            return self._mapper.wrap(key, sequence, SNAPSHOT, self._codec.encode(plain))
        except EncodingError as exc:
            raise EncodingError(
                f"cannot snapshot {key!r} at sequence {sequence}: {exc} "
                "(keep non-state attributes private, with a leading underscore)"
            ) from exc

    def _decode_events(
        self, key: str, first: int, records: Sequence[bytes], registry: EventRegistry
    ) -> list[Any]:
        """The records as ``registry``'s events, every one built before any is replayed:
        in one pass by the codec's ``decode_events`` when it stands for its ``decode``."""
        records = self._unwrapped(key, first, records)
        decode_events = batch_method(self._codec, "decode", "decode_events")
        if decode_events is not None:
            try:
                events: list[Any] = decode_events(records, registry)
                return events
            except EncodingError:
                pass  # the general way below says which record is wrong
        create_event = registry.create_event
        return [
            create_event(event_type, data)
            for event_type, data, _ in self._decode_unwrapped(key, first, records)
        ]

    def _unwrapped(self, key: str, first: int, records: Sequence[bytes]) -> Sequence[bytes]:
        """The records as the codec wrote them: decrypted and decompressed when the store
        has a mapper (framed records read by a store without one are unframed one by one)."""
        return self._mapper.unwrap_records(key, first, records) if self._mapper.active else records

    def _decode_records(self, key: str, first: int, records: Sequence[bytes]) -> list[Any]:
        """The records as ``[type, data, domain]`` lists, every one checked before any is used."""
        return self._decode_unwrapped(key, first, self._unwrapped(key, first, records))

    def _decode_unwrapped(self, key: str, first: int, records: Sequence[bytes]) -> list[Any]:
        try:
            values = decode_all(self._codec, records)
        except EncodingError:  # one by one, to name the bad record, or to read framed ones without a mapper
            values = [
                self._read(key, sequence, EVENT, record, PLAIN)
                for sequence, record in enumerate(records, first)
            ]
        if not all(type(value) is list and len(value) == 3 and type(value[0]) is str for value in values):
            for sequence, value in enumerate(values, first):
                _check_record(key, sequence, value)
        return values

    def _read(self, key: str, sequence: int, kind: bytes, blob: bytes, mapper: Mapper | None = None) -> Any:
        """Decode a stored record or snapshot, unframed (decompressed, decrypted) by ``mapper``."""
        try:
            return self._codec.decode((mapper or self._mapper).unwrap(key, sequence, kind, blob))
        except EncodingError as exc:
            raise EncodingError(f"cannot read {key!r} at sequence {sequence}: {exc}") from exc

    def decode_record(self, key: str, sequence: int, record: bytes) -> KeyedEvent:
        """A stored record as plain data (its domain in ``KeyedEvent.domain``)."""
        value = self._read(key, sequence, EVENT, record)
        _check_record(key, sequence, value)
        event_type, data, domain = value
        return KeyedEvent(key, sequence, event_type, data, domain)


def utc(seconds: float) -> dt.datetime:
    """An aware UTC ``datetime`` of seconds since the epoch."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _check_record(key: str, sequence: int, value: Any) -> None:
    """Refuse a decoded value that is not a ``[type, data, domain]`` record."""
    if type(value) is not list or len(value) != 3 or type(value[0]) is not str:
        raise EncodingError(
            f"cannot read {key!r} at sequence {sequence}: the stored record is not an event "
            "([type, data, domain]); it was not written by kvsourcing, or is corrupt"
        )
