"""Security: passwords, a prefix-limited ACL user, TLS with a throwaway CA, no secret in
messages, logs or reprs, and nothing ever unpickled."""

from __future__ import annotations

import ast
import logging
import os
import pickle
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from hammer import Add, Tally, Ticked, record_figure, tally_events

import kvsourcing
from kvsourcing import ConfigurationError, StoreUnavailableError
from kvsourcing.codecs import JsonCodec
from kvsourcing.errors import EncodingError
from kvsourcing.stores.keyvalue import Commit, FeedConsumer
from kvsourcing.testing.moto import REGION
from kvsourcing.testing.servers import (
    HOST,
    RedisClusterNodes,
    RedisServer,
    free_port,
    make_tls_files,
    start_server,
    start_tls_server,
)

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = f"s3cret/{uuid.uuid4().hex}@:x"  # URL-hostile on purpose
USER = "shop-app"
PREFIX = "shop"
# What the Redis driver sends (stores/redis/driver.py, feed.py): EVALSHA of its scripts,
# SCRIPT LOAD after NOSCRIPT, HMGET/HEXISTS/LRANGE (loads of a store without snapshots: the
# commands the load script runs), GET (read_value), XREAD/XRANGE
# (read_feed on a node/a cluster); and what its scripts (stores/redis/scripts.py) call,
# which Redis checks against the same user.
ACL_COMMANDS = (
    "-@all +evalsha +script|load +lrange +get +mget +xread +xrange "
    "+hexists +hlen +llen +xlen +rpush +hset +xadd +hmget +hgetall +set +del"
)
ACL_RULE = f"on >{PASSWORD} resetkeys ~{{{PREFIX}:* resetchannels {ACL_COMMANDS}"


def secret_forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), quote(secret)]


def assert_no_secret(text: str, secret: str = PASSWORD) -> None:
    for form in secret_forms(secret):
        assert form not in text, f"secret leaked: ...{text[max(0, text.find(form) - 80) :][:200]}"


def error_text(err: BaseException) -> str:
    """Everything an error shows: its message, repr, chained causes, the formatted traceback."""
    parts = ["".join(traceback.format_exception(err))]
    seen: BaseException | None = err
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A server whose default user has a password and with one ACL user limited to ``PREFIX``."""
    server = start_server(tmp_path_factory.mktemp("redis-secure"))
    try:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", USER, "reset", *ACL_RULE.split())
        admin.config_set("requirepass", PASSWORD)
        admin.close()
        yield server
    finally:
        server.stop()


def admin_of(server: RedisServer) -> redis.Redis:
    return server.client(password=PASSWORD)


def user_url(server: RedisServer, prefix: str = PREFIX, user: str = USER, password: str = PASSWORD) -> str:
    return f"redis://{quote(user)}:{quote(password, safe='')}@{HOST}:{server.port}/0?prefix={prefix}"


# --------------------------------------------------------------------------- requirepass


def test_requirepass_server_needs_the_password(secure_redis: RedisServer) -> None:
    url = f"redis://:{quote(PASSWORD, safe='')}@{HOST}:{secure_redis.port}/0?prefix=default-user"
    with kvsourcing.open_store(url) as store:
        Tally("a", store).handle(Add("with-password", 2))
        assert len(store.read_events("a")) == 2
    for bad in (f"redis://{HOST}:{secure_redis.port}/0", f"redis://:wrong@{HOST}:{secure_redis.port}/0"):
        with kvsourcing.open_store(bad) as store, pytest.raises(StoreUnavailableError) as caught:
            store.read_events("a")
        assert_no_secret(error_text(caught.value))


# --------------------------------------------------------------------------- ACL


def test_acl_user_limited_to_the_prefix_runs_the_whole_store(secure_redis: RedisServer) -> None:
    admin = admin_of(secure_redis)
    admin.acl_log_reset()
    with kvsourcing.open_store(user_url(secure_redis), snapshot_interval=3) as store:
        tally = Tally("cart{1}:*", store)
        for number in range(4):
            tally.handle(Add(f"op-{number}", 2), commit_id=f"op-{number}")
        assert tally.handle(Add("op-0", 2), commit_id="op-0") == []  # commit ids: HEXISTS
        admin.script_flush()  # NOSCRIPT: the driver reloads its scripts with SCRIPT LOAD
        fresh = Tally("cart{1}:*", store)
        fresh.refresh()  # snapshot + tail: the load script
        assert fresh.count == 8 and store.read_snapshot("cart{1}:*") is not None
        assert len(store.read_events("cart{1}:*")) == 8  # LRANGE
        seen: list[Any] = []

        class Projection:
            def handle(self, published: Any) -> None:
                seen.append(published.data)

        consumer = FeedConsumer(store, "projection", tally_events)  # XREAD, GET, swap script
        consumer.add_handler(Projection())
        consumer.run_once()
        consumer.stop()
        assert seen[:2] == [Ticked("op-0", 0, 2), Ticked("op-0", 1, 2)] and len(seen) == 8
    assert admin.acl_log() == []  # nothing the store did was denied
    assert all(k.startswith(b"{shop:") for k in admin.scan_iter(count=1000) if b"shop" in k)
    admin.close()


def test_acl_user_limited_to_the_prefix_can_reencrypt(secure_redis: RedisServer) -> None:
    """``kvsourcing reencrypt`` (the rewrite script) needs no command beyond the store's."""
    from kvsourcing.crypto import AesGcmCipher
    from kvsourcing.stores.keyvalue.reencrypt import reencrypt

    admin = admin_of(secure_redis)
    admin.acl_log_reset()
    old, new = os.urandom(32), os.urandom(32)
    with kvsourcing.open_store(
        user_url(secure_redis), snapshot_interval=2, cipher=AesGcmCipher(old)
    ) as store:
        for number in range(3):
            Tally("rotated", store).handle(Add(f"op-{number}", 1))
    with kvsourcing.open_store(user_url(secure_redis), cipher=AesGcmCipher(new, old)) as store:
        assert reencrypt(store, "rotated") == 4  # three records and the snapshot
    with kvsourcing.open_store(user_url(secure_redis), cipher=AesGcmCipher(new)) as store:
        assert len(store.read_events("rotated")) == 3 and store.read_snapshot("rotated") is not None
    assert admin.acl_log() == []
    admin.close()


