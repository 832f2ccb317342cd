"""Compliance tests of what an application relies on when it commits: re-sent commands,
lost replies, commits of several aggregates, and each commit's metadata.

``StoreSuite`` inherits them, so every store runs them through the API an application
uses (``handle``, ``commit_together``), not only at the driver.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from kvsourcing.errors import AggregateNotFoundError, ConcurrencyFault, DomainFault, StoreUnavailableError
from kvsourcing.protocols import EventStore
from kvsourcing.testing.domain import Account, Deposit, Deposited, Open, Opened, Withdraw, Withdrawn
from kvsourcing.together import commit_together


class LostReply:
    """A store whose next commit is stored but whose reply is lost (``StoreUnavailableError``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lost = False

    def refresh(self, reader: Any) -> None:
        self.inner.refresh(reader)

    def commit_events(self, writer: Any) -> None:
        self.inner.commit_events(writer)
        self._lose()

    def commit_together(self, writers: Any) -> None:
        self.inner.commit_together(writers)
        self._lose()

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            raise StoreUnavailableError("connection reset before the reply (simulated)")

    def close(self) -> None:
        self.inner.close()


class CommitTests:
    """Idempotent commands, lost replies, ``commit_together`` and commit metadata."""

    @staticmethod
    def bank_key(tag: str = "") -> str:
        """A fresh account key; accounts with one ``tag`` share a ``{tag}``, so they can be
        committed together on every backend (a Redis Cluster needs one slot)."""
        return f"acct-{uuid.uuid4().hex[:10]}{{{tag or 'bank'}}}"

    @staticmethod
    def opened(store: EventStore, key: str, balance: int) -> Account:
        account = Account(key, store)
        account.handle(Open("ann"))
        if balance:
            account.handle(Deposit(balance))
        return account

    def test_a_resent_command_is_a_no_op_whatever_was_committed_after_it(self, store: EventStore) -> None:
        key = self.bank_key()
        account = self.opened(store, key, 100)
        assert account.handle(Withdraw(70), commit_id="w-1") == [Withdrawn(70)]
        other = Account(key, store)
        for amount in (1, 2, 3):
            other.handle(Deposit(amount))
        resent = Account(key, store)
        assert resent.handle(Withdraw(70), commit_id="w-1") == []
        assert resent.handled() == 0, "the handler of a command already stored must not run"
        assert (resent.balance, resent.sequence_number()) == (36, 6)
        assert account.handle(Withdraw(70), commit_id="w-1") == []
        reader = Account(key, store)
        reader.refresh()
        assert (reader.balance, reader.sequence_number()) == (36, 6)

    def test_a_resent_open_of_an_existing_account_is_a_no_op(self, store: EventStore) -> None:
        key = self.bank_key()
        assert Account(key, store).handle(Open("ann"), commit_id="open-1") == [Opened("ann")]
        again = Account(key, store)
        assert again.handle(Open("ann"), commit_id="open-1") == []
        assert again.handled() == 0
        with pytest.raises(DomainFault, match="already-open"):
            Account(key, store).handle(Open("bob"), commit_id="open-2")

    def test_a_lost_reply_inside_handle_can_be_retried_and_stores_once(self, store: EventStore) -> None:
        key = self.bank_key()
        self.opened(store, key, 100)
        flaky = Account(key, LostReply(store))
        with pytest.raises(StoreUnavailableError):
            flaky.handle(Withdraw(30), commit_id="w-lost")
        assert (flaky.balance, flaky.is_dirty()) == (100, False), "rolled back to before the command"
        assert flaky.handle(Withdraw(30), commit_id="w-lost") == []
        assert Account(key, store).handle(Withdraw(30), commit_id="w-lost") == []
        reader = Account(key, store)
        reader.refresh()
        assert (reader.balance, reader.sequence_number()) == (70, 3)

    def test_commit_together_writes_every_aggregate_or_none(self, store: EventStore) -> None:
        source, target = self.bank_key(), self.bank_key()
        debit, credit = self.opened(store, source, 50), self.opened(store, target, 0)
        rival = Account(target, store)
        rival.handle(Deposit(5))
        debit.apply_event(Withdrawn(20))
        credit.apply_event(Deposited(20))
        with pytest.raises(ConcurrencyFault) as fault:
            commit_together(debit, credit)
        assert (fault.value.aggregate_key, fault.value.event_sequence) == (target, 2)
        assert (debit.balance, debit.is_dirty(), credit.balance, credit.is_dirty()) == (50, False, 0, False)
        for key, balance, sequence in ((source, 50, 2), (target, 5, 2)):
            reader = Account(key, store)
            reader.refresh()
            assert (reader.balance, reader.sequence_number()) == (balance, sequence), key
        debit.refresh()
        credit.refresh()
        debit.apply_event(Withdrawn(20))
        credit.apply_event(Deposited(20))
        commit_together(debit, credit, commit_id="t-1")
        assert (debit.is_dirty(), credit.is_dirty()) == (False, False)
        for key, balance in ((source, 30), (target, 25)):
            reader = Account(key, store)
            reader.refresh()
            assert reader.balance == balance, key

    def test_commit_together_after_a_lost_reply_stores_once(self, store: EventStore) -> None:
        source, target = self.bank_key(), self.bank_key()
        self.opened(store, source, 50)
        self.opened(store, target, 0)
        flaky = LostReply(store)
        debit, credit = Account(source, flaky), Account(target, flaky)
        debit.refresh()
        credit.refresh()
        debit.apply_event(Withdrawn(20))
        credit.apply_event(Deposited(20))
        with pytest.raises(StoreUnavailableError):
            commit_together(debit, credit, commit_id="t-lost")
        assert debit.is_dirty() and credit.is_dirty(), "kept, to be sent again under the same ids"
        commit_together(debit, credit, commit_id="t-lost")
        for key, balance, sequence in ((source, 30, 3), (target, 20, 2)):
            reader = Account(key, store)
            reader.refresh()
            assert (reader.balance, reader.sequence_number()) == (balance, sequence), key

    def test_events_keep_their_commit_id_and_time(self, store: EventStore) -> None:
        key = self.bank_key()
        before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        account = Account(key, store)
        account.handle(Open("ann"), commit_id="open-7")
        account.apply_event(Deposited(1))
        account.apply_event(Deposited(2))
        account.commit()
        events = store.read_events(key)  # type: ignore[attr-defined]
        assert (events[0].sequence, events[0].commit_id) == (1, "open-7")
        assert events[1].commit_id == events[2].commit_id not in (None, "open-7")
        for event in events:
            assert event.recorded_at is not None and event.recorded_at.tzinfo is not None
            assert event.recorded_at.utcoffset() == dt.timedelta(0)
            assert before < event.recorded_at < before + dt.timedelta(minutes=10)
        assert events[1].recorded_at == events[2].recorded_at, "one commit, one time"

    def test_an_aggregate_that_must_exist_and_has_no_events_is_not_found(self, store: EventStore) -> None:
        key = self.bank_key()
        with pytest.raises(AggregateNotFoundError, match="no events"):
            Account(key, store).handle(Deposit(5), must_exist=True)
        with pytest.raises(AggregateNotFoundError):
            Account(key, store).refresh(must_exist=True)
        self.opened(store, key, 0)
        assert Account(key, store).handle(Deposit(5), must_exist=True) == [Deposited(5)]
