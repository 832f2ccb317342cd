"""Records, values and snapshots written by kvsourcing 0.1.0 still read back as written."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import zoneinfo
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import legacy_records as legacy
import pytest

from kvsourcing import Codec, JsonCodec, MsgpackCodec, StandardEventRegistry
from kvsourcing.stores import memory
from kvsourcing.structure import restore_attributes

FIXTURE = json.loads(legacy.FIXTURE.read_text())
CODECS = {"msgpack": MsgpackCodec(), "json": JsonCodec()}
codecs = pytest.mark.parametrize("name", list(CODECS))


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 and True, list and tuple differ),
    datetimes with the same offset and zone, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dt.datetime | dt.time):
        return (a, a.utcoffset(), a.tzinfo, a.fold) == (b, b.utcoffset(), b.tzinfo, b.fold)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def as_stored(value: Any) -> Any:
    """What a value decodes to without its class: an enum's value, a dataclass's fields."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return value


def registry() -> StandardEventRegistry:
    reg = StandardEventRegistry(legacy.DOMAIN)
    for cls in (legacy.ItemAdded, legacy.Everything, legacy.Audited, legacy.Renamed):
        reg.register_event(cls)
    return reg


@codecs
@pytest.mark.parametrize("case", list(legacy.plain_values()))
def test_a_plain_value_reads_back_with_its_type(name: str, case: str) -> None:
    stored = bytes.fromhex(FIXTURE[name]["values"][case])
    expected = as_stored(legacy.plain_values()[case])
    assert same(CODECS[name].decode(stored), expected)


@codecs
def test_an_event_with_every_supported_type_reads_back_as_its_class(name: str) -> None:
    back = CODECS[name].decode(bytes.fromhex(FIXTURE[name]["everything"]), legacy.Everything)
    assert same(back, legacy.everything())
    assert back.zoned.tzinfo is zoneinfo.ZoneInfo("Europe/Paris") and back.zoned.fold == 1


def recording(name: str, blobs: list[bytes]) -> Codec:
    """The fixture's codec, writing ``blobs`` in turn in place of what it is asked to encode:
    a store then holds exactly what 0.1.0 wrote, and reads it back as it reads anything."""
    base = type(CODECS[name])

    class Recorded(base):  # type: ignore[valid-type,misc]
        def encode(self, obj: Any) -> bytes:
            return blobs.pop(0)

    return Recorded()  # type: ignore[no-any-return]


class _Adapter:
    """A minimal writer and reader of the fixture's aggregate."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.replayed: list[Any] = []
        self.snapshot: tuple[int, Any] | None = None
        self.registry = registry()

    def get_key(self) -> str:
        return "legacy-1"

    def sequence_number(self) -> int:
        return 0

    def get_event_registry(self) -> StandardEventRegistry:
        return self.registry

    def is_dirty(self) -> bool:
        return False

    def get_uncommitted_events(self) -> tuple[int, list[Any]]:
        return 0, self.events

    def get_state(self) -> Any:
        return legacy.snapshot_states()["plain"]

    def replay_event(self, event: Any) -> None:
        self.replayed.append(event)

    def restore_snapshot(self, sequence: int, state: Any) -> None:
        self.snapshot = sequence, state


def _stored(name: str, snapshot_interval: int) -> Any:
    """A memory store holding the fixture's records (and its snapshot, every 5 events)."""
    blobs = [bytes.fromhex(record) for record in FIXTURE[name]["records"]]
    if snapshot_interval:
        blobs.append(bytes.fromhex(FIXTURE[name]["store_snapshot"][1]))
    store = memory.new_store(codec=recording(name, blobs), snapshot_interval=snapshot_interval)
    store.commit_events(_Adapter(legacy.events()))
    assert not blobs, "every fixture record was stored"
    return store


@codecs
def test_a_stored_stream_replays_as_the_events_written(name: str) -> None:
    reader = _Adapter([])
    _stored(name, 0).refresh(reader)
    assert len(reader.replayed) == len(legacy.events())
    for got, written in zip(reader.replayed, legacy.events(), strict=True):
        assert same(got, written)


@codecs
def test_stored_records_read_as_plain_data(name: str) -> None:
    read = _stored(name, 0).read_events("legacy-1")
    assert [(e.sequence, e.event_type, e.domain) for e in read] == [
        (i, type(e).__name__, legacy.DOMAIN) for i, e in enumerate(legacy.events(), 1)
    ]
    assert read[0].data == {"sku": "sku-000001", "quantity": 2, "price": 9.99}


def test_the_msgpack_records_decode_as_events_in_one_pass() -> None:
    records = [bytes.fromhex(record) for record in FIXTURE["msgpack"]["records"]]
    events = MsgpackCodec().decode_events(records, registry())
    assert all(same(got, written) for got, written in zip(events, legacy.events(), strict=True))


@codecs
def test_a_stored_snapshot_restores_the_state_written(name: str) -> None:
    reader = _Adapter([])
    _stored(name, 5).refresh(reader)
    assert FIXTURE[name]["store_snapshot"][0] == 5
    assert reader.snapshot is not None and reader.snapshot[0] == 5 and reader.replayed == []
    assert same(reader.snapshot[1], legacy.snapshot_states()["plain"])


class Counter:
    count: int
    name: str
    audits: list[legacy.Audited]


class Rich:
    since: dt.datetime
    seen: set[str]
    pairs: dict[tuple[int, int], str]
    tags: frozenset[legacy.Tag]
    points: Sequence[legacy.Point]
    total: Decimal
    wei: int


@codecs
@pytest.mark.parametrize(("case", "cls"), [("counter", Counter), ("rich", Rich)])
def test_snapshot_states_restore_into_their_hinted_attributes(name: str, case: str, cls: type) -> None:
    target = cls()
    restore_attributes(target, CODECS[name].decode(bytes.fromhex(FIXTURE[name]["snapshots"][case])))
    for attribute, written in legacy.snapshot_states()[case].items():
        assert same(getattr(target, attribute), written), attribute


def test_every_codec_and_case_is_in_the_fixture() -> None:
    for name in CODECS:
        assert set(FIXTURE[name]["values"]) == set(legacy.plain_values())
        assert len(FIXTURE[name]["records"]) == len(legacy.events())


UNORDERED = {"set"}
"""Cases holding a set of strings, whose order (and so bytes) changes with str hashing."""


@codecs
@pytest.mark.parametrize("case", sorted(set(legacy.plain_values()) - UNORDERED))
def test_values_are_written_as_0_1_0_wrote_them(name: str, case: str) -> None:
    """The layout did not change: no format tag is needed to tell old records from new."""
    assert CODECS[name].encode(legacy.plain_values()[case]).hex() == FIXTURE[name]["values"][case]
