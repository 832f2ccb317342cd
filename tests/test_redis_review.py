"""Regression tests for bugs found reviewing the Redis driver, each on a real server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from redis_fixtures import HOST, RedisClusterNodes, RedisServer, start_server

from kvsourcing.errors import ConfigurationError, StoreUnavailableError
from kvsourcing.stores.keyvalue import Commit, partition_bucket
from kvsourcing.stores.redis import RedisDriver, from_url, new_store
from kvsourcing.stores.redis.url import parse_url


@pytest.mark.parametrize("option", ["protocol=2", "protocol=3", "legacy_responses=false"])
@pytest.mark.parametrize("kind", ["single", "cluster"])
def test_read_feed_works_with_every_response_shape_the_url_can_choose(
    redis_server: RedisServer, redis_cluster: RedisClusterNodes, kind: str, option: str
) -> None:
    base = redis_server.url if kind == "single" else redis_cluster.url
    with from_url(f"{base}?{option}&prefix=shape-{uuid.uuid4().hex[:8]}&buckets=4") as store:
        driver = store.driver
        keys = [f"shape-{n}-{uuid.uuid4()}" for n in range(6)]
        for key in keys:
            assert driver.append(Commit(key, 0, [b"one", b"two"])) is None
        entries = driver.read_feed(dict.fromkeys(range(4)), 100)
        assert sorted((e.key, e.first, list(e.records)) for e in entries) == sorted(
            (key, 1, [b"one", b"two"]) for key in keys
        )
        assert all(partition_bucket(e.key, 4) == e.bucket for e in entries)
        last = {e.bucket: e.position for e in entries}
        assert driver.read_feed(last, 100) == []


def test_a_read_only_replica_is_unavailable(redis_server: RedisServer, tmp_path: Path) -> None:
    replica = start_server(tmp_path, "--replicaof", HOST, str(redis_server.port))
    driver = RedisDriver(replica.client(), prefix=f"ro-{uuid.uuid4().hex[:8]}", owns_client=True)
    try:
        with pytest.raises(StoreUnavailableError, match=rf"{HOST}:{replica.port}.*read only"):
            driver.append(Commit(f"ro-{uuid.uuid4()}", 0, [b"r"]))
        with pytest.raises(StoreUnavailableError, match="read only"):
            driver.swap_value("lease", None, b"me", ttl=5)
        with pytest.raises(StoreUnavailableError, match="read only"):
            driver.trim_feed(0, ["1-0"])
    finally:
        driver.close()
        replica.stop()


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://alice:pa/Ss3cret@localhost/0", "Ss3cret"),
        ("redis://alice:12/Ss3cret@localhost/0", "Ss3cret"),
        ("redis://alice:pa?Ss3cret@localhost/0", "Ss3cret"),
        ("redis://alice:pa#Ss3cret@localhost/0", "Ss3cret"),
        ("redis://alice:Ss3cret/pa@localhost/0", "Ss3cret"),
        ("rediss://localhost/0?ssl_password=Ss3cret&colour=blue", "Ss3cret"),
        ("redis://localhost/0?password=Ss3cret", "Ss3cret"),
    ],
)
def test_malformed_urls_never_show_the_password(url: str, secret: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_url(url)
    assert secret not in str(caught.value)


def test_unencoded_user_info_is_refused_saying_so() -> None:
    with pytest.raises(ConfigurationError, match=r"alice:\*\*\*@localhost/0.*percent-encode"):
        from_url("redis://alice:pa/ss@localhost/0")


def test_a_query_value_with_an_at_sign_is_not_user_info(redis_server: RedisServer) -> None:
    url = f"redis://{HOST}:{redis_server.port}/0?client_name=me@host"
    with from_url(url) as store:
        assert store.driver.client.client_getname() == "me@host"


def test_a_parsed_url_repr_shows_no_secret() -> None:
    parsed = parse_url("rediss://u:Ss3cret@localhost/0?ssl_password=Kk3y")
    assert "Ss3cret" not in repr(parsed) and "Kk3y" not in repr(parsed)


@pytest.mark.parametrize("kind", ["single", "cluster"])
def test_a_client_that_decodes_responses_is_refused_before_anything_is_written(
    redis_server: RedisServer, redis_cluster: RedisClusterNodes, kind: str
) -> None:
    server = redis_server if kind == "single" else redis_cluster
    client = server.client(decode_responses=True)
    try:
        with pytest.raises(ConfigurationError, match="decode_responses"):
            new_store(client, prefix=f"decode-{uuid.uuid4().hex[:8]}")
    finally:
        client.close()
