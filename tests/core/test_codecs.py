"""MsgpackCodec and JsonCodec: round trips of every supported type, errors, no pickle."""

from __future__ import annotations

import datetime as dt
import enum
import math
import pickle
import threading
import uuid
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvsourcing import (
    AggregateBase,
    Codec,
    EncodingError,
    EventDefinition,
    JsonCodec,
    MsgpackCodec,
    StandardEventRegistry,
)
from kvsourcing.codecs import DEFAULT_CODEC
from kvsourcing.stores import memory

CODECS = [MsgpackCodec(), JsonCodec()]
IDS = ["msgpack", "json"]
codecs = pytest.mark.parametrize("codec", CODECS, ids=IDS)


class Colour(enum.Enum):
    RED = "red"
    GREEN = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Point:
    x: int
    y: int


@dataclass
class Inner:
    at: dt.datetime
    colour: Colour
    points: list[Point] = field(default_factory=list)


@dataclass
class Everything:
    inner: Inner
    aware: dt.datetime
    naive: dt.datetime
    day: dt.date
    clock: dt.time
    span: dt.timedelta
    price: Decimal
    ident: uuid.UUID
    level: Level
    blob: bytes
    pair: tuple[int, str]
    tags: set[str]
    frozen: frozenset[int]
    by_int: dict[int, str]
    by_tuple: dict[tuple[int, int], Point]
    maybe: Colour | None = None
    colours: list[Colour] = field(default_factory=list)


def everything() -> Everything:
    tz = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
    return Everything(
        inner=Inner(dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC), Colour.GREEN, [Point(1, 2)]),
        aware=dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=tz),
        naive=dt.datetime(2026, 1, 2, 3, 4, 5),
        day=dt.date(1999, 12, 31),
        clock=dt.time(13, 14, 15, 16),
        span=dt.timedelta(days=-2, seconds=5, microseconds=7),
        price=Decimal("-1234.5000"),
        ident=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        level=Level.HIGH,
        blob=b"\x00\x01\xfe\xff",
        pair=(1, "one"),
        tags={"a", "b"},
        frozen=frozenset({3, 4}),
        by_int={1: "one", -5: "minus five"},
        by_tuple={(1, 2): Point(3, 4)},
        maybe=Colour.RED,
        colours=[Colour.RED, Colour.GREEN],
    )


def round_trip(codec: Codec, value: Any, cls: type | None = None) -> Any:
    data = codec.encode(value)
    assert isinstance(data, bytes)
    return codec.decode(data, cls)


def test_msgpack_is_the_default_codec() -> None:
    assert isinstance(DEFAULT_CODEC, MsgpackCodec)
    assert isinstance(MsgpackCodec(), Codec) and isinstance(JsonCodec(), Codec)


@codecs
def test_dataclass_with_every_supported_type_round_trips(codec: Codec) -> None:
    original = everything()
    back = round_trip(codec, original, Everything)
    assert back == original
    assert type(back.inner) is Inner and type(back.inner.points[0]) is Point
    assert back.inner.colour is Colour.GREEN and back.maybe is Colour.RED and back.level is Level.HIGH
    assert back.colours == [Colour.RED, Colour.GREEN] and all(type(c) is Colour for c in back.colours)
    assert back.aware.utcoffset() == dt.timedelta(hours=-3, minutes=-30)
    assert back.inner.at.utcoffset() == dt.timedelta(0)
    assert back.naive.tzinfo is None
    assert str(back.price) == "-1234.5000"
    assert type(back.pair) is tuple and type(back.tags) is set and type(back.frozen) is frozenset
    assert type(back.by_tuple[(1, 2)]) is Point


@codecs
@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45))),
        dt.datetime(2026, 3, 1, 12, 0, 0, 1),
        dt.date(2026, 3, 1),
        dt.time(0, 0),
        dt.time(23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.timedelta(0),
        dt.timedelta(days=10**6, microseconds=-1),
        Decimal("0.1"),
        Decimal("1E+30"),
        uuid.uuid4(),
        b"",
        b"\xff" * 300,
        (),
        (1, (2, (3,))),
        set(),
        {1, "x", (2, 3)},
        frozenset({frozenset({1})}),
        {1: "a", 2: {3: "b"}},
        {(1, "x"): [1], (2, "y"): (2,)},
        {"$t": "tuple", "v": [1, 2]},
        {"str": 1, 3: "mixed"},
        [None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, "ü€\x00"],
    ],
    ids=repr,
)
def test_plain_values_round_trip_with_their_types(codec: Codec, value: Any) -> None:
    back = round_trip(codec, value)
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, dt.datetime | dt.time):
        assert back.utcoffset() == value.utcoffset()


