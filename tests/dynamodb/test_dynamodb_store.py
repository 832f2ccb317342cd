"""The store compliance suite on DynamoDB: moto in-process, and moto's server over HTTP.

Each test gets a fresh table (moto copies and scans a whole table per transaction and query).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from test_dynamodb_driver import aggregate_items, table_items

from kvsourcing import EventStore, commit_together
from kvsourcing.errors import ConcurrencyFault, ConfigurationError, StoreUnavailableError
from kvsourcing.stores.dynamodb import new_store
from kvsourcing.stores.keyvalue import FeedConsumer
from kvsourcing.testing import StoreSuite
from kvsourcing.testing.domain import (
    Account,
    Counter,
    Deposit,
    Deposited,
    Increment,
    Incremented,
    Open,
    Withdrawn,
    registry,
)
from kvsourcing.testing.requests import count_requests, lose_next_reply


class TestDynamoDBOnMoto(StoreSuite):
    @pytest.fixture(autouse=True)
    def _table(self, moto_client: Any, moto_table: str) -> None:
        self.client, self.table = moto_client, moto_table

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return new_store(self.table, client=self.client, snapshot_interval=snapshot_interval)

    def test_requests_per_command_and_refresh(self) -> None:
        with self.new_store(snapshot_interval=5) as store:
            counts = count_requests(self.client)
            counter = Counter(self.fresh_key(), store)
            counter.refresh()
            assert counts == {"BatchGetItem": 1}
            counts.clear()
            counter.handle(Increment(3))
            assert counts == {"BatchGetItem": 1, "UpdateItem": 1, "TransactWriteItems": 1}
            for _ in range(6):
                counter.handle(Increment())
            counts.clear()
            reader = Counter(counter.get_key(), store)
            reader.refresh()
            assert counts == {"BatchGetItem": 1, "Query": 1}
            assert reader.sequence_number() == 7
            counts.clear()
            reader.handle(Increment(), commit_id="named")
            assert counts == {"BatchGetItem": 1, "UpdateItem": 1, "TransactWriteItems": 1}


class TestDynamoDBWithoutFeedOnMoto(StoreSuite):
    """``feed=False``: a commit is one ``TransactWriteItems`` of the head and the commit item."""

    @pytest.fixture(autouse=True)
    def _table(self, moto_client: Any, moto_table: str) -> None:
        self.client, self.table = moto_client, moto_table

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return new_store(self.table, client=self.client, snapshot_interval=snapshot_interval, feed=False)

    def test_a_commit_is_one_request_of_two_items_and_no_feed_is_written(self) -> None:
        with self.new_store() as store:
            sent: list[list[str]] = []
            self.client.meta.events.register(
                "before-parameter-build.dynamodb.TransactWriteItems",
                lambda params, **_: sent.append([next(iter(action)) for action in params["TransactItems"]]),
            )
            counter = Counter(self.fresh_key(), store)
            counter.refresh()
            counts = count_requests(self.client)
            for by in (1, 2, 3):
                counter.apply_event(Incremented(by))
                counter.commit()
            assert counts == {"TransactWriteItems": 3}, "one request per commit"
            assert sent == [["Update", "Put"]] * 3, "the head and the commit item, nothing else"
            counts.clear()
            counter.handle(Increment(4), commit_id="cmd-1")
            assert counter.handle(Increment(4), commit_id="cmd-1") == []
            assert sent[-1] == ["Put", "Update", "Put"], "a named commit adds its marker"
            assert all("\x1f" not in item["k"]["S"] for item in table_items(self.client, self.table))
            assert store.driver.read_feed({0: None}, 10) == []
            with pytest.raises(ConfigurationError, match="feed=False"):
                FeedConsumer(store, "projection", registry())


@pytest.fixture
def store(moto_client: Any, moto_table: str) -> Any:
    with new_store(moto_table, client=moto_client, buckets=4) as opened:
        yield opened


def bank_key() -> str:
    return f"acct-{uuid.uuid4().hex[:10]}"


def opened(store: Any, balance: int) -> Account:
    account = Account(bank_key(), store)
    account.handle(Open("ann"))
    account.handle(Deposit(balance))
    return account


def test_commit_together_of_three_aggregates_is_one_transaction_and_a_clash_in_the_last_writes_nothing(
    store: Any, moto_client: Any, moto_table: str
) -> None:
    accounts = [opened(store, 100) for _ in range(3)]
    rival = Account(accounts[2].get_key(), store)
    rival.handle(Deposit(1))
    before = aggregate_items(moto_client, moto_table)
    feed_before = store.driver.read_feed(dict.fromkeys(range(4)), 100)
    for account in accounts:
        account.apply_event(Deposited(5))
    with pytest.raises(ConcurrencyFault) as fault:
        commit_together(*accounts)
    assert fault.value.aggregate_key == accounts[2].get_key()
    assert aggregate_items(moto_client, moto_table) == before, "nothing written"
    assert store.driver.read_feed(dict.fromkeys(range(4)), 100) == feed_before, "no feed entry either"
    for account in accounts:
        account.refresh()
    counts = count_requests(moto_client)
    for account in accounts:
        account.apply_event(Withdrawn(5))
    commit_together(*accounts, commit_id="t-1")
    assert counts["TransactWriteItems"] == 1
    assert counts["UpdateItem"] <= 3, "one feed reservation per bucket written"
    for account, balance in zip(accounts, (95, 95, 96), strict=True):
        reader = Account(account.get_key(), store)
        reader.refresh()
        assert reader.balance == balance
    events = store.read_events(accounts[0].get_key())
    assert events[-1].commit_id == "t-1"


def test_a_named_commit_is_found_by_the_load_alone_after_three_later_commits(
    store: Any, moto_client: Any
) -> None:
    account = opened(store, 100)
    assert account.handle(Deposit(7), commit_id="d-7") == [Deposited(7)]
    for amount in (1, 2, 3):
        Account(account.get_key(), store).handle(Deposit(amount))
    resent = Account(account.get_key(), store)
    counts = count_requests(moto_client)
    assert resent.handle(Deposit(7), commit_id="d-7") == []
    assert counts == {"BatchGetItem": 1, "Query": 1}, "a load's requests, the head's a BatchGetItem"
    assert (resent.balance, resent.handled()) == (113, 0)
    counts.clear()
    assert resent.handle(Deposit(7), commit_id="d-7") == []
    assert counts == {"BatchGetItem": 1}, "up to date: the head and the marker, in one request"


def test_a_lost_reply_to_a_transaction_that_landed_then_handle_again_stores_once(
    store: Any, moto_client: Any
) -> None:
    account = opened(store, 100)
    lost = lose_next_reply(moto_client)
    with pytest.raises(StoreUnavailableError):
        account.handle(Deposit(30), commit_id="dep-30")
    assert lost == [True]
    assert account.handle(Deposit(30), commit_id="dep-30") == []
    reader = Account(account.get_key(), store)
    reader.refresh()
    assert (reader.balance, reader.sequence_number()) == (130, 3)
    entries = store.driver.read_feed(dict.fromkeys(range(4)), 100)
    assert [e.commit_id for e in entries if e.key == account.get_key()].count("dep-30") == 1


class TestDynamoDBOnMotoServer(StoreSuite):
    @pytest.fixture(autouse=True)
    def _table(self, server_client: Any, server_table: str) -> None:
        self.client, self.table = server_client, server_table

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return new_store(self.table, client=self.client, snapshot_interval=snapshot_interval)
