"""``read_feed(..., wait=...)`` on Redis: a read that finds nothing new waits for the next
entry of its buckets (``XREAD BLOCK`` on a node, the ``FeedWaker`` on a Cluster; the
asyncio driver's too, with an ``AsyncFeedWaker``), on real servers, with feed entries
written as the append script writes them."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import redis
import redis.asyncio

from kvsourcing.stores.keyvalue import partition_bucket
from kvsourcing.stores.redis.driver import AsyncRedisDriver, RedisDriver
from kvsourcing.stores.redis.push import block_milliseconds, blocking
from kvsourcing.testing.servers import RedisClusterNodes, RedisServer

BUCKETS = 8


@pytest.fixture(params=["node", "cluster"])
def driver(request: pytest.FixtureRequest) -> Iterator[RedisDriver]:
    if request.param == "node":
        client: Any = request.getfixturevalue("redis_server").client()
    else:
        client = request.getfixturevalue("redis_cluster").client()
    driver = RedisDriver(client, prefix=f"push-{uuid.uuid4().hex[:8]}", buckets=BUCKETS)
    yield driver
    driver.close()
    client.close()


def write_entry(driver: RedisDriver, key: str, first: int, commit_id: str | None = None) -> str:
    """Add a feed entry as the append script does (fields k, s, r, and i, t when given)."""
    fields: dict[str, Any] = {"k": key, "s": first, "r": msgpack.packb([b"record"], use_bin_type=False)}
    if commit_id is not None:
        fields.update(i=commit_id, t="1764672000.25")
    bucket = partition_bucket(key, driver.buckets)
    return driver.client.xadd(driver.feed_key(bucket), fields).decode()


def later(seconds: float, action: Any) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


def test_a_driver_that_pushes_says_so(driver: RedisDriver) -> None:
    assert driver.pushes


def test_a_waiting_read_returns_the_entry_written_while_it_waits(driver: RedisDriver) -> None:
    key = "order-1"
    bucket = partition_bucket(key, BUCKETS)
    position = write_entry(driver, key, 1)
    others = {b: None for b in range(BUCKETS) if b != bucket}
    writer = later(0.3, lambda: write_entry(driver, key, 2, commit_id="cmd-2"))
    entries = driver.read_feed({bucket: position, **others}, 10, wait=30.0)
    writer.join()
    assert [(e.key, e.first, e.commit_id, e.recorded_at) for e in entries] == [
        (key, 2, "cmd-2", 1764672000.25)
    ], "a read that waits must return the entry committed while it waited"


def test_a_read_waits_for_its_own_buckets_only(driver: RedisDriver) -> None:
    mine, other = (
        "order-1",
        next(
            f"order-{n}"
            for n in range(2, 100)
            if partition_bucket(f"order-{n}", BUCKETS) != partition_bucket("order-1", BUCKETS)
        ),
    )
    bucket = partition_bucket(mine, BUCKETS)
    position = write_entry(driver, mine, 1)
    writers = [
        later(0.2, lambda: write_entry(driver, other, 1)),
        later(0.6, lambda: write_entry(driver, mine, 2)),
    ]
    entries = driver.read_feed({bucket: position}, 10, wait=30.0)
    for writer in writers:
        writer.join()
    assert [(e.key, e.first) for e in entries] == [(mine, 2)]


def test_a_bucket_written_between_two_reads_is_read_again(driver: RedisDriver) -> None:
    """The Cluster's reads skip the buckets found at their end: not once they are written."""
    key = "order-1"
    bucket = partition_bucket(key, BUCKETS)
    everything = dict.fromkeys(range(BUCKETS))
    assert driver.read_feed(everything, 10, wait=0.05) == []
    first = write_entry(driver, key, 1)
    assert [(e.key, e.first) for e in driver.read_feed(everything, 10, wait=30.0)] == [(key, 1)]
    assert driver.read_feed({**everything, bucket: first}, 10, wait=0.05) == []
    write_entry(driver, key, 2)
    entries = driver.read_feed({**everything, bucket: first}, 10, wait=30.0)
    assert [(e.key, e.first) for e in entries] == [(key, 2)]


