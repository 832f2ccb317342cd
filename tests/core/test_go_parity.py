"""Where the Go package defines a behaviour, the port behaves the same; each test names the
Go file (repository go-gadgets/eventsourcing) it follows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from kvsourcing import (
    AggregateBase,
    EventHandlerBase,
    PublishedEvent,
    StandardCommandRegistry,
    StandardEventRegistry,
    StoreWriterAdapter,
    TestStore,
    TestStoreError,
    TestStoreHistoryItem,
    new_middleware_wrapper,
)
from kvsourcing.stores import memory


@dataclass
class Deposited:
    amount: int


@dataclass
class Deposit:
    amount: int


def registry() -> StandardEventRegistry:
    reg = StandardEventRegistry("bank")
    reg.register_event(Deposited)
    return reg


class Account(AggregateBase):
    def __init__(self, key: str, store: Any) -> None:
        super().__init__()
        self.balance = 0
        self.initialize(key, registry(), store)
        self.automatic_wireup()

    def replay_deposited(self, event: Deposited) -> None:
        self.balance += event.amount

    def handle_deposit(self, command: Deposit) -> list[Any]:
        return [Deposited(command.amount)]


# eventhandler_base.go: Initialize(registry, self) calls AutomaticWireup(self).


class Projection(EventHandlerBase):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, Any]] = []
        self.initialize(registry(), self)

    def handle_deposited(self, key: str, sequence: int, event: Deposited) -> None:
        self.seen.append((key, sequence, event))


def test_event_handler_initialize_wires_up_at_once() -> None:
    projection = Projection()
    projection.handle(PublishedEvent("bank", registry().get_event_type(Deposited)[0], "a", 1, Deposited(5)))
    assert projection.seen == [("a", 1, Deposited(5))]


def test_automatic_wireup_replaces_the_handlers_wired_before() -> None:
    """eventhandler_base.go: AutomaticWireup assigns a new map of consumers."""

    class Other:
        def handle_nothing_known(self, key: str, sequence: int, event: Deposit) -> None:
            raise AssertionError("not a registered event")

    projection = Projection()
    projection.automatic_wireup(Other())
    projection.handle(PublishedEvent("bank", registry().get_event_type(Deposited)[0], "a", 1, Deposited(5)))
    assert projection.seen == []


# command_registry.go: CreateCommand of an unknown type returns make(map[string]interface{}).


def test_create_command_of_an_unknown_type_is_a_new_empty_mutable_mapping() -> None:
    commands = StandardCommandRegistry("bank")
    commands.register_command(Deposit)
    first, second = commands.create_command("Nope"), commands.create_command("Nope")
    assert first == {} and isinstance(first, dict)
    first["amount"] = 3
    assert second == {}, "a new mapping each time"
    assert commands.create_command("Nope", {"amount": 4}) == {"amount": 4}
    assert commands.create_command("Deposit", {"amount": 4}) == Deposit(4)


# middleware.go: Use and HandleCommit/HandleRefresh/HandleCleanup skip nil.


def test_middleware_none_arguments_are_skipped() -> None:
    calls: list[str] = []

    def commit(writer: StoreWriterAdapter, next_: Any) -> None:
        calls.append("commit")
        next_()

    wrapper = new_middleware_wrapper(memory.new_store())
    wrapper.use(None, None, None)
    wrapper.handle_commit(None)
    wrapper.handle_refresh(None)
    wrapper.handle_cleanup(None)
    wrapper.use(commit, None, None)
    account = Account("a", wrapper)
    account.handle(Deposit(2))
    reader = Account("a", wrapper)
    reader.refresh()
    wrapper.close()
    assert (calls, reader.balance) == (["commit"], 2)


# teststore.go: Refresh answers only as When configured it; CommitEvents only records.


def test_test_store_replays_configured_events_at_their_offset() -> None:
    store = TestStore().when("a", 0, [Deposited(1), Deposited(2)])
    account = Account("a", store)
    account.refresh()
    assert (account.balance, account.sequence_number()) == (3, 2)
    with pytest.raises(TestStoreError, match="follow sequence 0, but the aggregate is at 2"):
        account.refresh()


def test_test_store_when_replaces_the_earlier_setup_for_the_key() -> None:
    store = TestStore().when("a", 0, [Deposited(1)])
    store.when("a", 0, [Deposited(10)])
    account = Account("a", store)
    account.refresh()
    assert account.balance == 10


def test_test_store_restores_state_as_a_snapshot_when_events_are_none() -> None:
    store = TestStore().when("a", 7, None, {"balance": 40})
    account = Account("a", store)
    account.refresh()
    assert (account.balance, account.sequence_number()) == (40, 7)


def test_test_store_unconfigured_key_refreshes_to_nothing_at_zero_and_fails_past_it() -> None:
    store = TestStore()
    account = Account("a", store)
    account.refresh()
    assert account.sequence_number() == 0
    account.handle(Deposit(5))
    assert store.history == [TestStoreHistoryItem("a", 0, [Deposited(5)], account)]
    with pytest.raises(TestStoreError, match="already at sequence 1"):
        account.refresh()


def test_test_store_does_not_replay_what_was_committed() -> None:
    store = TestStore()
    Account("a", store).handle(Deposit(5))
    reader = Account("a", store)
    reader.refresh()
    assert reader.balance == 0


def test_test_store_refresh_errors_are_kvsourcing_errors() -> None:
    from kvsourcing import KvSourcingError

    class AtThree:
        def get_key(self) -> str:
            return "k"

        def sequence_number(self) -> int:
            return 3

    reader: Any = AtThree()
    with pytest.raises(KvSourcingError):
        TestStore().refresh(reader)
