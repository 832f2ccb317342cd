"""``redis://``, ``rediss://`` and ``redis+cluster://`` URLs through ``open_store`` and ``from_url``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

import kvsourcing
from kvsourcing.errors import ConfigurationError, StoreUnavailableError
from kvsourcing.stores.keyvalue import Commit
from kvsourcing.stores.redis import from_url
from kvsourcing.stores.redis.url import parse_url
from kvsourcing.testing.servers import HOST, RedisClusterNodes, RedisServer, free_port


def works(store: kvsourcing.EventStore) -> None:
    """Commit and load one record through the store's driver."""
    key = f"url-{uuid.uuid4()}"
    assert store.driver.append(Commit(key, 0, [b"via url"])) is None
    assert list(store.driver.load(key, 0).records) == [b"via url"]


def test_redis_url_opens_a_store_that_owns_its_client(redis_server: RedisServer) -> None:
    store = kvsourcing.open_store(f"redis://{HOST}:{redis_server.port}/2", snapshot_interval=3)
    with store:
        works(store)
        client = store.driver.client
        assert isinstance(client, redis.Redis)
        assert client.connection_pool.connection_kwargs["db"] == 2
        assert store.snapshot_interval == 3
        assert (store.driver.prefix, store.driver.buckets) == ("kvsourcing", 1024)
    assert all(conn._sock is None for conn in client.connection_pool._available_connections)


def test_driver_options_from_the_query_string_and_keywords(redis_server: RedisServer) -> None:
    url = f"{redis_server.url}?prefix=app:v2&buckets=64&snapshot_interval=5&socket_timeout=2.5"
    with kvsourcing.open_store(url) as store:
        assert (store.driver.prefix, store.driver.buckets, store.snapshot_interval) == ("app:v2", 64, 5)
        assert store.driver.client.connection_pool.connection_kwargs["socket_timeout"] == 2.5
        works(store)
    with from_url(url, prefix="code", buckets=8, snapshot_interval=0) as store:
        assert (store.driver.prefix, store.driver.buckets, store.snapshot_interval) == ("code", 8, 0)