def test_a_read_with_entries_waiting_returns_them_without_waiting_and_without_metadata(
    driver: RedisDriver,
) -> None:
    write_entry(driver, "order-1", 1)
    entries = driver.read_feed(dict.fromkeys(range(BUCKETS)), 10, wait=30.0)
    assert [(e.key, e.first, e.commit_id, e.recorded_at) for e in entries] == [("order-1", 1, None, None)]


def test_a_wait_that_sees_nothing_returns_nothing(driver: RedisDriver) -> None:
    assert driver.read_feed(dict.fromkeys(range(BUCKETS)), 10, wait=0.05) == []


def test_the_cluster_waker_survives_its_connections_being_killed(
    redis_cluster: RedisClusterNodes,
) -> None:
    client = redis_cluster.client()
    driver = RedisDriver(client, prefix=f"push-{uuid.uuid4().hex[:8]}", buckets=BUCKETS)
    try:
        key = "order-1"
        bucket = partition_bucket(key, BUCKETS)
        assert driver.read_feed({bucket: None}, 10, wait=0.05) == []  # listeners up
        for server in redis_cluster.servers:
            server.client().client_kill_filter(_type="pubsub")
        writer = later(1.5, lambda: write_entry(driver, key, 1))  # after the listeners reconnect
        deadline = time.monotonic() + 30
        entries: list[Any] = []
        while not entries and time.monotonic() < deadline:
            entries = driver.read_feed({bucket: None}, 10, wait=30.0)
        writer.join()
        assert [(e.key, e.first) for e in entries] == [(key, 1)]
    finally:
        driver.close()
        client.close()


def test_a_cluster_user_not_allowed_to_track_keys_polls_instead(redis_cluster: RedisClusterNodes) -> None:
    """A waiting read must not sleep its whole wait when no node can be heard."""
    user = f"notrack-{uuid.uuid4().hex[:6]}"
    for server in redis_cluster.servers:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-client|tracking")
        admin.close()
    client = redis_cluster.client(username=user, password="pw")
    driver = RedisDriver(client, prefix=f"push-{uuid.uuid4().hex[:8]}", buckets=BUCKETS)
    try:
        key = "order-1"
        bucket = partition_bucket(key, BUCKETS)
        writer = later(0.5, lambda: write_entry(driver, key, 1))
        reader = threading.Thread(
            target=lambda: found.extend(driver.read_feed({bucket: None}, 10, wait=120.0))
        )
        found: list[Any] = []
        reader.start()
        reader.join(60)
        writer.join()
        assert not reader.is_alive(), "the read slept through its wait instead of polling"
        assert [(e.key, e.first) for e in found] == [(key, 1)]
    finally:
        driver.close()
        client.close()
        for server in redis_cluster.servers:
            admin = server.client()
            admin.execute_command("ACL", "DELUSER", user)
            admin.close()


@pytest.fixture(params=["node", "cluster"])
def servers(request: pytest.FixtureRequest) -> Any:
    """The server (or Cluster) of an async test: it makes its async driver in its own loop
    (``async_driver``), and writes with a sync driver on the same data."""
    return request.getfixturevalue("redis_server" if request.param == "node" else "redis_cluster")


def async_driver(servers: Any, prefix: str) -> AsyncRedisDriver:
    if isinstance(servers, RedisServer):
        client: Any = redis.asyncio.Redis.from_url(servers.url)
    else:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=servers.servers[0].port)
    return AsyncRedisDriver(client, prefix=prefix, buckets=BUCKETS, owns_client=True)


def feed_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("kvsourcing-feed-")]


def test_an_async_waiting_read_returns_the_entry_written_while_it_waits(servers: Any) -> None:
    prefix, key = f"push-{uuid.uuid4().hex[:8]}", "order-1"
    bucket = partition_bucket(key, BUCKETS)
    writer_driver = RedisDriver(servers.client(), prefix=prefix, buckets=BUCKETS, owns_client=True)
    position = write_entry(writer_driver, key, 1)

    async def main() -> list[Any]:
        driver = async_driver(servers, prefix)
        assert driver.pushes
        others = {b: None for b in range(BUCKETS) if b != bucket}
        writer = later(0.3, lambda: write_entry(writer_driver, key, 2, commit_id="cmd-2"))
        try:
            return await driver.read_feed({bucket: position, **others}, 10, wait=30.0)
        finally:
            await asyncio.to_thread(writer.join)
            await driver.close()
            assert not feed_tasks(), "close() left a listener running"

    entries = asyncio.run(main())
    writer_driver.close()
    assert [(e.key, e.first, e.commit_id) for e in entries] == [(key, 2, "cmd-2")]


