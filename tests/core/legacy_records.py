"""Values, events and snapshot states whose stored bytes, as kvsourcing 0.1.0 wrote them,
are checked in under ``tests/core/fixtures/records-0.1.0.json``; ``test_legacy_records`` reads
them back with today's code.

The fixture file was written once, by the 0.1.0 codecs (commit 07a1e01), with
``python tests/core/legacy_records.py``. Never regenerate it with later code: its point is
that it holds what the old release wrote. Add new cases to a new fixture file instead.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import pathlib
import uuid
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "records-0.1.0.json"

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
MINUS_330 = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
PLUS_545 = dt.timezone(dt.timedelta(hours=5, minutes=45))
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


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


@dataclass(frozen=True)
class Tag:
    name: str


class Pin(NamedTuple):
    x: int
    tag: Tag


@dataclass
class Card:
    number: str


@dataclass
class Transfer:
    iban: str
    reference: str = ""


@dataclass
class ItemAdded:
    """The benchmark's flat event."""

    sku: str
    quantity: int
    price: float


@dataclass
class Everything:
    """An event with a field of every supported type."""

    aware: dt.datetime
    zoned: dt.datetime
    naive: dt.datetime
    day: dt.date
    clock: dt.time
    span: dt.timedelta
    price: Decimal
    ident: uuid.UUID
    colour: Colour
    level: Level
    blob: bytes
    pair: tuple[int, str]
    rest: tuple[str, ...]
    tags: set[str]
    frozen: frozenset[int]
    by_int: dict[int, str]
    by_tuple: dict[tuple[int, int], Point]
    points: list[Point]
    paid: Card | Transfer
    pin: Pin
    history: Sequence[Tag]
    labels: frozenset[Tag]
    counts: dict[Tag, int]
    wei: int
    ratio: float
    maybe: Colour | None = None
    anything: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def everything() -> Everything:
    return Everything(
        aware=dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=MINUS_330),
        zoned=dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS),
        naive=dt.datetime(2026, 1, 2, 3, 4, 5),
        day=dt.date(1999, 12, 31),
        clock=dt.time(13, 14, 15, 16, tzinfo=dt.UTC),
        span=dt.timedelta(days=-2, seconds=5, microseconds=7),
        price=Decimal("-1234.5000"),
        ident=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        colour=Colour.GREEN,
        level=Level.HIGH,
        blob=b"\x00\x01\xfe\xff",
        pair=(1, "one"),
        rest=("a", "b"),
        tags={"a", "b"},
        frozen=frozenset({3, 4}),
        by_int={1: "one", -5: "minus five"},
        by_tuple={(1, 2): Point(3, 4)},
        points=[Point(1, 2), Point(-1, 0)],
        paid=Transfer("DE89", "rent"),
        pin=Pin(1, Tag("p")),
        history=(Tag("h"),),
        labels=frozenset({Tag("x"), Tag("y")}),
        counts={Tag("x"): 2},
        wei=10**30,
        ratio=math.inf,
        maybe=Colour.RED,
        anything=[(1, 2), {3}, dt.date(2000, 1, 1)],
        extra={"nested": {"deep": [1.5, None, True]}},
    )


def plain_values() -> dict[str, Any]:
    """Values without a class: each must come back with its own type."""
    return {
        "datetime-offset": dt.datetime(2026, 3, 1, 12, 0, tzinfo=PLUS_545),
        "datetime-utc": dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
        "datetime-naive": dt.datetime(2026, 3, 1, 12, 0, 0, 1),
        "datetime-zoned": dt.datetime(2026, 7, 1, 9, 0, tzinfo=PARIS),
        "datetime-zoned-fold": dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS),
        "datetime-zoned-gap": dt.datetime(2026, 3, 29, 2, 30, tzinfo=PARIS),
        "datetime-zoned-year-1": dt.datetime(1, 1, 1, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo")),
        "datetime-zoned-year-9999": dt.datetime(9999, 12, 31, 23, 59, tzinfo=NEW_YORK),
        "date": dt.date(2026, 3, 1),
        "time": dt.time(0, 0),
        "time-aware": dt.time(23, 59, 59, 999999, tzinfo=dt.UTC),
        "timedelta": dt.timedelta(days=10**6, microseconds=-1),
        "timedelta-zero": dt.timedelta(0),
        "decimal": Decimal("0.1"),
        "decimal-exponent": Decimal("1E+30"),
        "uuid": uuid.UUID("0f0e0d0c-0b0a-0908-0706-050403020100"),
        "bytes-empty": b"",
        "bytes": b"\xff" * 300,
        "tuple-empty": (),
        "tuple-nested": (1, (2, (3,))),
        "set-empty": set(),
        "set": {1, "x", (2, 3)},
        "frozenset-nested": frozenset({frozenset({1})}),
        "dict-int-keys": {1: "a", 2: {3: "b"}},
        "dict-tuple-keys": {(1, "x"): [1], (2, "y"): (2,)},
        "dict-looks-tagged": {"$t": "tuple", "v": [1, 2]},
        "dict-mixed-keys": {"str": 1, 3: "mixed"},
        "scalars": [None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, "ü€\x00"],
        "floats-non-finite": {"nan": math.nan, "inf": math.inf, "-inf": -math.inf},
        "int-2-64": 2**64,
        "int-below-int64": -(2**63) - 1,
        "int-huge": 10**5000,
        "int-huge-negative": -(10**5000) - 7,
        "enum": Colour.RED,
        "intenum": Level.LOW,
        "dataclass-as-mapping": Point(5, 6),
    }


