"""Event and command registries: registration, type names, building events, upcasting."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from kvsourcing import (
    CommandRegistry,
    EventDefinition,
    EventRegistry,
    StandardCommandRegistry,
    StandardEventRegistry,
    new_standard_command_registry,
    new_standard_event_registry,
)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Money:
    amount: int
    currency: str = "EUR"


@dataclass
class Deposited:
    money: Money
    colour: Colour = Colour.RED
    notes: list[Money] = field(default_factory=list)


@dataclass
class Closed:
    reason: str = ""


class Plain:
    def __init__(self, a: int = 0, b: int = 0) -> None:
        self.a, self.b = a, b


@dataclass
class Renamed:
    name: str


def test_new_registry_functions_and_domain() -> None:
    events = new_standard_event_registry("bank")
    commands = new_standard_command_registry("bank")
    assert isinstance(events, StandardEventRegistry) and events.domain() == "bank"
    assert isinstance(commands, StandardCommandRegistry) and commands.domain() == "bank"
    assert isinstance(events, EventRegistry)
    assert isinstance(commands, CommandRegistry)


def test_register_event_works_as_a_decorator_returning_the_class() -> None:
    reg = StandardEventRegistry("d")

    @reg.register_event
    @dataclass
    class Opened:
        owner: str

    assert isinstance(Opened, type) and Opened(owner="x").owner == "x"
    assert reg.get_event_type(Opened) == ("Opened", True)


def test_get_event_type_on_instance_and_class() -> None:
    reg = StandardEventRegistry("d")
    assert reg.register_event(Closed) is Closed
    event_type, found = reg.get_event_type(Closed("x"))
    assert (event_type, found) == ("Closed", True)
    assert isinstance(event_type, str)
    assert reg.get_event_type(Closed) == ("Closed", True)


def test_get_event_type_not_found_gives_the_name_and_false() -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Closed)
    assert reg.get_event_type(Renamed("x")) == ("Renamed", False)
    assert reg.get_event_type(Renamed) == ("Renamed", False)


def test_a_different_class_of_the_same_name_is_not_found() -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Closed)

    @dataclass
    class Closed2:
        pass

    Closed2.__qualname__ = "Closed"
    assert reg.get_event_type(Closed2) == ("Closed", False)


def test_registering_the_same_class_twice_is_fine() -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Closed)
    reg.register_event(Closed)
    assert reg.get_event_type(Closed) == ("Closed", True)


def test_duplicate_name_of_another_class_raises() -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Closed)

    class Other:
        pass

    Other.__qualname__ = "Closed"
    with pytest.raises(ValueError, match="Closed"):
        reg.register_event(Other)
    assert reg.get_event_type(Closed) == ("Closed", True)


def test_register_event_under_an_explicit_name() -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Renamed, name="RenamedV2")
    assert reg.get_event_type(Renamed("a")) == ("RenamedV2", True)
    assert reg.create_event("RenamedV2", {"name": "n"}) == Renamed("n")


def test_registering_a_class_again_under_another_name_renames_its_events() -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Renamed, name="RenamedV1")
    assert reg.get_event_type(Renamed("a")) == ("RenamedV1", True)
    reg.register_event(Renamed, name="RenamedV2")
    assert reg.get_event_type(Renamed("a")) == ("RenamedV2", True)
    assert reg.get_event_type(Renamed) == ("RenamedV2", True)


def test_register_event_refuses_an_instance() -> None:
    with pytest.raises(TypeError):
        StandardEventRegistry("d").register_event(Closed())  # type: ignore[arg-type]


def test_create_event_rebuilds_nested_dataclasses_and_enums() -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Deposited)
    data = {
        "money": {"amount": 5, "currency": "USD"},
        "colour": "blue",
        "notes": [{"amount": 1}, {"amount": 2, "currency": "GBP"}],
    }
    event = reg.create_event("Deposited", data)
    assert event == Deposited(Money(5, "USD"), Colour.BLUE, [Money(1), Money(2, "GBP")])
    assert type(event.money) is Money and event.colour is Colour.BLUE


def test_create_event_without_data_gives_a_default_instance() -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Closed)
    assert reg.create_event("Closed") == Closed()


def test_create_event_drops_unknown_keys_and_defaults_missing_ones() -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Deposited)
    event = reg.create_event("Deposited", {"money": {"amount": 1}, "added_later": True})
    assert event == Deposited(Money(1))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"amount": 3, "currency": "USD"}, Money(3, "USD")),
        ({"amount": 3}, Money(3)),  # a field added later takes its default
        ({"amount": 3, "added_later": True}, Money(3)),  # a field removed later is dropped
        (None, None),  # no data: the defaults, and here a missing field
        (["not", "a", "mapping"], ["not", "a", "mapping"]),
    ],
)
def test_create_event_of_a_flat_dataclass_handles_every_shape_of_data(data: Any, expected: Any) -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Money)
    if expected is None:
        with pytest.raises(TypeError, match="amount"):
            reg.create_event("Money", data)
    else:
        assert reg.create_event("Money", data) == expected


def test_create_event_of_a_plain_class_passes_the_mapping_as_keywords() -> None:
    reg = StandardEventRegistry("d")
    reg.register_event(Plain)
    event = reg.create_event("Plain", {"a": 1, "b": 2})
    assert isinstance(event, Plain) and (event.a, event.b) == (1, 2)


def test_create_event_of_an_unregistered_type_gives_the_mapping_back() -> None:
    reg = StandardEventRegistry("d")
    data = {"to": 100}
    assert reg.create_event("Reset", data) == {"to": 100}
    assert reg.create_event("Reset") == {}


def test_event_definition_upcasts_older_revisions_first_match_wins() -> None:
    seen: list[str] = []

    def detect(tag: str, key: str) -> Any:
        def detector(data: Any) -> bool:
            seen.append(tag)
            return key in data

        return detector

    reg = StandardEventRegistry("d")
    reg.register_event(
        Renamed,
        EventDefinition(detect("v1", "title"), lambda d: Renamed(name="v1:" + d["title"])),
        EventDefinition(detect("v2", "label"), lambda d: Renamed(name="v2:" + d["label"])),
        EventDefinition(detect("v2b", "label"), lambda d: Renamed(name="never")),
    )
    assert reg.create_event("Renamed", {"title": "a"}) == Renamed("v1:a")
    assert seen == ["v1"]
    seen.clear()
    assert reg.create_event("Renamed", {"label": "b"}) == Renamed("v2:b")
    assert seen == ["v1", "v2"]
    seen.clear()
    assert reg.create_event("Renamed", {"name": "current"}) == Renamed("current")
    assert seen == ["v1", "v2", "v2b"]


def test_event_definition_is_a_dataclass_of_detector_and_factory() -> None:
    d = EventDefinition(bool, dict)
    assert (d.detector, d.factory) == (bool, dict)
    assert EventDefinition(detector=bool, factory=dict) == d


def test_command_registry() -> None:
    reg = StandardCommandRegistry("bank")

    @dataclass
    class Deposit:
        amount: int = 0

    command_type = reg.register_command(Deposit)
    assert command_type == "Deposit" and isinstance(command_type, str)
    assert reg.get_command_type(Deposit(3)) == ("Deposit", True)
    assert reg.get_command_type(Deposit) == ("Deposit", True)
    assert reg.get_command_type(Closed()) == ("Closed", False)
    assert reg.create_command("Deposit") == Deposit()
    assert reg.create_command("Deposit", {"amount": 9}) == Deposit(9)
    assert reg.create_command("Withdraw") == {}


def test_command_registry_duplicate_name_of_another_class_raises() -> None:
    reg = StandardCommandRegistry("bank")
    reg.register_command(Closed)

    class Other:
        pass

    Other.__qualname__ = "Closed"
    with pytest.raises(ValueError, match="Closed"):
        reg.register_command(Other)


_TEXT_REGISTRY = StandardEventRegistry("text")


@_TEXT_REGISTRY.register_event
@dataclass
class Paid:
    amount: Decimal
    at: dt.datetime
    order: uuid.UUID | None = None


def test_create_event_parses_rich_values_given_as_text() -> None:
    data = {"amount": "9.90", "at": "2026-05-01T10:00:00+00:00", "order": "12345678123456781234567812345678"}
    assert _TEXT_REGISTRY.create_event("Paid", data) == Paid(
        Decimal("9.90"),
        dt.datetime(2026, 5, 1, 10, tzinfo=dt.UTC),
        uuid.UUID(int=0x12345678123456781234567812345678),
    )