def test_an_async_waiting_read_cancelled_leaves_the_driver_usable(servers: Any) -> None:
    """``FeedConsumer.stop()`` cancels a read waiting on the server (node) or on the waker
    (Cluster): it ends at once, and the next reads and writes go through."""
    prefix, key = f"push-{uuid.uuid4().hex[:8]}", "order-1"
    bucket = partition_bucket(key, BUCKETS)

    async def main() -> None:
        driver = async_driver(servers, prefix)
        try:
            waiting = asyncio.create_task(driver.read_feed(dict.fromkeys(range(BUCKETS)), 10, wait=30.0))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiting, 5)
            assert await driver.swap_value("after-cancel", None, b"1")
            assert await driver.read_value("after-cancel") == b"1"
            await driver.client.xadd(driver.feed_key(bucket), {"k": key, "s": 1, "r": b"\x91\xa1r"})
            entries = await driver.read_feed({bucket: None}, 10, wait=30.0)
            assert [(e.key, e.first, list(e.records)) for e in entries] == [(key, 1, [b"r"])]
        finally:
            await driver.close()

    asyncio.run(main())


def test_the_async_cluster_waker_survives_its_connections_being_killed(
    redis_cluster: RedisClusterNodes,
) -> None:
    prefix, key = f"push-{uuid.uuid4().hex[:8]}", "order-1"
    bucket = partition_bucket(key, BUCKETS)
    writer_driver = RedisDriver(redis_cluster.client(), prefix=prefix, buckets=BUCKETS, owns_client=True)

    async def main() -> list[Any]:
        driver = async_driver(redis_cluster, prefix)
        try:
            assert await driver.read_feed({bucket: None}, 10, wait=0.05) == []  # listeners up
            assert len(feed_tasks()) == len(redis_cluster.servers)
            for server in redis_cluster.servers:
                server.client().client_kill_filter(_type="pubsub")
            writer = later(1.5, lambda: write_entry(writer_driver, key, 1))  # after they reconnect
            deadline = time.monotonic() + 30
            entries: list[Any] = []
            while not entries and time.monotonic() < deadline:
                entries = await driver.read_feed({bucket: None}, 10, wait=30.0)
            await asyncio.to_thread(writer.join)
            return entries
        finally:
            await driver.close()

    entries = asyncio.run(main())
    writer_driver.close()
    assert [(e.key, e.first) for e in entries] == [(key, 1)]


def test_block_is_at_least_a_millisecond_and_within_the_socket_timeout(redis_server: RedisServer) -> None:
    plain, short = redis_server.client(), redis_server.client(socket_timeout=0.5)
    assert block_milliseconds(plain, 0.0001) == 1
    assert block_milliseconds(plain, 2.5) == 2500
    assert block_milliseconds(short, 10.0) == 250
    assert blocking(["XREAD", "COUNT", 5, "STREAMS", "a", "0-0"], 7) == [
        "XREAD", "COUNT", 5, "BLOCK", 7, "STREAMS", "a", "0-0",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="XREAD COUNT"):
        blocking(["XRANGE", "a", "-", "+"], 7)
    plain.close()
    short.close()
    assert isinstance(plain, redis.Redis)


def test_a_wait_stays_within_the_socket_timeout_a_connection_gets_by_default(
    redis_server: RedisServer,
) -> None:
    """redis-py 8 gives a connection a socket timeout of 5 s when its client names none; the
    ``BLOCK`` was bounded by a named one only, so a longer wait (a consumer's, with a lease
    over 15 s) failed after 5 s as ``StoreUnavailableError``."""
    plain = redis_server.client()
    for client in (plain, redis.asyncio.Redis.from_url(redis_server.url)):  # neither connects here
        timeout = client.connection_pool.make_connection().socket_timeout
        expected = 60_000 if timeout is None else math.ceil(timeout * 500)
        assert block_milliseconds(client, 60.0) == expected
    plain.close()
