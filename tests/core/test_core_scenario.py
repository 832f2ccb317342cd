"""``AggregateScenario`` and ``run_json`` on a small bank-account aggregate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kvsourcing import AggregateBase, DomainFault, EventStore, StandardEventRegistry
from kvsourcing.testing import AggregateScenario, run_json

SCENARIOS = Path(__file__).parent / "scenarios"


@dataclass
class AccountOpened:
    owner: str


@dataclass
class MoneyDeposited:
    amount: int


@dataclass
class MoneyWithdrawn:
    amount: int


@dataclass
class AccountClosed:
    pass


@dataclass
class OpenAccount:
    owner: str


@dataclass
class DepositMoney:
    amount: int


@dataclass
class WithdrawMoney:
    amount: int


@dataclass
class CloseAccount:
    pass


def bank_registry() -> StandardEventRegistry:
    reg = StandardEventRegistry("bank")
    for cls in (AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed):
        reg.register_event(cls)
    return reg


class BankAccount(AggregateBase):
    def __init__(self, key: str, store: EventStore) -> None:
        super().__init__()
        self.owner = ""
        self.open = False
        self.balance = 0  # in cents
        self.initialize(key, bank_registry(), store)
        self.automatic_wireup()

    def replay_opened(self, event: AccountOpened) -> None:
        self.owner, self.open = event.owner, True

    def replay_deposited(self, event: MoneyDeposited) -> None:
        self.balance += event.amount

    def replay_withdrawn(self, event: MoneyWithdrawn) -> None:
        self.balance -= event.amount

    def replay_closed(self, event: AccountClosed) -> None:
        self.open = False

    def _require_open(self) -> None:
        if not self.open:
            raise DomainFault(self.get_key(), "account-not-open")

    def handle_open(self, command: OpenAccount) -> list[Any]:
        if self.open:
            raise DomainFault(self.get_key(), "already-open")
        return [AccountOpened(command.owner)]

    def handle_deposit(self, command: DepositMoney) -> list[Any]:
        self._require_open()
        return [MoneyDeposited(command.amount)]

    def handle_withdraw(self, command: WithdrawMoney) -> list[Any]:
        self._require_open()
        if command.amount > self.balance:
            raise DomainFault(self.get_key(), "insufficient-funds")
        return [MoneyWithdrawn(command.amount)]

    def handle_close(self, command: CloseAccount) -> list[Any]:
        self._require_open()
        if self.balance:
            raise DomainFault(self.get_key(), "balance-not-zero")
        return [AccountClosed()]


scenario = AggregateScenario(BankAccount)


def test_given_when_then() -> None:
    scenario.given(AccountOpened("ann"), MoneyDeposited(10)).when(WithdrawMoney(4)).then(MoneyWithdrawn(4))


def test_no_history_and_several_givens_accumulate() -> None:
    scenario.when(OpenAccount("ann")).then(AccountOpened("ann"))
    scenario.given(AccountOpened("ann")).given(MoneyDeposited(1)).when(CloseAccount()).then_fault(
        "balance-not-zero"
    )


def test_then_fault() -> None:
    scenario.given(AccountOpened("ann")).when(WithdrawMoney(1)).then_fault("insufficient-funds")
    scenario.when(DepositMoney(1)).then_fault("account-not-open")


def test_then_with_no_events() -> None:
    class Quiet(BankAccount):
        def handle_deposit(self, command: DepositMoney) -> list[Any]:
            return []

    AggregateScenario(Quiet).given(AccountOpened("x")).when(DepositMoney(1)).then()


def test_then_fails_on_other_events() -> None:
    with pytest.raises(AssertionError, match="expected events"):
        scenario.given(AccountOpened("ann")).when(DepositMoney(1)).then(MoneyDeposited(2))
    with pytest.raises(AssertionError):
        scenario.given(AccountOpened("ann")).when(DepositMoney(1)).then()


def test_then_fails_when_a_fault_is_raised() -> None:
    with pytest.raises(AssertionError, match="insufficient-funds"):
        scenario.given(AccountOpened("ann")).when(WithdrawMoney(1)).then(MoneyWithdrawn(1))


def test_then_fault_fails_on_events_or_another_code() -> None:
    with pytest.raises(AssertionError, match="expected fault"):
        scenario.given(AccountOpened("ann")).when(DepositMoney(1)).then_fault("insufficient-funds")
    with pytest.raises(AssertionError, match="account-not-open"):
        scenario.when(WithdrawMoney(1)).then_fault("insufficient-funds")


def test_scenario_without_when_is_an_error() -> None:
    with pytest.raises(ValueError, match="when"):
        scenario.given(AccountOpened("ann")).then()


def test_scenarios_are_immutable_builders() -> None:
    opened = scenario.given(AccountOpened("ann"))
    opened.given(MoneyDeposited(100))
    opened.when(WithdrawMoney(1)).then_fault("insufficient-funds")


def test_run_json_runs_every_scenario() -> None:
    assert run_json(SCENARIOS / "bank_account.json", BankAccount) == 6
    assert run_json(str(SCENARIOS / "bank_account.json"), BankAccount) == 6


def test_run_json_raises_assertion_error_listing_the_failures() -> None:
    with pytest.raises(AssertionError) as caught:
        run_json(SCENARIOS / "bank_account_failing.json", BankAccount)
    message = str(caught.value)
    assert message.startswith("2 of 3 scenario(s)")
    assert "wrong event expected" in message and "fault expected but events produced" in message
    assert "passes: deposit" not in message


def test_run_json_rejects_unknown_command_and_event_types(tmp_path: Path) -> None:
    bad_command = tmp_path / "command.json"
    bad_command.write_text('[{"name": "x", "when": {"type": "Teleport"}, "then": []}]')
    with pytest.raises(ValueError, match="Teleport"):
        run_json(bad_command, BankAccount)
    bad_event = tmp_path / "event.json"
    bad_event.write_text('[{"name": "y", "given": [{"type": "Nope"}], "when": {"type": "CloseAccount"}}]')
    with pytest.raises(ValueError, match="Nope"):
        run_json(bad_event, BankAccount)


def test_then_raises_for_errors_that_are_not_domain_faults() -> None:
    """Issue 11: then_raises expresses any error, not only a DomainFault."""
    from kvsourcing import UnknownCommandError

    @dataclass
    class Teleport:
        pass

    raised = scenario.when(Teleport()).then_raises(UnknownCommandError, match="Teleport")
    assert isinstance(raised, UnknownCommandError)
    scenario.when(DepositMoney(1)).then_raises(DomainFault, match="account-not-open")
    with pytest.raises(AssertionError, match="expected UnknownCommandError, got events"):
        scenario.given(AccountOpened("ann")).when(DepositMoney(1)).then_raises(UnknownCommandError)
    with pytest.raises(AssertionError, match="got DomainFault"):
        scenario.when(DepositMoney(1)).then_raises(UnknownCommandError)
    with pytest.raises(AssertionError, match="matching 'nope'"):
        scenario.when(DepositMoney(1)).then_raises(DomainFault, match="nope")


def test_run_json_error_field_expects_an_error_containing_it(tmp_path: Path) -> None:
    path = tmp_path / "errors.json"
    path.write_text(
        '[{"name": "closed", "when": {"type": "DepositMoney", "data": {"amount": 1}}, "error": "not-open"},'
        ' {"name": "wrong", "given": [{"type": "AccountOpened", "data": {"owner": "a"}}],'
        ' "when": {"type": "DepositMoney", "data": {"amount": 1}}, "error": "not-open"}]'
    )
    with pytest.raises(AssertionError) as caught:
        run_json(path, BankAccount)
    assert str(caught.value).startswith("1 of 2 scenario(s)") and "wrong: expected Exception" in str(
        caught.value
    )
