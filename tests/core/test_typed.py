"""kvsourcing.typed: which classes msgspec decodes straight from their bytes, and that it
then builds what the general builder builds."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NewType

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvsourcing import EncodingError, MsgpackCodec, StandardEventRegistry
from kvsourcing.registry import EventDefinition
from kvsourcing.structure import build
from kvsourcing.typed import DirectDecoders


class Size(enum.Enum):
    S = "s"
    L = "l"


@dataclass
class Leaf:
    name: str
    size: Size = Size.S


Sku = NewType("Sku", str)


@dataclass
class Flat:
    sku: Sku
    quantity: int
    price: float
    blob: bytes = b""
    tags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    leaf: Leaf | None = None
    mode: Literal["a", "b"] = "a"
    note: Annotated[str, "free text"] = ""


@dataclass
class Tree:
    children: list[Tree] = field(default_factory=list)


@dataclass
class Stamped:
    at: dt.datetime


@dataclass
class Nested:
    stamped: Stamped


@dataclass
class Pair:
    pair: tuple[int, int]


@dataclass
class Computed:
    a: int
    total: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.total = self.a * 2


@dataclass(init=False)
class OwnInit:
    a: int

    def __init__(self, a: int) -> None:
        self.a = a


def _hook(code: int, data: memoryview) -> Any:
    raise AssertionError("no extension expected")


@pytest.mark.parametrize("cls", [Flat, Leaf, Tree])
def test_classes_of_plain_fields_decode_directly(cls: type) -> None:
    assert DirectDecoders(_hook).get(cls) is not None


@pytest.mark.parametrize("cls", [Stamped, Nested, Pair, Computed, OwnInit, dict, int])
def test_classes_with_extension_fields_or_their_own_init_do_not(cls: type) -> None:
    """A datetime or tuple is stored as an extension, which msgspec's typed decode refuses;
    a class whose ``__init__`` is not the dataclass's must be built by calling it."""
    assert DirectDecoders(_hook).get(cls) is None


def test_a_direct_decode_builds_what_the_general_builder_builds() -> None:
    codec = MsgpackCodec()
    event = Flat(Sku("a"), 2, 1.5, b"\x00", ["t"], {"k": [1, (2, 3)]}, Leaf("x", Size.L), "b", "n")
    stored = codec.encode(event)
    assert codec.decode(stored, Flat) == event == build(Flat, codec.decode(stored))
    assert type(codec.decode(stored, Flat).leaf) is Leaf


def test_data_that_does_not_fit_the_hints_is_kept_as_stored() -> None:
    codec = MsgpackCodec()
    stored = msgpack.packb({"sku": 5, "quantity": "many", "price": 1.0, "future": True})
    assert codec.decode(stored, Flat) == Flat(5, "many", 1.0)  # type: ignore[arg-type]


def test_an_int_in_a_float_field_reads_back_as_an_equal_float() -> None:
    back = MsgpackCodec().decode(MsgpackCodec().encode(Flat("a", 1, 3)), Flat)  # type: ignore[arg-type]
    assert back.price == 3 and type(back.price) is float


def test_a_record_with_a_fourth_item_is_not_an_event() -> None:
    registry = StandardEventRegistry("typed")
    registry.register_event(Leaf)
    codec = MsgpackCodec()
    good = codec.encode(["Leaf", Leaf("a"), "typed"])
    assert codec.decode_events([good], registry) == [Leaf("a")]
    with pytest.raises(EncodingError, match="not an event"):
        codec.decode_events([codec.encode(["Leaf", Leaf("a"), "typed", 1])], registry)


def test_stored_event_classes_name_the_classes_built_from_their_fields_alone() -> None:
    registry = StandardEventRegistry("typed")
    registry.register_event(Leaf)
    before = registry.stored_event_classes()
    assert before is registry.stored_event_classes() and before == {("Leaf", Leaf)}
    registry.register_event(Flat, EventDefinition(lambda data: "old" in data, lambda data: Flat("", 0, 0.0)))
    assert registry.stored_event_classes() == {("Leaf", Leaf), ("Flat", None)}


@dataclass
class Early:
    later: Later  # noqa: F821 (defined by the test below, after a first load)


@dataclass
class _Later:
    n: int


def test_a_class_whose_hints_resolve_later_decodes_directly_once_they_do(monkeypatch: Any) -> None:
    """Until ``Later`` exists, ``Early`` takes the general way, and its registry's record
    decoder is kept; it is made again once ``Later`` exists, and then builds ``Early``."""
    registry = StandardEventRegistry("later")
    registry.register_event(Early)
    decoders = DirectDecoders(_hook)
    before = decoders.records(registry.stored_event_classes())
    assert before is not None and set(before.raw_types.values()) == {"Early"}
    assert decoders.records(registry.stored_event_classes()) is before
    monkeypatch.setitem(globals(), "Later", _Later)
    after = decoders.records(registry.stored_event_classes())
    assert after is not before and after is not None and not after.raw_types
    record = msgpack.packb(["Early", {"later": {"n": 3}}, "later"])
    assert after.decode(record).data == Early(_Later(3))


@settings(max_examples=150, deadline=None)
@given(
    sku=st.text(),
    quantity=st.integers(-(2**63), 2**64 - 1),
    price=st.floats(allow_nan=False),
    blob=st.binary(),
    tags=st.lists(st.text(), max_size=3),
    extra=st.dictionaries(st.text(), st.none() | st.booleans() | st.integers() | st.text(), max_size=3),
    leaf=st.none() | st.builds(Leaf, st.text(), st.sampled_from(Size)),
)
def test_property_the_direct_decode_equals_the_general_one(
    sku: str, quantity: int, price: float, blob: bytes, tags: list[str], extra: dict[str, Any], leaf: Any
) -> None:
    codec = MsgpackCodec()
    stored = codec.encode(Flat(Sku(sku), quantity, price, blob, tags, extra, leaf))
    direct, general = codec.decode(stored, Flat), build(Flat, codec.decode(stored))
    assert direct == general and type(direct.leaf) is type(general.leaf)