@codecs
def test_naive_and_aware_datetimes_stay_apart(codec: Codec) -> None:
    naive, aware = dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    back_naive, back_aware = round_trip(codec, [naive, aware])
    assert back_naive.tzinfo is None
    assert back_aware.tzinfo is not None and back_aware == aware


@codecs
def test_enum_is_rebuilt_from_hints_only(codec: Codec) -> None:
    assert round_trip(codec, Colour.RED) == "red"
    assert round_trip(codec, Colour.RED, Colour) is Colour.RED
    assert round_trip(codec, [Colour.GREEN], list[Colour]) == [Colour.GREEN]


@codecs
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_round_trip(codec: Codec, value: float) -> None:
    back = round_trip(codec, {"f": value, "l": [value]})
    for got in (back["f"], back["l"][0]):
        assert isinstance(got, float)
        if math.isnan(value):
            assert math.isnan(got)
        else:
            assert got == value


@codecs
def test_nan_inside_a_dataclass(codec: Codec) -> None:
    @dataclass
    class Reading:
        value: float

    back = round_trip(codec, Reading(math.nan), Reading)
    assert isinstance(back, Reading) and math.isnan(back.value)


def test_json_codec_writes_readable_utf8_json() -> None:
    data = JsonCodec().encode({"name": "ü", "point": Point(1, 2)})
    assert data.decode("utf-8") == '{"name":"ü","point":{"x":1,"y":2}}'


@codecs
def test_unsupported_value_raises_encoding_error_naming_the_path(codec: Codec) -> None:
    with pytest.raises(EncodingError) as caught:
        codec.encode({"outer": [1, {"bad": object()}]})
    message = str(caught.value)
    assert "outer" in message and "bad" in message and "object" in message


@codecs
def test_unsupported_field_of_a_nested_dataclass_is_named(codec: Codec) -> None:
    @dataclass
    class Holder:
        point: Any

    with pytest.raises(EncodingError, match=r"point.*x|x.*point") as caught:
        codec.encode(Holder(Point(x=lambda: None, y=1)))  # type: ignore[arg-type]
    assert "function" in str(caught.value)


@codecs
@pytest.mark.parametrize("value", [object(), "\ud800", {"k": "lone \udfff surrogate"}], ids=repr)
def test_unencodable_values_raise_encoding_error(codec: Codec, value: Any) -> None:
    with pytest.raises(EncodingError):
        codec.encode(value)


@codecs
def test_too_deep_nesting_raises_encoding_error(codec: Codec) -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(EncodingError):
        codec.encode(deep)


GARBAGE = {
    "msgpack": [b"\xc1", b"\x01\x02", b"\x92\x01", b"\xd4\x05\x01", b"\xd4\x63\x01", b"\xd6\x01abcd"],
    "json": [
        b"not json",
        b"\xff\xfe\x00",
        b'{"a": 1',
        b'{"$t":"nope","v":1}',
        b'{"$t":"decimal","v":"x"}',
        b'{"$t":"timedelta","v":"abc"}',
        b'{"$t":"map","v":5}',
        b'{"$t":"uuid","v":5}',
        b'{"$t":"datetime","v":"yesterday"}',
    ],
}


@pytest.mark.parametrize(
    ("codec", "data"),
    [(c, d) for c, name in zip(CODECS, IDS, strict=True) for d in GARBAGE[name]],
    ids=[f"{name}-{d!r}" for name in IDS for d in GARBAGE[name]],
)
def test_garbage_bytes_raise_encoding_error(codec: Codec, data: bytes) -> None:
    with pytest.raises(EncodingError):
        codec.decode(data)


@codecs
def test_decoding_as_a_dataclass_from_a_non_mapping_raises_encoding_error(codec: Codec) -> None:
    with pytest.raises(EncodingError, match="Point"):
        codec.decode(codec.encode([1, 2]), Point)


