"""The store compliance suite on DynamoDB: moto in-process, and moto's server over HTTP.

Each test gets a fresh table (moto copies and scans a whole table per transaction and query).
"""

from __future__ import annotations

from typing import Any

import pytest
from dynamodb_fixtures import count_requests

from kvsourcing import EventStore
from kvsourcing.stores.dynamodb import new_store
from kvsourcing.testing import StoreSuite
from kvsourcing.testing.domain import Counter, Increment


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
            assert counts == {"GetItem": 1}
            counts.clear()
            counter.handle(Increment(3))
            assert counts == {"GetItem": 1, "UpdateItem": 1, "TransactWriteItems": 1}
            for _ in range(6):
                counter.handle(Increment())
            counts.clear()
            reader = Counter(counter.get_key(), store)
            reader.refresh()
            assert counts == {"GetItem": 1, "Query": 1}
            assert reader.sequence_number() == 7


class TestDynamoDBOnMotoServer(StoreSuite):
    @pytest.fixture(autouse=True)
    def _table(self, server_client: Any, server_table: str) -> None:
        self.client, self.table = server_client, server_table

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return new_store(self.table, client=self.client, snapshot_interval=snapshot_interval)
