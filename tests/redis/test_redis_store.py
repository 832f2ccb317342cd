"""The whole store compliance suite on a real Redis server, a real Cluster and over TLS."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kvsourcing.protocols import EventStore
from kvsourcing.stores import redis as redis_store
from kvsourcing.testing import AsyncStoreSuite, StoreSuite
from kvsourcing.testing.domain import Counter, Incremented
from kvsourcing.testing.servers import RedisClusterNodes, RedisServer


class TestRedisStore(StoreSuite):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return redis_store.from_url(self.url, snapshot_interval=snapshot_interval)


class TestRedisClusterStore(StoreSuite):
    @pytest.fixture(autouse=True)
    def _cluster(self, redis_cluster: RedisClusterNodes) -> None:
        self.url = redis_cluster.url

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return redis_store.from_url(self.url, snapshot_interval=snapshot_interval)


def own_prefix(url: str) -> str:
    """``url`` with a prefix of the test's own: the async suite's consumers read every bucket
    of their prefix, and a record another test wrote in the default one (raw bytes, in the
    bucket of the suite's ``{bank}`` keys) would hold theirs back."""
    return f"{url}?prefix=async-{uuid.uuid4().hex[:8]}"


class TestAsyncRedisStore(AsyncStoreSuite):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.url = own_prefix(redis_server.url)

    async def new_store(self, *, snapshot_interval: int = 0) -> Any:
        return await redis_store.open_async(self.url, snapshot_interval=snapshot_interval)

    def new_sync_store(self) -> EventStore:
        return redis_store.from_url(self.url)


class TestAsyncRedisClusterStore(TestAsyncRedisStore):
    @pytest.fixture(autouse=True)
    def _server(self, redis_cluster: RedisClusterNodes) -> None:
        self.url = own_prefix(redis_cluster.url)


class TestRedisStoreOnCallersClient(StoreSuite):
    """``new_store(client)`` with a small bucket count and a custom prefix."""

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.server = redis_server

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return redis_store.new_store(
            self.server.client(), prefix="suite", buckets=7, snapshot_interval=snapshot_interval
        )


def test_tls_store_round_trip(redis_tls_server: RedisServer) -> None:
    ca = redis_tls_server.tls["ca"]
    url = f"{redis_tls_server.url}?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    key = f"tls-{uuid.uuid4()}"
    with redis_store.from_url(url, snapshot_interval=2) as store:
        writer = Counter(key, store)
        for amount in (1, 2, 3):
            writer.apply_event(Incremented(amount))
        writer.commit()
        reader = Counter(key, store)
        reader.refresh()
        assert (reader.count, reader.sequence_number()) == (6, 3)
        assert store.read_snapshot(key) is not None