def test_environment_variable_names_the_store(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KVSOURCING_STORE", redis_server.url)
    with kvsourcing.open_store() as store:
        works(store)


@pytest.fixture
def acl_user(redis_server: RedisServer, redis_cluster: RedisClusterNodes) -> Iterator[tuple[str, str]]:
    """A user with a password (and URL-hostile characters) on every server."""
    user, password = f"app-{uuid.uuid4().hex[:6]}", f"p@ss:/{uuid.uuid4().hex}"
    servers = [redis_server, *redis_cluster.servers]
    for server in servers:
        with server.client() as admin:
            admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    yield user, password
    for server in servers:
        with server.client() as admin:
            admin.acl_deluser(user)


def quoted(text: str) -> str:
    return text.replace("@", "%40").replace(":", "%3A").replace("/", "%2F")


def test_url_with_user_and_password(redis_server: RedisServer, acl_user: tuple[str, str]) -> None:
    user, password = acl_user
    url = f"redis://{user}:{quoted(password)}@{HOST}:{redis_server.port}/0"
    with kvsourcing.open_store(url) as store:
        works(store)
        assert store.driver.client.acl_whoami() == user


def test_cluster_url_with_wrong_password_is_unavailable_without_the_password(
    redis_cluster: RedisClusterNodes, acl_user: tuple[str, str]
) -> None:
    user, password = acl_user
    wrong = password + "x"
    url = f"redis+cluster://{user}:{quoted(wrong)}@{HOST}:{redis_cluster.servers[0].port}"
    with pytest.raises(StoreUnavailableError, match=f"{HOST}:{redis_cluster.servers[0].port}") as caught:
        from_url(url)
    message = str(caught.value)
    assert wrong not in message and quoted(wrong) not in message and password not in message
    good = f"redis+cluster://{user}:{quoted(password)}@{HOST}:{redis_cluster.servers[0].port}"
    with from_url(good) as store:
        works(store)


def test_rediss_url_with_ca_from_the_query_string(redis_tls_server: RedisServer) -> None:
    ca = redis_tls_server.tls["ca"]
    url = f"rediss://{HOST}:{redis_tls_server.port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    with kvsourcing.open_store(url) as store:
        works(store)


def test_rediss_url_refuses_a_server_signed_by_an_unknown_ca(redis_tls_server: RedisServer) -> None:
    url = f"rediss://{HOST}:{redis_tls_server.port}/0?ssl_cert_reqs=required"
    with (
        kvsourcing.open_store(url) as store,
        pytest.raises(StoreUnavailableError, match=rf"{HOST}:{redis_tls_server.port}.*certificate"),
    ):
        works(store)


def test_cluster_url_with_every_node(redis_cluster: RedisClusterNodes) -> None:
    assert redis_cluster.url.count(",") == 2
    with kvsourcing.open_store(redis_cluster.url, snapshot_interval=2) as store:
        assert isinstance(store.driver.client, RedisCluster)
        assert len(store.driver.client.get_primaries()) == 3
        works(store)


def test_cluster_url_with_one_seed_node(redis_cluster: RedisClusterNodes) -> None:
    with from_url(f"redis+cluster://{HOST}:{redis_cluster.servers[1].port}/0") as store:
        assert len(store.driver.client.get_primaries()) == 3
        works(store)


def test_unreachable_cluster_is_unavailable_at_once() -> None:
    port = free_port()
    with pytest.raises(StoreUnavailableError, match=rf"{HOST}:{port}"):
        from_url(f"redis+cluster://{HOST}:{port}?socket_connect_timeout=1")


def test_unknown_keyword_option_is_a_configuration_error(redis_server: RedisServer) -> None:
    with pytest.raises(
        ConfigurationError, match=r"colour.*it takes buckets, .*feed, prefix, snapshot_interval"
    ):
        from_url(redis_server.url, colour="blue")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost:6379", "scheme must be one of"),
        ("redis:/localhost", "scheme must be one of"),
        ("redis://", "host is missing"),
        ("redis://:6379/0", "host is missing"),
        ("redis://localhost:port/0", "port 'port'"),
        ("redis://localhost:0", "port '0'"),
        ("redis://localhost:70000", "port '70000'"),
        ("redis://[::1/0", "IPv6"),
        ("redis://localhost/zero", "database number"),
        ("redis://a:1,b:2", r"redis\+cluster://"),
        ("redis+cluster://a:1,,b:2", "host is missing"),
        ("redis+cluster://a:1/3", "only database 0"),
        ("redis://localhost?colour=blue", "unknown query option 'colour'"),
        ("redis://localhost?ssl_ca_certs=/ca.pem", r"need rediss://"),
        ("redis://localhost?db=1", "unknown query option 'db'"),
        ("redis://localhost?socket_timeout=1&socket_timeout=2", "more than once"),
        ("redis://localhost?socket_timeout=soon", "socket_timeout"),
        ("redis://localhost?buckets=many", "buckets must be a whole number"),
        ("redis://localhost?buckets=0", "buckets must be an int >= 1"),
        ("redis://localhost?prefix={app}", "prefix"),
        ("redis://localhost?prefix=", "prefix"),
        ("redis://localhost?snapshot_interval=-1", "snapshot_interval must be a whole number"),
        ("redis://localhost/0#frag", "fragment"),
        ("redis://localhost?a", "query"),
    ],
)
def test_malformed_urls_fail_at_once_saying_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        from_url(url)
    if "buckets must be an int" not in problem and "prefix" not in problem:
        assert "expected for example redis://user:password@localhost:6379/0" in str(caught.value)


def test_messages_never_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_url("redis://alice:s3cret@localhost:port/0")
    assert "s3cret" not in str(caught.value) and "alice:***@localhost" in str(caught.value)


def test_parsed_urls_keep_ipv6_hosts_and_default_ports() -> None:
    parsed = parse_url("rediss+cluster://u:p@[::1]:7000,redis.example")
    assert (parsed.tls, parsed.cluster, parsed.nodes) == (
        True,
        True,
        [("::1", 7000), ("redis.example", 6379)],
    )
    assert parsed.node_url("::1", 7000) == "rediss://u:p@[::1]:7000/0"


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
