"""Wire-up refuses a ``replay_*``/``handle_*`` method of the wired shape whose parameter has
no annotation, naming it, instead of skipping it and losing its events silently."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

import kvsourcing
from kvsourcing import AggregateBase, EventHandlerBase, KvSourcingError, StandardEventRegistry, WireupError
from kvsourcing.stores import memory


@dataclass
class Deposited:
    amount: int


def registry() -> StandardEventRegistry:
    reg = StandardEventRegistry("bank")
    reg.register_event(Deposited)
    return reg


def test_wireup_error_is_exported_and_a_kvsourcing_error() -> None:
    assert "WireupError" in kvsourcing.__all__
    assert issubclass(WireupError, KvSourcingError)


def test_unannotated_replay_method_raises_at_wireup_naming_it() -> None:
    class Account(AggregateBase):
        def __init__(self) -> None:
            super().__init__()
            self.balance = 0
            self.initialize("a", registry(), memory.new_store())
            self.automatic_wireup()

        def replay_deposited(self, event):  # type: ignore[no-untyped-def]
            self.balance += event.amount

    with pytest.raises(WireupError, match=r"Account\.replay_deposited.*'event' has no type annotation"):
        Account()


def test_unannotated_handle_method_raises_at_wireup_naming_it() -> None:
    class Account(AggregateBase):
        def __init__(self) -> None:
            super().__init__()
            self.initialize("a", registry(), memory.new_store())
            self.automatic_wireup()

        def handle_deposit(self, command) -> list[Any]:  # type: ignore[no-untyped-def]
            return []

    with pytest.raises(WireupError, match=r"Account\.handle_deposit"):
        Account()


def test_prefixed_methods_of_another_shape_are_still_skipped() -> None:
    class Account(AggregateBase):
        def __init__(self) -> None:
            super().__init__()
            self.initialize("a", registry(), memory.new_store())
            self.automatic_wireup()

        def replay_two(self, event, extra):  # type: ignore[no-untyped-def]
            raise AssertionError("not wired")

        def handle_nothing(self) -> None:
            raise AssertionError("not wired")

    assert Account().handled_commands() == {}


def test_unannotated_event_handler_method_raises_at_initialize_naming_it() -> None:
    class Projection(EventHandlerBase):
        def __init__(self) -> None:
            super().__init__()
            self.initialize(registry(), self)

        def handle_deposited(self, key: str, sequence: int, event):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(WireupError, match=r"Projection\.handle_deposited"):
        Projection()
