"""The async store compliance suite on DynamoDB: aiobotocore over HTTP to moto's server
(serialised, as for the sync suites), on a fresh table per test, with the sync store on
the same table to show that each reads what the other wrote."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kvsourcing import EventStore, aio
from kvsourcing.errors import ConfigurationError, StoreUnavailableError
from kvsourcing.stores.dynamodb import new_async_store, new_store
from kvsourcing.stores.dynamodb.aio import make_async_client
from kvsourcing.testing import AsyncStoreSuite
from kvsourcing.testing.domain import Account, Deposit
from kvsourcing.testing.moto import REGION
from kvsourcing.testing.servers import free_port


class TestAsyncDynamoDBOnMotoServer(AsyncStoreSuite):
    pushes = False  # DynamoDB cannot be told of new items: its consumers poll

    @pytest.fixture(autouse=True)
    def _table(self, server_client: Any, server_table: str, moto_server_url: str) -> None:
        self.client, self.table, self.url = server_client, server_table, moto_server_url

    async def new_store(self, *, snapshot_interval: int = 0) -> Any:
        return new_async_store(
            self.table, region=REGION, endpoint_url=self.url, snapshot_interval=snapshot_interval
        )

    def new_sync_store(self) -> EventStore:
        return new_store(self.table, client=self.client)

    def test_a_given_client_stays_open_after_the_store_closes(self) -> None:
        async def main() -> None:
            async with make_async_client(REGION, self.url) as client:
                store = new_async_store(self.table, client=client)
                key = self.key()
                await Account(key, store).ahandle(Deposit(2))
                await store.close()
                reply = await client.describe_table(TableName=self.table)
                assert reply["Table"]["TableName"] == self.table

        asyncio.run(main())

    def test_open_store_reads_a_dynamodb_url(self) -> None:
        key = self.key()
        Account(key, self.new_sync_store()).handle(Deposit(9))

        async def main() -> None:
            url = f"dynamodb://{self.table}?region={REGION}&endpoint_url={self.url}"
            async with aio.open_store(url) as store:
                assert (await self.read(store, key)).balance == 9

        asyncio.run(main())


def test_a_bad_endpoint_is_a_configuration_error(aws_env: None) -> None:
    async def main() -> None:
        store = new_async_store("t-bad", region=REGION, endpoint_url="not a url")
        try:
            with pytest.raises(ConfigurationError, match="endpoint_url"):
                await Account("k", store).arefresh()
        finally:
            await store.close()

    asyncio.run(main())


def test_an_unreachable_endpoint_is_store_unavailable(aws_env: None) -> None:
    async def main() -> None:
        store = new_async_store("t-down", region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}")
        try:
            with pytest.raises(StoreUnavailableError, match="cannot reach DynamoDB at http://127"):
                await Account("k", store).arefresh()
        finally:
            await store.close()

    asyncio.run(main())


def test_a_client_with_its_settings_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        new_async_store("t-both", client=object(), region=REGION)
