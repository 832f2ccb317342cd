"""``AggregateTester`` runs Go's aggregate test files (utilities/test/aggregate_tester.go in
go-gadgets/eventsourcing) unchanged: commands by type and data, ``error`` contained in the
raised error's text, ``inherit``, and ``expect`` against the reloaded state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_core_scenario import BankAccount, CloseAccount, DepositMoney, OpenAccount, WithdrawMoney

from kvsourcing import AggregateBase, DomainFault, EventStore, StandardCommandRegistry, StandardEventRegistry
from kvsourcing.testing import AggregateTester

EXAMPLES = Path(__file__).parent / "aggregate_tests"


@dataclass
class IncrementCommand:
    pass


@dataclass
class IncrementEvent:
    pass


counter_events = StandardEventRegistry("DemoModel")
counter_events.register_event(IncrementEvent)
counter_commands = StandardCommandRegistry("DemoModel")
counter_commands.register_command(IncrementCommand)


class CounterAggregate(AggregateBase):
    """Go's examples/counter model, with a limit of 3 in place of 30."""

    def __init__(self, key: str, store: EventStore) -> None:
        super().__init__()
        self.count = 0
        self.initialize(key, counter_events, store)
        self.automatic_wireup()

    def handle_increment_command(self, command: IncrementCommand) -> list[Any]:
        if self.count >= 3:
            raise DomainFault(self.get_key(), "limit_reached")
        return [IncrementEvent()]

    def replay_increment_event(self, event: IncrementEvent) -> None:
        self.count += 1


bank_commands = StandardCommandRegistry("bank")
for command in (OpenAccount, DepositMoney, WithdrawMoney, CloseAccount):
    bank_commands.register_command(command)


def test_the_example_files_run() -> None:
    assert AggregateTester(counter_commands, CounterAggregate).run_recursive(EXAMPLES / "counter") == 3
    assert AggregateTester(bank_commands, BankAccount).run_recursive(EXAMPLES / "bank") == 5
    assert (
        AggregateTester(bank_commands, BankAccount).run_recursive(EXAMPLES / "bank" / "bank_account.json")
        == 5
    )


def test_load_tests_from_file_reads_go_format() -> None:
    tests = AggregateTester.load_tests_from_file(EXAMPLES / "counter" / "counter.json")
    assert list(tests) == ["one increment", "up to the limit", "past the limit"]
    past = tests["past the limit"]
    assert past.inherit == "up to the limit" and past.expect == {"count": 3}
    assert [(c.type, c.data, c.error) for c in past.commands] == [("IncrementCommand", {}, "limit_reached")]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tests.json"
    path.write_text(text)
    return path


def _failure(tmp_path: Path, text: str) -> str:
    with pytest.raises(AssertionError) as caught:
        AggregateTester(bank_commands, BankAccount).run_recursive(_write(tmp_path, text))
    return str(caught.value)


def test_a_wrong_expectation_fails_naming_file_test_and_field(tmp_path: Path) -> None:
    message = _failure(
        tmp_path,
        '{"good": {"commands": [{"type": "OpenAccount", "data": {"owner": "ann"}}]},'
        ' "bad": {"commands": [{"type": "OpenAccount", "data": {"owner": "ann"}}],'
        ' "expect": {"owner": "bob"}}}',
    )
    assert message.startswith("1 of 2 aggregate test(s) failed")
    assert "tests.json: test 'bad'" in message and "owner: expected 'bob', got 'ann'" in message
    assert "'good'" not in message


def test_state_left_out_of_expect_must_be_a_new_aggregates(tmp_path: Path) -> None:
    message = _failure(
        tmp_path,
        '{"t": {"commands": [{"type": "OpenAccount", "data": {"owner": "ann"}},'
        ' {"type": "DepositMoney", "data": {"amount": 5}}], "expect": {"owner": "ann"}}}',
    )
    assert "balance: expected 0, got 5" in message


def test_expected_error_must_be_raised_and_contained(tmp_path: Path) -> None:
    missing = _failure(
        tmp_path,
        '{"t": {"commands": [{"type": "OpenAccount", "data": {"owner": "a"}, "error": "already-open"}]}}',
    )
    assert "succeeded; expected an error containing 'already-open'" in missing
    other = _failure(
        tmp_path,
        '{"t": {"commands": [{"type": "DepositMoney", "data": {"amount": 1}, "error": "insufficient"}]}}',
    )
    assert "raised DomainFault: DomainFault: account-not-open" in other


def test_unexpected_error_and_unknown_command_fail(tmp_path: Path) -> None:
    assert "account-not-open" in _failure(
        tmp_path, '{"t": {"commands": [{"type": "DepositMoney", "data": {"amount": 1}}]}}'
    )
    assert "could not be built" in _failure(tmp_path, '{"t": {"commands": [{"type": "DepositMoney"}]}}')
    assert "UnknownCommandError" in _failure(tmp_path, '{"t": {"commands": [{"type": "Teleport"}]}}')


def test_inherit_of_a_missing_test_or_a_cycle_fails(tmp_path: Path) -> None:
    assert "inherits 'nope'" in _failure(tmp_path, '{"t": {"inherit": "nope"}}')
    assert "cycle" in _failure(tmp_path, '{"a": {"inherit": "b"}, "b": {"inherit": "a"}}')


def test_expect_of_an_unknown_field_fails(tmp_path: Path) -> None:
    assert "'colour'" in _failure(tmp_path, '{"t": {"expect": {"colour": "red"}}}')


def test_malformed_files_and_empty_folders_are_refused(tmp_path: Path) -> None:
    tester = AggregateTester(bank_commands, BankAccount)
    with pytest.raises(AssertionError, match=r"no \.json"):
        tester.run_recursive(tmp_path)
    with pytest.raises(ValueError, match="commands must be a list"):
        tester.run_recursive(_write(tmp_path, '{"t": {"commands": 3}}'))
    with pytest.raises(ValueError, match="not JSON"):
        tester.run_recursive(_write(tmp_path, "{"))
    with pytest.raises(FileNotFoundError):
        tester.run_recursive(tmp_path / "missing")
