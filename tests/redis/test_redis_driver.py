"""The Redis driver's primitives on a real server and a real 3-node Cluster."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.crc import key_slot

from kvsourcing.errors import CommitTooLargeError, ConfigurationError, EncodingError, StoreUnavailableError
from kvsourcing.stores.keyvalue import (
    ALREADY_STORED,
    Commit,
    FeedDriver,
    FeedEntry,
    Snapshot,
    partition_bucket,
)
from kvsourcing.stores.redis import AsyncRedisDriver, RedisDriver, from_url, new_store
from kvsourcing.stores.redis.protocol import unpack_records
from kvsourcing.testing.servers import HOST, NO_RETRY, RedisClusterNodes, RedisServer, free_port, start_server


def fresh_key(text: str = "") -> str:
    return f"driver-{text}{uuid.uuid4()}"


@pytest.fixture(params=["single", "cluster"])
def driver(
    request: pytest.FixtureRequest, redis_server: RedisServer, redis_cluster: RedisClusterNodes
) -> Iterator[RedisDriver]:
    """A driver on the single node, then on the cluster."""
    client = redis_server.client() if request.param == "single" else redis_cluster.client()
    driver = RedisDriver(client, owns_client=True)
    yield driver
    driver.close()


def records(first: int, last: int) -> list[bytes]:
    return [f"record {n}".encode() for n in range(first, last + 1)]


def test_append_then_load_returns_the_records(driver: RedisDriver) -> None:
    key = fresh_key()
    assert driver.append(Commit(key, 0, records(1, 3))) is None
    assert driver.append(Commit(key, 3, records(4, 4))) is None
    loaded = driver.load(key, 0)
    assert (loaded.snapshot, loaded.first, list(loaded.records)) == (None, 1, records(1, 4))
    after = driver.load(key, 2)
    assert (after.first, list(after.records)) == (3, records(3, 4))
    assert list(driver.load(key, 4).records) == []


def test_unknown_aggregate_loads_empty(driver: RedisDriver) -> None:
    loaded = driver.load(fresh_key(), 0)
    assert (loaded.snapshot, loaded.first, list(loaded.records), loaded.last) == (None, 1, [], 0)


def test_clash_writes_nothing_and_returns_the_actual_head(driver: RedisDriver) -> None:
    key = fresh_key()
    driver.append(Commit(key, 0, records(1, 2)))
    assert driver.append(Commit(key, 1, [b"late", b"later"], snapshot=b"state")) == 2
    assert driver.append(Commit(key, 5, [b"gap"])) == 2
    loaded = driver.load(key, 0)
    assert (loaded.snapshot, list(loaded.records)) == (None, records(1, 2))


def test_a_resent_commit_id_writes_nothing_and_says_so(driver: RedisDriver) -> None:
    key = fresh_key()
    assert driver.append(Commit(key, 0, [b"a"], commit_id="cmd-1")) is None
    assert driver.append(Commit(key, 1, [b"b"], snapshot=b"s", commit_id="cmd-2")) is None
    assert driver.append(Commit(key, 0, [b"a"], commit_id="cmd-1")) == ALREADY_STORED
    assert driver.append(Commit(key, 2, [b"a"], commit_id="cmd-1")) == ALREADY_STORED
    assert driver.append(Commit(key, 0, [b"x"], commit_id="cmd-3")) == 2
    assert driver.append(Commit(fresh_key(), 0, [b"other"], commit_id="cmd-1")) is None
    assert list(driver.load(key, 0, use_snapshot=False).records) == [b"a", b"b"]
    assert driver.load(key, 0).snapshot == Snapshot(2, b"s")


def test_snapshot_is_written_at_the_commit_last_and_skips_older_records(driver: RedisDriver) -> None:
    key = fresh_key()
    driver.append(Commit(key, 0, records(1, 3)))
    driver.append(Commit(key, 3, records(4, 5), snapshot=b"state at 5"))
    driver.append(Commit(key, 5, records(6, 7)))
    loaded = driver.load(key, 0)
    assert loaded.snapshot == Snapshot(5, b"state at 5")
    assert (loaded.first, list(loaded.records), loaded.last) == (6, records(6, 7), 7)
    newer = driver.load(key, 5)
    assert (newer.snapshot, newer.first, list(newer.records)) == (None, 6, records(6, 7))
    ignored = driver.load(key, 0, use_snapshot=False)
    assert (ignored.snapshot, ignored.first, list(ignored.records)) == (None, 1, records(1, 7))


def test_a_newer_snapshot_replaces_the_older(driver: RedisDriver) -> None:
    key = fresh_key()
    driver.append(Commit(key, 0, records(1, 2), snapshot=b"at 2"))
    driver.append(Commit(key, 2, records(3, 4), snapshot=b"at 4"))
    loaded = driver.load(key, 1)
    assert (loaded.snapshot, loaded.first, list(loaded.records)) == (Snapshot(4, b"at 4"), 5, [])


def test_binary_records_and_empty_snapshot_round_trip(driver: RedisDriver) -> None:
    key = fresh_key()
    blobs = [bytes(range(256)), b"", b"\x00\r\n$*-"]
    driver.append(Commit(key, 0, blobs, snapshot=b""))
    assert driver.load(key, 0).snapshot == Snapshot(3, b"")
    assert list(driver.load(key, 0, use_snapshot=False).records) == blobs


def test_commit_beyond_lua_unpack_limit_is_atomic_and_complete(driver: RedisDriver) -> None:
    key = fresh_key()
    many = records(1, 10_000)
    assert driver.append(Commit(key, 0, many, snapshot=b"s")) is None
    assert list(driver.load(key, 0, use_snapshot=False).records) == many
    assert driver.load(key, 0).snapshot == Snapshot(10_000, b"s")


@pytest.mark.parametrize("key", ["a{b}c", "{x}", "}{", "a:b:c", "{kvsourcing:b1}:e:x", "ünï{}"])
def test_keys_with_braces_and_colons_stay_in_their_bucket_slot(driver: RedisDriver, key: str) -> None:
    key = key + str(uuid.uuid4())
    events, snapshots, commits = driver.keys(key)
    tag = f"kvsourcing:b{partition_bucket(key, driver.buckets)}".encode()
    assert key_slot(events) == key_slot(snapshots) == key_slot(commits) == key_slot(b"{" + tag + b"}")
    driver.append(Commit(key, 0, [b"mine"], snapshot=b"snap"))
    loaded = driver.load(key, 0, use_snapshot=False)
    assert list(loaded.records) == [b"mine"]


def test_keys_that_look_like_other_keys_do_not_collide(driver: RedisDriver) -> None:
    plain = fresh_key()
    lookalikes = [plain + ":s:x", plain + "}", "{" + plain, plain + ":e:"]
    for n, key in enumerate([plain, *lookalikes]):
        driver.append(Commit(key, 0, [str(n).encode()]))
    for n, key in enumerate([plain, *lookalikes]):
        assert list(driver.load(key, 0).records) == [str(n).encode()]


def test_the_layout_is_the_documented_one(redis_client: redis.Redis) -> None:
    driver = RedisDriver(redis_client, prefix="app:v1", buckets=16)
    key = fresh_key("a:{b}")
    driver.append(Commit(key, 0, [b"r1", b"r2"], snapshot=b"snap", commit_id="cmd-1"))
    driver.append(Commit(key, 2, [b"r3"]))
    tag = f"{{app:v1:b{partition_bucket(key, 16)}}}:"
    assert redis_client.lrange(f"{tag}e:{key}", 0, -1) == [b"r1", b"r2", b"r3"]
    assert redis_client.hgetall(f"{tag}s:{key}") == {b"s": b"2", b"d": b"snap"}
    commits = redis_client.hgetall(f"{tag}m:{key}")
    assert sorted(commits) == [b"\x003", b"cmd-1"]
    first, last, seconds = commits[b"cmd-1"].split(b" ")
    assert (first, last) == (b"1", b"2") and commits[b"\x003"].startswith(b"3 3 ")
    assert re.fullmatch(rb"\d+\.\d{6}", seconds)
    assert abs(float(seconds) - float(redis_client.time()[0])) < 5
    assert redis_client.ttl(f"{tag}m:{key}") == -1, "commit ids are kept for ever"
    assert not redis_client.exists(f"{tag}c:{key}"), "no sorted set of commit ids any more"


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b", None, 3])
def test_prefix_must_be_a_non_empty_str_without_braces(redis_client: redis.Redis, prefix: object) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisDriver(redis_client, prefix=prefix)  # type: ignore[arg-type]


@pytest.mark.parametrize("buckets", [0, -1, True, 2.0, "8"])
def test_bucket_count_must_be_a_positive_int(redis_client: redis.Redis, buckets: object) -> None:
    with pytest.raises(ConfigurationError, match="bucket"):
        RedisDriver(redis_client, buckets=buckets)  # type: ignore[arg-type]


def test_client_must_be_a_redis_client() -> None:
    with pytest.raises(TypeError, match=r"redis\.Redis"):
        RedisDriver(object())  # type: ignore[arg-type]


def test_a_key_of_another_application_under_the_prefix_is_a_configuration_error(
    redis_client: redis.Redis,
) -> None:
    driver = RedisDriver(redis_client)
    key = fresh_key()
    events, _, _ = driver.keys(key)
    redis_client.set(events, b"not a list")
    for call in (lambda: driver.append(Commit(key, 0, [b"r"])), lambda: driver.load(key, 0)):
        with pytest.raises(ConfigurationError, match=r"prefix 'kvsourcing'.*WRONGTYPE.*prefix of its own"):
            call()
    assert redis_client.get(events) == b"not a list"


def test_a_database_the_server_lacks_is_a_configuration_error(redis_server: RedisServer) -> None:
    driver = RedisDriver(redis_server.client(db=99), owns_client=True)
    try:
        with pytest.raises(ConfigurationError, match=r"no such database.*out of range"):
            driver.load(fresh_key(), 0)
    finally:
        driver.close()


def test_a_server_at_its_memory_limit_is_unavailable_and_keeps_nothing(redis_client: redis.Redis) -> None:
    driver = RedisDriver(redis_client, prefix=f"oom-{uuid.uuid4().hex[:8]}")
    key = fresh_key()
    redis_client.config_set("maxmemory", 1)
    try:
        with pytest.raises(StoreUnavailableError, match="maxmemory"):
            driver.append(Commit(key, 0, [b"r"]))
    finally:
        redis_client.config_set("maxmemory", 0)
    assert driver.load(key, 0).records == []


def test_commit_and_load_are_one_round_trip_each(driver: RedisDriver, round_trips: list[bytes]) -> None:
    key = fresh_key()
    driver.append(Commit(key, 0, records(1, 2), snapshot=b"warm"))  # loads the scripts
    driver.load(key, 0)
    round_trips.clear()
    driver.append(Commit(key, 2, records(3, 12), snapshot=b"at 12"))
    assert len(round_trips) == 1 and b"EVALSHA" in round_trips[0]
    driver.append(Commit(key, 0, [b"clash"]))
    assert len(round_trips) == 2
    round_trips.clear()
    driver.load(key, 0)
    assert len(round_trips) == 1 and b"EVALSHA" in round_trips[0]
    driver.load(key, 3, use_snapshot=False)
    assert len(round_trips) == 2


def test_scripts_are_reloaded_after_script_flush(driver: RedisDriver) -> None:
    key = fresh_key()
    driver.append(Commit(key, 0, [b"one"]))
    driver.client.script_flush()
    assert driver.append(Commit(key, 1, [b"two"])) is None
    assert list(driver.load(key, 0).records) == [b"one", b"two"]


@pytest.mark.parametrize("where", ["single", "cluster"])
def test_the_async_driver_reloads_its_scripts_after_script_flush(
    where: str, redis_server: RedisServer, redis_cluster: RedisClusterNodes
) -> None:
    """The async I/O's own NOSCRIPT path: the append, then the load script, each after a flush."""
    key, admin = fresh_key(), redis_server.client() if where == "single" else redis_cluster.client()

    async def main() -> None:
        port = redis_server.port if where == "single" else redis_cluster.servers[0].port
        client = redis.asyncio.Redis if where == "single" else AsyncRedisCluster
        async with AsyncRedisDriver(client(host=HOST, port=port), owns_client=True) as driver:
            assert await driver.append(Commit(key, 0, [b"one"])) is None
            admin.script_flush()
            assert await driver.append(Commit(key, 1, [b"two"], b"state-at-2")) is None
            admin.script_flush()
            loaded = await driver.load(key, 0)
            assert (loaded.snapshot, list(loaded.records)) == (Snapshot(2, b"state-at-2"), [])

    asyncio.run(main())
    admin.close()


