"""The test domains the compliance suites (and the benchmarks) write and read: a counter,
and a bank whose accounts transfer money in atomic commits of two aggregates."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kvsourcing.aggregate import AggregateBase
from kvsourcing.errors import DomainFault
from kvsourcing.protocols import AsyncEventStore, EventStore
from kvsourcing.registry import EventDefinition, StandardEventRegistry
from kvsourcing.retry import retry
from kvsourcing.together import commit_together


@dataclass
class Incremented:
    by: int = 1


@dataclass
class Renamed:
    name: str


@dataclass
class Detail:
    at: dt.datetime
    amount: Decimal
    tags: tuple[str, ...] = ()


@dataclass
class Audited:
    """An event with every kind of value the codecs must carry."""

    id: uuid.UUID
    detail: Detail
    when: dt.date
    blob: bytes
    labels: set[str] = field(default_factory=set)
    scores: dict[int, float] = field(default_factory=dict)


@dataclass
class Reset:
    """Written by newer code only: older registries do not know it."""

    to: int


@dataclass
class Increment:
    by: int = 1


def _is_v1_renamed(data: Any) -> bool:
    return "title" in data


def _upcast_v1_renamed(data: Any) -> Renamed:
    return Renamed(name=data["title"])


def registry(*, newer: bool = False) -> StandardEventRegistry:
    """The counter's events; ``newer=True`` also knows ``Reset``, as a later release would."""
    reg = StandardEventRegistry("compliance")
    reg.register_event(Incremented)
    reg.register_event(Renamed, EventDefinition(_is_v1_renamed, _upcast_v1_renamed))
    reg.register_event(Audited)
    if newer:
        reg.register_event(Reset)
    return reg


class Counter(AggregateBase):
    """Counts increments; records what it replayed, privately, so tests can see it."""

    count: int
    name: str
    audits: list[Audited]

    def __init__(self, key: str, store: EventStore | AsyncEventStore, *, newer: bool = False) -> None:
        super().__init__()
        self.count = 0
        self.name = ""
        self.audits = []
        self._replayed: list[Any] = []
        self.initialize(key, registry(newer=newer), store)
        self.automatic_wireup()

    def replay_event(self, event: Any) -> None:
        self._replayed.append(event)
        super().replay_event(event)

    def replay_incremented(self, event: Incremented) -> None:
        self.count += event.by

    def replay_renamed(self, event: Renamed) -> None:
        self.name = event.name

    def replay_audited(self, event: Audited) -> None:
        self.audits.append(event)

    def replay_reset(self, event: Reset) -> None:
        self.count = event.to

    def handle_increment(self, command: Increment) -> list[Any]:
        return [Incremented(command.by)]


def write(store: EventStore, key: str, *events: Any) -> Counter:
    """Commit ``events`` to the counter ``key`` in one commit, after a refresh."""
    counter = Counter(key, store)
    counter.refresh()
    for event in events:
        counter.apply_event(event)
    counter.commit()
    return counter


bank = StandardEventRegistry("bank")


@bank.register_event
@dataclass
class Opened:
    owner: str


@bank.register_event
@dataclass
class Deposited:
    amount: int


@bank.register_event
@dataclass
class Withdrawn:
    amount: int


@dataclass
class Open:
    owner: str


@dataclass
class Deposit:
    amount: int


@dataclass
class Withdraw:
    amount: int


class Account(AggregateBase):
    """A bank account: opened once, then deposits and withdrawals that never overdraw.

    ``handled()`` counts the commands its handlers ran, so tests can see a re-sent command
    that was not run again.
    """

    owner: str
    balance: int

    def __init__(self, key: str, store: EventStore | AsyncEventStore) -> None:
        super().__init__()
        self.owner = ""
        self.balance = 0
        self._handled = 0
        self.initialize(key, bank, store)
        self.automatic_wireup()

    def handled(self) -> int:
        """How many commands this instance's handlers ran."""
        return self._handled

    def replay_opened(self, event: Opened) -> None:
        self.owner = event.owner

    def replay_deposited(self, event: Deposited) -> None:
        self.balance += event.amount

    def replay_withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount

    def handle_open(self, command: Open) -> list[Any]:
        self._handled += 1
        if self.sequence_number():
            raise DomainFault(self.get_key(), "already-open")
        return [Opened(command.owner)]

    def handle_deposit(self, command: Deposit) -> list[Any]:
        self._handled += 1
        return [Deposited(command.amount)]

    def handle_withdraw(self, command: Withdraw) -> list[Any]:
        self._handled += 1
        if command.amount > self.balance:
            raise DomainFault(self.get_key(), "insufficient-funds")
        return [Withdrawn(command.amount)]


def transfer(
    store: EventStore,
    source: str,
    target: str,
    amount: int,
    transfer_id: str | None = None,
    *,
    attempts: int = 20,
) -> bool:
    """Move ``amount`` from ``source`` to ``target`` in one atomic commit of both accounts,
    run again on a lost race (up to ``attempts`` times); ``False`` (nothing written) when
    the source lacks the money."""

    def attempt() -> bool:
        debit, credit = Account(source, store), Account(target, store)
        debit.refresh()
        credit.refresh()
        if debit.balance < amount:
            return False
        debit.apply_event(Withdrawn(amount))
        credit.apply_event(Deposited(amount))
        commit_together(debit, credit, commit_id=transfer_id)
        return True

    return retry(attempts, attempt)