def test_acl_user_cannot_touch_keys_outside_its_prefix(secure_redis: RedisServer) -> None:
    admin = admin_of(secure_redis)
    admin.set("outside", "secret-data")
    admin.rpush("{other:b1}:e:k", b"x")
    user = secure_redis.client(username=USER, password=PASSWORD)
    denied = [
        lambda: user.get("outside"),
        lambda: user.set("outside", "overwritten"),
        lambda: user.lrange("{other:b1}:e:k", 0, -1),
        lambda: user.lrange("{shop2:b1}:e:k", 0, -1),
        lambda: user.keys("*"),
        lambda: user.flushall(),
        lambda: user.config_get("requirepass"),
        lambda: user.eval("return redis.call('GET', KEYS[1])", 1, "outside"),
        lambda: user.acl_setuser(USER, commands=["+@all"]),
    ]
    for call in denied:
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    # A script the user loads runs with the user's rights: declared or not, outside keys are denied.
    sha = user.script_load("return redis.call('GET', 'outside')")
    with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)no permissions|NOPERM|can.t access"):
        user.evalsha(sha, 0)
    sha = user.script_load("return redis.call('GET', KEYS[1])")
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.evalsha(sha, 1, "outside")
    # A store opened by that user under another prefix cannot write or read anything.
    with kvsourcing.open_store(user_url(secure_redis, prefix="other")) as store:
        with pytest.raises(StoreUnavailableError) as caught:
            Tally("k", store).handle(Add("intruder", 1))
        assert "NoPermissionError" in str(caught.value)
        assert_no_secret(error_text(caught.value))
        with pytest.raises(StoreUnavailableError):
            store.read_events("k")
    assert admin.get("outside") == b"secret-data"
    assert admin.lrange("{other:b1}:e:k", 0, -1) == [b"x"]
    assert not any(k.startswith(b"{other:b") and k != b"{other:b1}:e:k" for k in admin.scan_iter(count=1000))
    user.close()
    admin.close()
    record_figure("ACL denials checked", denied=len(denied) + 3)


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A TLS-only server with a certificate from a CA made here, and the ACL user."""
    server = start_tls_server(tmp_path_factory.mktemp("redis-tls-secure"))
    try:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", USER, "reset", *ACL_RULE.split())
        admin.close()
        yield server
    finally:
        server.stop()


def tls_url(server: RedisServer, ca: str | None) -> str:
    url = f"rediss://{USER}:{quote(PASSWORD, safe='')}@{HOST}:{server.port}/0?prefix={PREFIX}"
    return url + (f"&ssl_ca_certs={quote(ca)}&ssl_cert_reqs=required" if ca else "")


def test_tls_with_the_test_ca_works_and_anything_else_is_refused(
    tls_redis: RedisServer, tmp_path: Path
) -> None:
    with kvsourcing.open_store(tls_url(tls_redis, tls_redis.tls["ca"])) as store:
        Tally("tls", store).handle(Add("over-tls", 3))
        assert [e.data["op"] for e in store.read_events("tls")] == ["over-tls"] * 3
    other_ca = make_tls_files(tmp_path)["ca"]
    plain = f"redis://{USER}:{quote(PASSWORD, safe='')}@{HOST}:{tls_redis.port}/0?socket_timeout=2"
    for url in (tls_url(tls_redis, None), tls_url(tls_redis, other_ca), plain):
        with kvsourcing.open_store(url) as store, pytest.raises(StoreUnavailableError) as caught:
            store.read_events("tls")
        assert_no_secret(error_text(caught.value))


def test_tls_verifies_the_server_certificate(tls_redis: RedisServer, tmp_path: Path) -> None:
    other_ca = make_tls_files(tmp_path)["ca"]
    with (
        kvsourcing.open_store(tls_url(tls_redis, other_ca)) as store,
        pytest.raises(StoreUnavailableError) as caught,
    ):
        store.read_events("tls")
    assert "certificate verify failed" in str(caught.value).lower()


# --------------------------------------------------------------------------- secrets


def failing_connections(secure_redis: RedisServer, redis_cluster: RedisClusterNodes) -> list[tuple[str, Any]]:
    closed = free_port()
    encoded = quote(PASSWORD, safe="")
    return [
        ("wrong password", lambda: kvsourcing.open_store(user_url(secure_redis, password=PASSWORD + "x"))),
        ("wrong user", lambda: kvsourcing.open_store(user_url(secure_redis, user="nobody"))),
        ("refused", lambda: kvsourcing.open_store(f"redis://u:{encoded}@{HOST}:{closed}/0")),
        ("bad port", lambda: kvsourcing.open_store(f"redis://u:{encoded}@{HOST}:99999/0")),
        ("bad option", lambda: kvsourcing.open_store(f"redis://u:{encoded}@{HOST}:{closed}/0?nope=1")),
        ("cluster refused", lambda: kvsourcing.open_store(f"redis+cluster://u:{encoded}@{HOST}:{closed}")),
        (
            "cluster wrong password",
            lambda: kvsourcing.open_store(
                f"redis+cluster://u:{encoded}@{HOST}:{redis_cluster.servers[0].port}"
            ),
        ),
    ]


def test_passwords_appear_in_no_error_and_no_log_record(
    secure_redis: RedisServer, redis_cluster: RedisClusterNodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    failures = 0
    for name, open_it in failing_connections(secure_redis, redis_cluster):
        with pytest.raises((StoreUnavailableError, ConfigurationError)) as caught:
            store = open_it()
            try:
                Tally("k", store).handle(Add(name, 1))
            finally:
                store.close()
        assert_no_secret(error_text(caught.value))
        failures += 1
    assert failures == 7
    assert_no_secret(logged_text(caplog))
    record_figure("connection failures checked for leaked passwords", failures=failures)


def test_aws_secret_appears_in_no_error_and_no_log_record(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"aws-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    caplog.set_level(logging.DEBUG)
    url = f"dynamodb://events?region={REGION}&endpoint_url=http://{HOST}:{free_port()}"
    store = kvsourcing.open_store(url)
    try:
        assert_no_secret(repr(store) + repr(store.driver) + repr(store.driver.client), secret)
        with pytest.raises(StoreUnavailableError) as caught:
            store.read_events("k")
    finally:
        store.close()
    assert_no_secret(error_text(caught.value), secret)
    assert any(r.name.startswith("botocore") for r in caplog.records)  # DEBUG logging was on
    assert_no_secret(logged_text(caplog), secret)


def test_passwords_appear_in_no_repr(
    secure_redis: RedisServer, tls_redis: RedisServer, redis_cluster: RedisClusterNodes
) -> None:
    cluster_password = f"cl-{uuid.uuid4().hex}"
    for server in redis_cluster.servers:
        node = server.client()
        node.acl_setuser(
            "cluster-user", enabled=True, passwords=[f"+{cluster_password}"], keys=["*"], commands=["+@all"]
        )
        node.close()
    stores = [
        (kvsourcing.open_store(user_url(secure_redis)), PASSWORD),
        (kvsourcing.open_store(tls_url(tls_redis, tls_redis.tls["ca"])), PASSWORD),
        (
            kvsourcing.open_store(
                f"redis+cluster://cluster-user:{cluster_password}@{HOST}:{redis_cluster.servers[0].port}"
            ),
            cluster_password,
        ),
    ]
    try:
        for store, secret in stores:
            Tally("repr", store).refresh()  # connected: the pools hold live connections
            client = store.driver.client
            shown = [repr(store), repr(store.driver), repr(client), str(client)]
            pool = getattr(client, "connection_pool", None)
            if pool is not None:
                shown.append(repr(pool))
            else:
                shown += [repr(node) for node in client.get_nodes()]
                shown += [repr(node.redis_connection) for node in client.get_nodes()]
            assert_no_secret("\n".join(shown), secret)
    finally:
        for store, _ in stores:
            store.close()
        for server in redis_cluster.servers:
            node = server.client()
            node.acl_deluser("cluster-user")
            node.close()


# --------------------------------------------------------------------------- no pickle

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "jsonpickle", "marshal", "shelve"}


def unsafe_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module.split(".")[0]]
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value] if node.value in UNSAFE_MODULES else []
        elif isinstance(node, ast.Attribute) and node.attr in ("loads", "load", "Unpickler"):
            base = node.value
            names = [base.id] if isinstance(base, ast.Name) else []
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n in UNSAFE_MODULES]
    return found


def test_no_library_source_uses_pickle() -> None:
    sources = sorted((ROOT / "core").rglob("*.py")) + sorted((ROOT / "stores").rglob("*.py"))
    assert len(sources) > 20
    assert [use for path in sources for use in unsafe_uses(path)] == []
    # The scanner itself finds what it looks for.
    probe = ROOT / "tests" / f".probe-{uuid.uuid4().hex}.py"
    probe.write_text("import pickle\nfrom marshal import loads\nx = __import__('dill')\n")
    try:
        assert len(unsafe_uses(probe)) == 3
    finally:
        probe.unlink()


class Boom:
    """Unpickling this runs ``os.mkdir(marker)``: if the marker exists, something unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.mkdir, (self.marker,))