def test_msgpack_codec_never_unpickles(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle used")

    for name in ("loads", "dumps", "load", "dump", "Unpickler", "Pickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    codec = MsgpackCodec()
    assert codec.decode(codec.encode(everything()), Everything) == everything()


def test_msgpack_codec_does_not_execute_a_pickle_payload() -> None:
    payload = pickle.dumps(Point(1, 2))
    for data in (payload, msgpack.packb(payload), msgpack.packb(msgpack.ExtType(1, payload))):
        try:
            result = MsgpackCodec().decode(data)
        except EncodingError:
            continue
        assert not isinstance(result, Point)


def test_msgpack_output_is_plain_msgpack_for_plain_data() -> None:
    data = MsgpackCodec().encode({"a": [1, "x", b"y", None, 1.5]})
    assert msgpack.unpackb(data) == {"a": [1, "x", b"y", None, 1.5]}


# property tests over nested plain structures

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.uuids()
    | st.dates()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.timedeltas()
)
hashables = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text() | st.binary(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
plain = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(), inner, max_size=4)
        | st.dictionaries(hashables, inner, max_size=3)
        | st.sets(hashables, max_size=3)
    ),
    max_leaves=12,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (so 1 and True, list and tuple differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return a == b


@codecs
@settings(max_examples=150, deadline=None)
@given(value=plain)
def test_property_plain_structures_round_trip(codec: Codec, value: Any) -> None:
    assert same(round_trip(codec, value), value)


@codecs
@settings(max_examples=50, deadline=None)
@given(x=st.integers(-(2**63), 2**63 - 1), y=st.integers(-(2**63), 2**63 - 1), tags=st.sets(st.text()))
def test_property_dataclasses_round_trip(codec: Codec, x: int, y: int, tags: set[str]) -> None:
    @dataclass
    class Tagged:
        point: Point
        tags: set[str]

    # the local class's hints do resolve: Point is a module global
    back = round_trip(codec, Tagged(Point(x, y), tags), Tagged)
    assert back == Tagged(Point(x, y), tags) and type(back.point) is Point


@dataclass(frozen=True)
class Tag:
    name: str


class Pin(NamedTuple):
    x: int
    tag: Tag


@dataclass
class Tagged:
    tags: frozenset[Tag] = frozenset()
    counts: dict[Tag, int] = field(default_factory=dict)
    point: Pin | None = None
    history: Sequence[Tag] = ()
    wei: int = 0


def _tagged_registry() -> StandardEventRegistry:
    reg = StandardEventRegistry("tags")
    reg.register_event(Tagged)
    return reg


class Labels(AggregateBase):
    def __init__(self, key: str, store: Any) -> None:
        super().__init__()
        self._events: list[Tagged] = []
        self.initialize(key, _tagged_registry(), store)
        self.automatic_wireup()

    def replay_tagged(self, event: Tagged) -> None:
        self._events.append(event)


@codecs
def test_frozen_dataclasses_in_sets_and_dict_keys_are_readable_after_commit(codec: Any) -> None:
    """They encoded fine but decoded as unhashable dicts: the aggregate could never load again."""
    store = memory.new_store(codec=codec)
    event = Tagged(tags=frozenset({Tag("a"), Tag("b")}), counts={Tag("a"): 2})
    writer = Labels("labels-1", store)
    writer.apply_event(event)
    writer.commit()
    reader = Labels("labels-1", store)
    reader.refresh()
    assert reader._events == [event]
    assert store.read_events("labels-1")[0].sequence == 1


@codecs
def test_named_tuples_sequences_and_big_ints_round_trip(codec: Any) -> None:
    event = Tagged(point=Pin(1, Tag("p")), history=[Tag("h")], wei=10**30)
    restored = codec.decode(codec.encode(event), Tagged)
    assert restored == event
    assert restored.point.tag.name == "p" and restored.history[0].name == "h"


_early = StandardEventRegistry("early")


@_early.register_event
@dataclass
class Shipped:
    """Registered (by decorator) before ``Parcel``, which its hint names, is defined."""

    parcel: Parcel


@dataclass
class Parcel:
    weight: int


def test_event_registered_before_the_class_its_hint_names_is_still_rebuilt() -> None:
    """The unresolved hints were cached as "no conversion": ``parcel`` stayed a dict for ever."""
    codec = MsgpackCodec()
    stored = codec.decode(codec.encode(Shipped(Parcel(3))))
    assert _early.create_event("Shipped", stored) == Shipped(Parcel(3))
    assert codec.decode(codec.encode(Shipped(Parcel(4))), Shipped) == Shipped(Parcel(4))


@codecs
@pytest.mark.parametrize("fold", [0, 1])
def test_a_zoned_datetime_keeps_its_zone_so_later_arithmetic_follows_daylight_saving(
    codec: Codec, fold: int
) -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    ambiguous = dt.datetime(2026, 10, 25, 2, 30, fold=fold, tzinfo=paris)  # clocks go back at 3:00
    back = codec.decode(codec.encode({"at": ambiguous}))["at"]
    assert back.tzinfo is paris and back.utcoffset() == ambiguous.utcoffset()
    assert (back.replace(tzinfo=None), back.fold) == (ambiguous.replace(tzinfo=None), fold)
    assert (back + dt.timedelta(days=1)).utcoffset() == dt.timedelta(hours=1)


@codecs
def test_a_stored_zone_this_machine_does_not_know_is_an_encoding_error(codec: Codec) -> None:
    stored = codec.encode({"at": dt.datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))})
    with pytest.raises(EncodingError, match="time zone"):
        codec.decode(stored.replace(b"Europe/Paris", b"Europe/Xaris"))


