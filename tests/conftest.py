"""The servers every folder of tests may use: real Redis (single node, Cluster, TLS) and
DynamoDB on moto. Each fixture is a thin wrapper of ``kvsourcing.testing`` (servers, moto,
requests), which the benchmarks use as well."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kvsourcing.testing import moto, servers
from kvsourcing.testing.requests import count_round_trips


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.RedisServer]:
    """A single-node Redis server for the whole session."""
    server = servers.start_server(tmp_path_factory.mktemp("redis-single"))
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: servers.RedisServer) -> Iterator[redis.Redis]:
    """A fresh client of the session's single-node server."""
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def round_trips() -> Iterator[list[bytes]]:
    """Every packet the process's redis-py connections send, as it is sent."""
    with count_round_trips() as sent:
        yield sent


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.RedisClusterNodes]:
    """A real 3-primary Redis Cluster (no replicas) for the whole session."""
    cluster = servers.start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        servers.stop_cluster(cluster)


@pytest.fixture(scope="session")
def redis_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.RedisServer]:
    """A TLS-only Redis server with a certificate signed by a throwaway CA."""
    server = servers.start_tls_server(tmp_path_factory.mktemp("redis-tls"))
    yield server
    server.stop()


@pytest.fixture
def aws_env(tmp_path: Path) -> Iterator[None]:
    """Fake credentials and region, and nothing from the machine's AWS configuration."""
    with moto.fake_aws(tmp_path):
        yield


@pytest.fixture
def moto_aws(aws_env: None) -> Iterator[None]:
    """moto in-process, one request at a time."""
    with moto.serialised_mock_aws():
        yield


@pytest.fixture
def moto_client(moto_aws: None) -> Iterator[Any]:
    """A DynamoDB client on in-process moto, made the way the store makes its own."""
    from kvsourcing.stores.dynamodb import make_client

    client = make_client(region=moto.REGION)
    yield client
    client.close()


@pytest.fixture
def moto_table(moto_client: Any) -> str:
    """A fresh table on in-process moto."""
    from kvsourcing.stores.dynamodb import create_table

    name = moto.fresh_table_name()
    create_table(moto_client, name)
    return name


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """A moto server on a free local port, serving one request at a time; stopped at the end."""
    with moto.moto_server() as url:
        yield url


@pytest.fixture
def server_client(aws_env: None, moto_server_url: str) -> Iterator[Any]:
    """A DynamoDB client on the moto server."""
    from kvsourcing.stores.dynamodb import make_client

    client = make_client(region=moto.REGION, endpoint_url=moto_server_url)
    yield client
    client.close()


@pytest.fixture
def server_table(server_client: Any) -> Iterator[str]:
    """A fresh table on the moto server, deleted afterwards."""
    from kvsourcing.stores.dynamodb import create_table

    name = moto.fresh_table_name()
    create_table(server_client, name)
    yield name
    server_client.delete_table(TableName=name)
