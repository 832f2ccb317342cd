"""A bank account, end to end: the example behind ``kvsourcing demo``.

Read it as a tour of the API: events and commands are dataclasses, the aggregate
replays events into its state and turns commands into events, and the store keeps
the events with optimistic concurrency.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TextIO

from kvsourcing.aggregate import AggregateBase
from kvsourcing.errors import ConcurrencyFault, DomainFault
from kvsourcing.middleware import new_middleware_wrapper
from kvsourcing.protocols import EventStore
from kvsourcing.registry import StandardEventRegistry
from kvsourcing.retry import retry

events = StandardEventRegistry("bank")


@events.register_event
@dataclass(frozen=True)
class AccountOpened:
    owner: str


@events.register_event
@dataclass(frozen=True)
class Deposited:
    amount: Decimal


@events.register_event
@dataclass(frozen=True)
class Withdrawn:
    amount: Decimal


@dataclass(frozen=True)
class OpenAccount:
    owner: str


@dataclass(frozen=True)
class Deposit:
    amount: Decimal


@dataclass(frozen=True)
class Withdraw:
    amount: Decimal


class Account(AggregateBase):
    """A bank account whose balance is the replay of its events."""

    owner: str
    balance: Decimal

    def __init__(self, key: str, store: EventStore) -> None:
        super().__init__()
        self.owner = ""
        self.balance = Decimal("0.00")
        self.initialize(key, events, store)
        self.automatic_wireup()

    def replay_opened(self, event: AccountOpened) -> None:
        self.owner = event.owner

    def replay_deposited(self, event: Deposited) -> None:
        self.balance += event.amount

    def replay_withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount

    def handle_open(self, command: OpenAccount) -> list[Any]:
        if self.owner:
            raise DomainFault(self.get_key(), "already-open")
        return [AccountOpened(command.owner)]

    def handle_deposit(self, command: Deposit) -> list[Any]:
        if command.amount <= 0:
            raise DomainFault(self.get_key(), "amount-not-positive")
        return [Deposited(command.amount)]

    def handle_withdraw(self, command: Withdraw) -> list[Any]:
        if command.amount > self.balance:
            raise DomainFault(self.get_key(), "insufficient-funds")
        return [Withdrawn(command.amount)]


def _rival_once(rival: Callable[[], Any]) -> Callable[[Any, Callable[[], None]], None]:
    """A refresh middleware that lets a rival commit right after the first refresh."""
    pending = [rival]

    def middleware(reader: Any, next_: Callable[[], None]) -> None:
        next_()
        while pending:
            pending.pop()()

    return middleware


def run(store: EventStore, out: TextIO, *, key: str | None = None) -> Account:
    """Run the demo on ``store``, writing what happens to ``out``; returns the final account."""
    key = key or f"account-{uuid.uuid4().hex[:8]}"

    def say(text: str = "") -> None:
        print(text, file=out)

    def command(account: Account, cmd: Any) -> None:
        produced = account.handle(cmd)
        shown = ", ".join(_show(e) for e in produced)
        say(f"  {_show(cmd):<26} -> {shown:<28} [sequence {account.sequence_number()}]")

    say(f"1. Commands become events on account {key!r}")
    teller = Account(key, store)
    for cmd in (OpenAccount("Ada"), Deposit(Decimal("100.00")), Withdraw(Decimal("30.00"))):
        command(teller, cmd)

    say()
    say("2. Two tellers race; the loser gets a ConcurrencyFault and retry() runs its command again")
    rival = Account(key, store)
    racing = new_middleware_wrapper(store)
    racing.handle_refresh(_rival_once(lambda: command(rival, Deposit(Decimal("50.00")))))
    loser = Account(key, racing)
    attempts = 0

    def withdraw() -> list[Any]:
        nonlocal attempts
        attempts += 1
        try:
            return loser.handle(Withdraw(Decimal("25.00")))
        except ConcurrencyFault as fault:
            say(f"  teller 2 lost the race: {fault}; retrying")
            raise

    retry(3, withdraw)
    say(f"  teller 2 withdrew 25.00 on attempt {attempts}  [sequence {loser.sequence_number()}]")

    say()
    say("3. A command the domain refuses raises a DomainFault and writes nothing")
    try:
        teller.handle(Withdraw(Decimal("1000.00")))
    except DomainFault as fault:
        say(f"  {_show(Withdraw(Decimal('1000.00')))} refused: {fault}")

    say()
    final = Account(key, store)
    final.refresh()
    say(
        f"4. Replayed from the store: owner {final.owner}, balance {final.balance}, "
        f"sequence {final.sequence_number()}"
    )
    read_events = getattr(store, "read_events", None)
    if read_events is not None:
        say()
        say("5. The events as stored (kvsourcing events KEY --store URL shows them too)")
        for stored in read_events(key):
            say(f"  {stored.sequence:>3}  {stored.event_type:<14} {stored.data}")
    return final


def _show(obj: Any) -> str:
    fields = ", ".join(f"{name}={value}" for name, value in vars(obj).items())
    return f"{type(obj).__name__}({fields})"