@dataclass
class Card:
    number: str


@dataclass
class Transfer:
    iban: str
    reference: str = ""


@dataclass
class Twin:
    number: str


@dataclass
class Paid:
    by: Card | Transfer
    either: Card | Twin | None = None


@codecs
def test_a_union_of_dataclasses_is_rebuilt_as_the_one_arm_its_fields_fit(codec: Codec) -> None:
    for paid in (Paid(Card("4242")), Paid(Transfer("DE89")), Paid(Transfer("DE89", "rent"))):
        assert codec.decode(codec.encode(paid), Paid) == paid
    ambiguous = codec.decode(codec.encode(Paid(Card("1"), either=Twin("2"))), Paid)
    assert ambiguous.either == {"number": "2"}, "Card and Twin have the same fields: left as data"


@codecs
def test_ints_beyond_pythons_digit_limit_for_text_round_trip(codec: Codec) -> None:
    """Ints "of any size": the extension wrote them as decimal text, which Python refuses
    past 4300 digits (msgpack: EncodingError; JSON: a bare ValueError)."""
    for value in (10**5000, -(10**5000) - 7, 2**64, -(2**63) - 1, 10**30):
        assert codec.decode(codec.encode({"n": value}))["n"] == value


def test_a_big_int_stored_as_decimal_text_is_still_read() -> None:
    codec = MsgpackCodec()
    stored = msgpack.packb(msgpack.ExtType(10, str(-(10**30)).encode()))
    assert codec.decode(stored) == -(10**30)


@codecs
@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(1, 1, 1, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo")),  # before UTC's year 1
        dt.datetime(9999, 12, 31, 23, 59, tzinfo=zoneinfo.ZoneInfo("America/New_York")),  # after 9999
        dt.datetime(2026, 3, 29, 2, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),  # in the spring gap
        dt.datetime(2026, 3, 29, 2, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    ],
    ids=["year-1", "year-9999", "gap", "gap-fold"],
)
def test_a_zoned_datetime_at_the_edges_reads_back_as_written(codec: Codec, moment: dt.datetime) -> None:
    """Converting the stored instant to the zone overflowed at the ends of the calendar (an
    event that could be committed but never read again) and moved wall times in a gap."""
    back = codec.decode(codec.encode({"at": moment}))["at"]
    assert back == moment and back.tzinfo is moment.tzinfo
    assert (back.replace(tzinfo=None), back.utcoffset()) == (moment.replace(tzinfo=None), moment.utcoffset())


def test_a_hand_written_zoned_time_without_offset_is_wall_time_in_that_zone() -> None:
    @dataclass
    class Meeting:
        at: dt.datetime

    meeting = JsonCodec().decode(b'{"at": "2026-07-01T09:00[Europe/Paris]"}', Meeting)
    assert meeting.at == dt.datetime(2026, 7, 1, 9, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))


def test_hints_that_never_resolve_are_not_evaluated_again_on_every_decode(monkeypatch: Any) -> None:
    """Plans were cached only once hints resolve: a class whose hints never do (a name
    imported under TYPE_CHECKING, a class local to a function) re-ran ``get_type_hints``,
    raising, on every decode, about 20 times slower than before."""
    import typing

    @dataclass
    class Line:
        sku: str

    @dataclass
    class Ordered:
        line: Line  # local to this function: never resolves from the module

    calls = []
    real = typing.get_type_hints
    monkeypatch.setattr(typing, "get_type_hints", lambda *a, **k: calls.append(a) or real(*a, **k))
    codec = MsgpackCodec()
    stored = codec.encode(Ordered(Line("x")))
    for _ in range(50):
        assert codec.decode(stored, Ordered) == Ordered({"sku": "x"})  # type: ignore[arg-type]
    assert len(calls) <= 2