def test_ten_thousand_keys_spread_evenly_over_the_cluster_nodes(redis_cluster: RedisClusterNodes) -> None:
    client = redis_cluster.client()
    driver = RedisDriver(client, owns_client=True)
    nodes = client.get_primaries()
    per_node: Counter[str] = Counter()
    for n in range(10_000):
        events, _, _ = driver.keys(f"order-{uuid.UUID(int=n * 7919 + 13)}")
        per_node[client.get_node_from_key(events).name] += 1
    assert len(per_node) == 3 == len(nodes)
    even = 10_000 / 3
    assert all(abs(count - even) <= even * 0.10 for count in per_node.values()), per_node
    driver.close()


def test_unreachable_server_raises_store_unavailable_naming_host_and_port() -> None:
    port = free_port()
    driver = RedisDriver(redis.Redis(host=HOST, port=port, retry=NO_RETRY), owns_client=True)
    with pytest.raises(StoreUnavailableError, match=rf"{HOST}:{port}.*(refused|connect)") as caught:
        driver.append(Commit(fresh_key(), 0, [b"r"]))
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(StoreUnavailableError, match=rf"{HOST}:{port}"):
        driver.load(fresh_key(), 0)
    driver.close()


def test_wrong_password_raises_store_unavailable_without_the_password(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    user, password = f"user-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    try:
        wrong = f"{password}-wrong"
        client = redis_server.client(username=user, password=wrong, retry=NO_RETRY)
        driver = RedisDriver(client, owns_client=True)
        with pytest.raises(StoreUnavailableError, match=rf"{HOST}:{redis_server.port}") as caught:
            driver.load(fresh_key(), 0)
        assert wrong not in str(caught.value) and password not in str(caught.value)
        assert "invalid username-password" in str(caught.value)
        driver.close()
        good = RedisDriver(redis_server.client(username=user, password=password), owns_client=True)
        key = fresh_key()
        assert good.append(Commit(key, 0, [b"acl"])) is None
        assert list(good.load(key, 0).records) == [b"acl"]
        good.close()
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_a_user_without_permission_raises_store_unavailable(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    user = f"reader-{uuid.uuid4().hex[:8]}"
    admin.acl_setuser(user, enabled=True, nopass=True, keys=["*"], commands=["+@all", "-evalsha"])
    try:
        driver = RedisDriver(redis_server.client(username=user), owns_client=True)
        with pytest.raises(StoreUnavailableError, match="NoPermission"):
            driver.append(Commit(fresh_key(), 0, [b"r"]))
        driver.close()
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_close_is_idempotent_and_leaves_a_callers_client_open(redis_client: redis.Redis) -> None:
    driver = RedisDriver(redis_client)
    driver.close()
    driver.close()
    assert redis_client.ping()


# --- the durable feed and the small values ----------------------------------------------


@pytest.fixture(params=["single", "cluster"])
def feed_driver(
    request: pytest.FixtureRequest, redis_server: RedisServer, redis_cluster: RedisClusterNodes
) -> Iterator[RedisDriver]:
    """A driver with a prefix of its own (so its feeds start empty), on a node then a cluster."""
    client = redis_server.client() if request.param == "single" else redis_cluster.client()
    driver = RedisDriver(client, prefix=f"feed-{uuid.uuid4().hex[:8]}", owns_client=True)
    yield driver
    driver.close()


def feed_of(driver: RedisDriver, key: str) -> list[FeedEntry]:
    return driver.read_feed({partition_bucket(key, driver.buckets): None}, 1000)


def test_a_commit_adds_one_entry_to_its_bucket_feed(feed_driver: RedisDriver) -> None:
    key = fresh_key("ü{x}:")
    bucket = partition_bucket(key, feed_driver.buckets)
    blobs = [bytes(range(256)), b"", b"\x00\r\n$*-", b"x" * 70_000]
    assert feed_driver.append(Commit(key, 0, blobs, snapshot=b"s", commit_id="cmd-1")) is None
    assert feed_driver.append(Commit(key, 4, [b"fifth"])) is None
    first, second = feed_of(feed_driver, key)
    assert (first.bucket, first.key, first.first, list(first.records)) == (bucket, key, 1, blobs)
    assert (second.bucket, second.key, second.first, list(second.records)) == (bucket, key, 5, [b"fifth"])
    assert isinstance(first.position, str)
    assert feed_driver.read_feed({bucket: first.position}, 10) == [second]
    assert feed_driver.read_feed({bucket: second.position}, 10) == []
    assert feed_driver.read_feed({bucket: None}, 1) == [first]


def test_a_clash_or_a_resent_commit_writes_nothing_to_the_feed(feed_driver: RedisDriver) -> None:
    key = fresh_key()
    feed_driver.append(Commit(key, 0, [b"a"], commit_id="cmd-1"))
    before = feed_of(feed_driver, key)
    assert feed_driver.append(Commit(key, 0, [b"clash"])) == 1
    assert feed_driver.append(Commit(key, 0, [b"a"], commit_id="cmd-1")) == ALREADY_STORED
    assert feed_of(feed_driver, key) == before
    assert len(before) == 1


def test_a_commit_beyond_lua_limits_is_one_feed_entry(feed_driver: RedisDriver) -> None:
    key = fresh_key()
    many = records(1, 10_000)
    assert feed_driver.append(Commit(key, 0, many)) is None
    (entry,) = feed_of(feed_driver, key)
    assert (entry.first, list(entry.records)) == (1, many)


def test_read_feed_follows_every_bucket_in_order_across_the_nodes(
    feed_driver: RedisDriver, round_trips: list[bytes]
) -> None:
    keys = [fresh_key() for _ in range(60)]
    for key in keys:
        feed_driver.append(Commit(key, 0, [b"1"]))
    for key in keys[::2]:
        feed_driver.append(Commit(key, 1, [b"2", b"3"]))
    positions: dict[int, str | None] = dict.fromkeys(range(feed_driver.buckets))
    round_trips.clear()
    entries = feed_driver.read_feed(positions, 1)
    nodes = len(feed_driver.client.get_primaries()) if isinstance(feed_driver.client, RedisCluster) else 1
    assert len(round_trips) <= nodes  # one batch of 1024 XRANGEs per node
    seen: list[FeedEntry] = []
    while entries:
        seen.extend(entries)
        for entry in entries:
            positions[entry.bucket] = entry.position
        entries = feed_driver.read_feed(positions, 1)
    assert sorted((e.key, e.first, tuple(e.records)) for e in seen) == sorted(
        [(key, 1, (b"1",)) for key in keys] + [(key, 2, (b"2", b"3")) for key in keys[::2]]
    )
    for bucket in {e.bucket for e in seen}:
        in_bucket = [e for e in seen if e.bucket == bucket]
        ids = [tuple(map(int, e.position.split("-"))) for e in in_bucket]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert all(partition_bucket(e.key, feed_driver.buckets) == bucket for e in in_bucket)
    for key in keys[::2]:
        assert [e.first for e in seen if e.key == key] == [1, 2]


def test_read_feed_of_no_bucket_is_no_round_trip(feed_driver: RedisDriver, round_trips: list[bytes]) -> None:
    assert feed_driver.read_feed({}, 10) == []
    assert round_trips == []


@pytest.mark.parametrize(("after", "limit"), [({-1: None}, 1), ({1024: None}, 1), ({0: None}, 0)])
def test_read_feed_rejects_unknown_buckets_and_empty_limits(
    feed_driver: RedisDriver, after: dict[int, str | None], limit: int
) -> None:
    with pytest.raises(ValueError, match=r"bucket|limit"):
        feed_driver.read_feed(after, limit)


def test_swap_value_compares_then_sets_or_deletes(feed_driver: RedisDriver) -> None:
    name = f"consumer/{uuid.uuid4().hex}/checkpoint/3"
    assert feed_driver.read_value(name) is None
    assert not feed_driver.swap_value(name, b"other", b"v1")
    assert feed_driver.swap_value(name, None, b"v1")
    assert not feed_driver.swap_value(name, None, b"v2")
    assert not feed_driver.swap_value(name, b"v2", b"v3")
    assert not feed_driver.swap_value(name, b"v", b"v3")
    assert feed_driver.read_value(name) == b"v1"
    assert feed_driver.swap_value(name, b"v1", b"")
    assert feed_driver.read_value(name) == b""
    assert not feed_driver.swap_value(name, None, b"v4")  # empty is a value, not absence
    assert not feed_driver.swap_value(name, b"v1", None)
    assert feed_driver.swap_value(name, b"", None)
    assert feed_driver.read_value(name) is None
    assert feed_driver.swap_value(name, None, None)  # deleting what is absent succeeds
    assert feed_driver.swap_value(name, None, bytes(range(256)))
    assert feed_driver.read_value(name) == bytes(range(256))


def test_swap_value_ttl_expires_and_a_swap_without_ttl_keeps_the_value(feed_driver: RedisDriver) -> None:
    name = f"lease-{uuid.uuid4().hex}"
    # Long ttls while the value must be there (a pause of the process must not expire it),
    # then a renewal to a short one that must expire.
    assert feed_driver.swap_value(name, None, b"mine", ttl=30)
    assert 20_000 < feed_driver.client.pttl(feed_driver.value_key(name)) <= 30_000
    assert not feed_driver.swap_value(name, None, b"yours", ttl=0.2)
    assert feed_driver.swap_value(name, b"mine", b"mine", ttl=0.2)  # a renewal
    assert feed_driver.client.pttl(feed_driver.value_key(name)) <= 200  # or gone already (-2)
    time.sleep(0.25)
    assert feed_driver.read_value(name) is None
    assert not feed_driver.swap_value(name, b"mine", b"mine", ttl=0.2)  # too late to renew
    assert feed_driver.swap_value(name, None, b"yours", ttl=0.0001)  # rounded up to 1 ms
    time.sleep(0.01)
    assert feed_driver.read_value(name) is None
    assert feed_driver.swap_value(name, None, b"kept", ttl=30)
    assert feed_driver.swap_value(name, b"kept", b"forever")
    assert feed_driver.client.pttl(feed_driver.value_key(name)) == -1


@pytest.mark.parametrize("name", ["plain", "a{b}c", "}{", "{x}", "consumer/ü/lease/1"])
def test_value_keys_are_distinct_and_single_slot(feed_driver: RedisDriver, name: str) -> None:
    other = name + "-other"
    assert feed_driver.swap_value(name, None, b"1")
    assert feed_driver.swap_value(other, None, b"2")
    assert (feed_driver.read_value(name), feed_driver.read_value(other)) == (b"1", b"2")
    assert feed_driver.value_key(name) == b"{" + feed_driver.prefix.encode() + b":v:" + name.encode() + b"}"


def test_the_feed_and_value_layout_is_the_documented_one(redis_client: redis.Redis) -> None:
    prefix = f"app:{uuid.uuid4().hex[:6]}"
    driver = RedisDriver(redis_client, prefix=prefix, buckets=16)
    key = fresh_key("a:{b}")
    driver.append(Commit(key, 0, [b"r1", b"r2"]))
    driver.append(Commit(key, 2, [b"r3"], commit_id="cmd-ü"))
    (_, plain), (_, named) = redis_client.xrange(f"{{{prefix}:b{partition_bucket(key, 16)}}}:f")
    times = [redis_client.hget(driver.keys(key)[2], field) for field in (b"\x002", "cmd-ü")]
    assert plain == {
        b"k": key.encode(),
        b"s": b"1",
        b"r": msgpack.packb([b"r1", b"r2"], use_bin_type=False),
        b"t": times[0].split(b" ")[2],
    }
    assert named == {
        b"k": key.encode(),
        b"s": b"3",
        b"r": msgpack.packb([b"r3"], use_bin_type=False),
        b"i": "cmd-ü".encode(),
        b"t": times[1].split(b" ")[2],
    }
    assert unpack_records(plain[b"r"]) == [b"r1", b"r2"]
    driver.swap_value("consumer/x/lease/0", None, b"owner", ttl=5)
    assert redis_client.get(f"{{{prefix}:v:consumer/x/lease/0}}") == b"owner"


def test_the_feed_primitives_raise_store_unavailable() -> None:
    port = free_port()
    driver = RedisDriver(redis.Redis(host=HOST, port=port, retry=NO_RETRY), owns_client=True)
    with pytest.raises(StoreUnavailableError, match=rf"{HOST}:{port}"):
        driver.read_feed({0: None}, 10)
    with pytest.raises(StoreUnavailableError, match=rf"{HOST}:{port}"):
        driver.read_value("x")
    with pytest.raises(StoreUnavailableError, match=rf"{HOST}:{port}"):
        driver.swap_value("x", None, b"v")
    driver.close()


def test_the_driver_is_a_feed_driver(redis_client: redis.Redis) -> None:
    assert isinstance(RedisDriver(redis_client), FeedDriver)


@pytest.mark.parametrize(
    "fields",
    [
        {"k": "k", "s": 1, "r": b"\x80\x03cos\nsystem\n"},  # a pickle
        {"k": "k", "s": 1, "r": msgpack.packb([b"a"], use_bin_type=False) + b"extra"},
        {"k": "k", "s": 1, "r": msgpack.packb(7)},
        {"k": "k", "s": 1, "r": msgpack.packb([1, 2])},
        {"k": "k", "s": "one", "r": msgpack.packb([b"a"], use_bin_type=False)},
        {"k": b"\xff\xfe", "s": 1, "r": msgpack.packb([b"a"], use_bin_type=False)},
        {"s": 1, "r": msgpack.packb([b"a"], use_bin_type=False)},
    ],
)
def test_a_corrupt_feed_entry_raises_encoding_error(
    redis_client: redis.Redis, fields: dict[str, Any]
) -> None:
    driver = RedisDriver(redis_client, prefix=f"corrupt-{uuid.uuid4().hex[:6]}", buckets=1)
    redis_client.xadd(driver.feed_key(0), fields)
    with pytest.raises(EncodingError, match="bucket 0 is corrupt"):
        driver.read_feed({0: None}, 10)


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


def test_a_commit_longer_than_one_argument_may_be_is_too_large_and_writes_nothing(
    driver: RedisDriver,
) -> None:
    driver.max_argument_bytes = 1_000
    key = fresh_key("huge-")
    with pytest.raises(CommitTooLargeError, match=r"\d+ bytes of records, more than the 1000 bytes"):
        driver.append(Commit(key, 0, [b"x" * 600, b"y" * 600]))
    with pytest.raises(CommitTooLargeError, match="1001 bytes of snapshot"):
        driver.append(Commit(key, 0, [b"small"], snapshot=b"s" * 1_001))
    assert driver.load(key, 0).records == []
    # The whole of the key's bucket: other tests share the default prefix, so its first
    # entries may be theirs.
    bucket = partition_bucket(key, driver.buckets)
    assert not [e for e in driver.read_feed({bucket: None}, 1_000_000) if e.key == key]
    assert driver.append(Commit(key, 0, [b"x" * 600], snapshot=b"s" * 900)) is None


def test_a_rewrite_beyond_lua_limits_keeps_the_order_and_the_commits(driver: RedisDriver) -> None:
    key = fresh_key("rewrite-")
    assert driver.append(Commit(key, 0, records(1, 6_000), commit_id="c-1", snapshot=b"s")) is None
    assert driver.append(Commit(key, 6_000, records(6_001, 10_000))) is None
    commits = driver.load(key, 0, use_snapshot=False, metadata=True).commits
    assert len(commits) == 2
    rewritten = [record.upper() for record in records(1, 10_000)]  # past unpack()'s 4096 a call
    assert driver.rewrite(key, 10_000, rewritten, Snapshot(6_000, b"S")) is None
    loaded = driver.load(key, 0, use_snapshot=False, commit_id="c-1", metadata=True)
    assert (list(loaded.records), loaded.stored, loaded.commits) == (rewritten, True, commits)
    assert driver.load(key, 0).snapshot == Snapshot(6_000, b"S")


def test_a_rewrite_longer_than_one_argument_may_be_is_too_large_and_writes_nothing(
    driver: RedisDriver,
) -> None:
    key = fresh_key("huge-rewrite-")
    assert driver.append(Commit(key, 0, [b"x" * 600, b"y" * 600], snapshot=b"s")) is None
    driver.max_argument_bytes = 1_000
    with pytest.raises(CommitTooLargeError, match="a record or snapshot of 1001 bytes"):
        driver.rewrite(key, 2, [b"x" * 600, b"z" * 1_001])
    with pytest.raises(CommitTooLargeError, match="a record or snapshot of 1001 bytes"):
        driver.rewrite(key, 2, [b"x", b"y"], Snapshot(2, b"s" * 1_001))
    assert list(driver.load(key, 0, use_snapshot=False).records) == [b"x" * 600, b"y" * 600]