def crafted_pickles(marker: Path) -> list[bytes]:
    return [pickle.dumps(Boom(str(marker)), protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]


@pytest.mark.parametrize("where", ["memory", "memory-json", "redis"])
def test_a_stored_pickle_is_never_unpickled(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    marker = tmp_path / "unpickled"
    payloads = crafted_pickles(marker)
    if where == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        client = server.client()
        store = kvsourcing.stores.redis.new_store(client, prefix=f"pickle-{uuid.uuid4().hex[:6]}")
    else:
        client = None
        store = kvsourcing.open_store("memory://", codec=JsonCodec() if where == "memory-json" else None)
    try:
        for index, payload in enumerate(payloads):
            key = f"crafted-{index}"
            if client is None:
                store.driver.append(Commit(key, 0, [payload], snapshot=payload))
            else:
                events, snapshots, _ = store.driver.keys(key)
                client.rpush(events, payload)
                client.hset(snapshots, mapping={"s": 1, "d": payload})
            with pytest.raises(EncodingError):
                store.read_events(key)
            with pytest.raises(EncodingError):
                Tally(key, store).refresh()  # the snapshot
            with pytest.raises(EncodingError):
                store.read_snapshot(key)
        assert not marker.exists()
        assert pickle.loads(payloads[-1]) is None and marker.exists()  # the payloads were live
        record_figure(f"crafted pickles refused ({where})", payloads=len(payloads))
    finally:
        store.close()
        if client is not None:
            client.close()


def feed_with_a_pickle(redis_server: RedisServer, marker: Path) -> tuple[Any, Any]:
    client = redis_server.client()
    store = kvsourcing.stores.redis.new_store(client, prefix=f"pfeed-{uuid.uuid4().hex[:6]}", buckets=1)
    Tally("k", store).handle(Add("ok", 1))
    client.xadd(store.driver.feed_key(0), {"k": "k", "s": 2, "r": crafted_pickles(marker)[-1]})
    consumer = FeedConsumer(store, "p", tally_events)
    consumer.add_handler(type("Ignore", (), {"handle": lambda self, published: None})())
    return store, consumer


def test_pickle_bytes_in_the_redis_feed_are_not_unpickled(redis_server: RedisServer, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    store, consumer = feed_with_a_pickle(redis_server, marker)
    try:
        with pytest.raises(Exception):  # noqa: B017 - which error is the next test's concern
            consumer.run_once()
        assert not marker.exists()
    finally:
        consumer.stop()
        store.driver.client.close()


def test_a_corrupt_redis_feed_entry_fails_with_encoding_error(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store, consumer = feed_with_a_pickle(redis_server, tmp_path / "unpickled")
    try:
        with pytest.raises(EncodingError):
            consumer.run_once()
    finally:
        consumer.stop()
        store.driver.client.close()