@dataclass
class Noted:
    body: Card | dict[str, str]


@codecs
def test_a_mapping_in_a_union_with_a_mapping_arm_stays_a_mapping(codec: Codec) -> None:
    """A ``dict`` arm fits every mapping, so nothing stored tells a dict from a ``Card``:
    a dict whose keys happened to be Card's fields came back as a Card."""
    noted = Noted({"number": "42"})
    assert codec.decode(codec.encode(noted), Noted) == noted


class NotedAggregate(AggregateBase):
    body: Card | dict[str, str]

    def __init__(self, key: str, store: Any) -> None:
        super().__init__()
        self.body = {}
        registry = StandardEventRegistry("noted")
        registry.register_event(Noted)
        self.initialize(key, registry, store)
        self.automatic_wireup()

    def replay_noted(self, event: Noted) -> None:
        self.body = event.body


def test_a_snapshot_keeps_a_mapping_in_a_union_with_a_mapping_arm() -> None:
    """A dict restored from a snapshot came back as a Card; and a Card, which a snapshot
    can only restore as a mapping, must be refused by the snapshot check."""
    store = memory.new_store(snapshot_interval=1)
    writer = NotedAggregate("noted-1", store)
    writer.apply_event(Noted({"number": "42"}))
    writer.commit()
    reader = NotedAggregate("noted-1", store)
    reader.refresh()
    assert reader.body == {"number": "42"}
    writer.apply_event(Noted(Card("42")))
    with pytest.raises(EncodingError, match="'body' holds a Card"):
        writer.commit()


class CountingCodec(MsgpackCodec):
    """A subclass that overrides ``encode`` and ``decode``: the store must use them (its
    ``decode`` refuses a record that its ``encode`` did not write)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[Any] = []
        self.decoded = 0

    def encode(self, obj: Any) -> bytes:
        self.encoded.append(obj)
        return b"v1" + super().encode(obj)

    def decode(self, data: bytes, cls: type | None = None) -> Any:
        self.decoded += 1
        if not data.startswith(b"v1"):
            raise EncodingError("not written by CountingCodec")
        return super().decode(data[2:], cls)


@dataclass
class Moved:
    to: int


class Mover(AggregateBase):
    at: int

    def __init__(self, key: str, store: Any) -> None:
        super().__init__()
        self.at = 0
        registry = StandardEventRegistry("movers")
        registry.register_event(Moved)
        self.initialize(key, registry, store)
        self.automatic_wireup()

    def replay_moved(self, event: Moved) -> None:
        self.at = event.to


def test_a_codec_subclass_that_overrides_encode_and_decode_is_used_for_every_record() -> None:
    """``encode_many`` (and the batch decoders) bypassed an overridden ``encode``/``decode``,
    silently: records were written without the subclass's framing."""
    codec = CountingCodec()
    store = memory.new_store(codec=codec, snapshot_interval=3)
    writer = Mover("mover-1", store)
    for to in range(1, 6):
        writer.apply_event(Moved(to))
        if to in (3, 5):
            writer.commit()
    assert len(codec.encoded) == 6, "5 records and 1 snapshot, each through encode"
    reader = Mover("mover-1", store)
    reader.refresh()
    assert reader.at == 5
    assert codec.decoded == 1 + 2, "the snapshot at 3 and the 2 records after it"
    assert [event.data for event in store.read_events("mover-1")] == [{"to": to} for to in range(1, 6)]
    assert codec.decoded == 3 + 5


def test_only_a_batch_defined_at_or_below_the_single_method_stands_for_it() -> None:
    from kvsourcing.codecs import batch_method

    class OwnBatch(CountingCodec):
        def encode_many(self, objs: Sequence[Any]) -> list[bytes]:
            return [self.encode(obj) for obj in objs]

    plain, counting, own = MsgpackCodec(), CountingCodec(), OwnBatch()
    assert batch_method(plain, "encode", "encode_many") is not None
    assert batch_method(counting, "encode", "encode_many") is None
    assert batch_method(counting, "decode", "decode_events") is None
    assert batch_method(own, "encode", "encode_many") is not None
    plain.encode = lambda obj: b""  # type: ignore[method-assign]
    assert batch_method(plain, "encode", "encode_many") is None