@dataclass
class Detail:
    at: dt.datetime
    amount: Decimal
    tags: tuple[str, ...] = ()


@dataclass
class Audited:
    id: uuid.UUID
    detail: Detail
    when: dt.date
    blob: bytes
    labels: set[str] = field(default_factory=set)
    scores: dict[int, float] = field(default_factory=dict)


@dataclass
class Renamed:
    name: str


def events() -> list[Any]:
    """The events of the stored stream, in order (a store writes ``[type, event, domain]``)."""
    return [
        ItemAdded("sku-000001", 2, 9.99),
        everything(),
        Audited(
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            Detail(dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC), Decimal("10.50"), ("x", "y")),
            dt.date(2026, 1, 1),
            b"\x00raw",
            {"one"},
            {1: 0.5, 2: -1.0},
        ),
        Renamed("renamed"),
        ItemAdded("sku-000002", 1, 0.5),
    ]


def snapshot_states() -> dict[str, dict[str, Any]]:
    """Aggregate states as a snapshot stores them (their public attributes)."""
    return {
        "counter": {"count": 3, "name": "shop", "audits": [events()[2]]},
        "plain": {"count": 5, "seen": {"x"}, "since": dt.datetime(2026, 1, 1, tzinfo=PARIS), "ids": (1, 2)},
        "rich": {
            "since": dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS),
            "seen": {"a", "b"},
            "pairs": {(1, 2): "x"},
            "tags": frozenset({Tag("t")}),
            "points": [Point(1, 2)],
            "total": Decimal("3.30"),
            "wei": 10**40,
        },
    }


DOMAIN = "legacy"


def _write() -> None:
    """Write the fixture file with the codecs and store of the checked-out code."""
    from kvsourcing import JsonCodec, MsgpackCodec, StandardEventRegistry
    from kvsourcing.stores import memory

    fixture: dict[str, Any] = {}
    for name, codec in (("msgpack", MsgpackCodec()), ("json", JsonCodec())):
        registry = StandardEventRegistry(DOMAIN)
        for cls in (ItemAdded, Everything, Audited, Renamed):
            registry.register_event(cls)
        store = memory.new_store(codec=codec, snapshot_interval=5)
        writer_events = events()

        class Writer:
            def get_key(self) -> str:
                return "legacy-1"

            def get_event_registry(self) -> Any:
                return registry  # noqa: B023 (used within the iteration)

            def get_uncommitted_events(self) -> tuple[int, list[Any]]:
                return 0, writer_events  # noqa: B023

            def get_state(self) -> Any:
                return snapshot_states()["plain"]

        store.commit_events(Writer())
        loaded = store.driver.load("legacy-1", 0, use_snapshot=False)
        with_snapshot = store.driver.load("legacy-1", 0)
        fixture[name] = {
            "values": {key: codec.encode(value).hex() for key, value in plain_values().items()},
            "everything": codec.encode(everything()).hex(),
            "records": [record.hex() for record in loaded.records],
            "snapshots": {key: codec.encode(state).hex() for key, state in snapshot_states().items()},
            "store_snapshot": [with_snapshot.snapshot.sequence, with_snapshot.snapshot.state.hex()],
        }
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if FIXTURE.exists():
        raise SystemExit(f"{FIXTURE} exists: it holds what 0.1.0 wrote; never regenerate it")
    _write()
