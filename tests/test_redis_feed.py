"""The durable feed on Redis: the FeedSuite on a node and a Cluster, the driver's feed and
value primitives, and consumers in real processes killed with SIGKILL."""

from __future__ import annotations

import uuid

import pytest
from redis_fixtures import RedisClusterNodes, RedisServer

from kvsourcing.protocols import EventStore
from kvsourcing.stores import redis as redis_store
from kvsourcing.testing import FeedSuite


class TestRedisFeed(FeedSuite):
    """Default bucket count (1024): a consumer reads every bucket's stream each poll."""

    redis_prefix = f"feed-{uuid.uuid4().hex[:8]}"

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return redis_store.from_url(self.url, prefix=self.redis_prefix, snapshot_interval=snapshot_interval)


class TestRedisClusterFeed(FeedSuite):
    redis_prefix = f"feed-{uuid.uuid4().hex[:8]}"

    @pytest.fixture(autouse=True)
    def _cluster(self, redis_cluster: RedisClusterNodes) -> None:
        self.url = redis_cluster.url

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return redis_store.from_url(self.url, prefix=self.redis_prefix, snapshot_interval=snapshot_interval)