@dataclass
class Counted:
    """A flat event, which msgspec decodes straight from its bytes."""

    sku: str
    quantity: int
    price: float
    note: Any = None


@dataclass(init=False)
class Normalised:
    """Its own ``__init__``: msgspec, which does not call it, must not build it."""

    name: str

    def __init__(self, name: str) -> None:
        self.name = name
        self._built_by_init = True


@dataclass
class OldMoved:
    """``Moved`` as an older release wrote it."""

    where: int


@dataclass
class Vanished:
    """Written by a newer release: the reader does not know it."""

    x: int


class Mixed(AggregateBase):
    def __init__(self, key: str, store: Any, *, writer: bool = False) -> None:
        super().__init__()
        self.seen: list[Any] = []
        registry = StandardEventRegistry("mixed")
        for cls in (Counted, Normalised, Everything):
            registry.register_event(cls)
        if writer:
            registry.register_event(OldMoved, name="Moved")
            registry.register_event(Vanished)
        else:
            registry.register_event(
                Moved, EventDefinition(lambda data: "where" in data, lambda d: Moved(d["where"]))
            )
        self.initialize(key, registry, store)

    def replay_event(self, event: Any) -> None:
        self.seen.append(event)
        super().replay_event(event)


def test_a_load_builds_every_kind_of_record_as_the_general_builder_would() -> None:
    """Direct (msgspec) decoding for flat classes, the general way for the rest: a value that
    does not fit its hint, a class with its own ``__init__``, extension values, an upcast
    older revision and an unknown type all load as they did."""
    store = memory.new_store()
    writer = Mixed("mixed-1", store, writer=True)
    written = [
        Counted("a", 1, 1.5, note=[(1, 2), dt.date(2026, 1, 1)]),
        Counted("b", "two", 2.5),  # type: ignore[arg-type]
        Normalised("n"),
        everything(),
        Counted("c", 2**70, 0.5),
    ]
    for event in [*written, OldMoved(7), Vanished(1)]:
        writer.apply_event(event)
    writer.commit()
    reader = Mixed("mixed-1", store)
    reader.refresh()
    assert reader.seen == [*written, Moved(7), {"x": 1}]
    assert reader.seen[0].note == [(1, 2), dt.date(2026, 1, 1)]
    assert reader.seen[1].quantity == "two" and reader.seen[4].quantity == 2**70
    assert reader.seen[2]._built_by_init
    assert type(reader.seen[3].inner.points[0]) is Point and reader.sequence_number() == 7


class Truncating(MsgpackCodec):
    """Writes the record of ``Counted("bad", ...)`` cut short, as a corrupt store would hold it."""

    def encode(self, obj: Any) -> bytes:
        data = super().encode(obj)
        return data[:-3] if isinstance(obj, list) and getattr(obj[1], "sku", None) == "bad" else data


def test_a_corrupt_record_among_direct_ones_is_named_by_its_sequence() -> None:
    store = memory.new_store(codec=Truncating())
    writer = Mixed("mixed-2", store)
    for sku in ("good", "bad", "good"):
        writer.apply_event(Counted(sku, 1, 0.0))
    writer.commit()
    with pytest.raises(EncodingError, match=r"'mixed-2' at sequence 2"):
        Mixed("mixed-2", store).refresh()


def test_msgpack_encode_many_from_many_threads_gives_each_caller_its_own_bytes() -> None:
    """The codec reuses its packers: each thread must pack with its own, and a failed
    encoding must leave nothing behind for the next."""
    codec = MsgpackCodec()
    values = [[f"type-{n}", Point(n, -n), {"tags": ("a",) * (n % 5)}] for n in range(40)]
    expected = [codec.encode(value) for value in values]
    start = threading.Barrier(8)
    wrong: list[int] = []

    def encode() -> None:
        start.wait()
        for _ in range(50):
            for n, value in enumerate(values):
                if codec.encode_many([value]) != [expected[n]]:
                    wrong.append(n)
            with pytest.raises(EncodingError):
                codec.encode_many([[Point(1, 2), object()]])

    threads = [threading.Thread(target=encode) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert codec.encode_many(values) == expected
