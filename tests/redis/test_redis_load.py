"""Loads of a store that writes no snapshots: plain reads in one pipelined round trip, and
the load script only when another store wrote a snapshot (or one is expected)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from kvsourcing.errors import ConfigurationError, EncodingError
from kvsourcing.protocols import EventStore
from kvsourcing.stores.keyvalue import Commit, Loaded
from kvsourcing.stores.redis import RedisDriver, from_url, new_store
from kvsourcing.stores.redis.keys import Layout
from kvsourcing.stores.redis.protocol import load_reads, parse_reads
from kvsourcing.testing.domain import Counter, Increment, Incremented
from kvsourcing.testing.servers import RedisClusterNodes, RedisServer


@pytest.fixture(params=["single", "cluster"])
def client(
    request: pytest.FixtureRequest, redis_server: RedisServer, redis_cluster: RedisClusterNodes
) -> Iterator[redis.Redis | redis.cluster.RedisCluster]:
    """A client of the single node, then of the cluster."""
    client = redis_server.client() if request.param == "single" else redis_cluster.client()
    yield client
    client.close()


def stores(client: redis.Redis | redis.cluster.RedisCluster) -> tuple[EventStore, EventStore, RedisDriver]:
    """Two stores sharing one prefix, the first writing no snapshots, the second one every 2
    events; and the first one's driver."""
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    plain = new_store(client, prefix=prefix, buckets=16)
    snapshotting = new_store(client, prefix=prefix, buckets=16, snapshot_interval=2)
    driver = plain.driver  # type: ignore[attr-defined]
    assert isinstance(driver, RedisDriver)
    return plain, snapshotting, driver


def add(store: EventStore, key: str, *amounts: int) -> Counter:
    """The counter at ``key``, refreshed, after committing one event per amount."""
    counter = Counter(key, store)
    counter.refresh()
    for amount in amounts:
        counter.apply_event(Incremented(amount))
        counter.commit()
    return counter


def test_a_store_without_snapshots_loads_in_one_pipelined_round_trip(
    client: redis.Redis | redis.cluster.RedisCluster, round_trips: list[bytes]
) -> None:
    plain, _, driver = stores(client)
    assert not driver.expect_snapshots
    key = f"plain-{uuid.uuid4()}"
    add(plain, key, 1, 2, 3)
    round_trips.clear()
    reader = Counter(key, plain)
    reader.refresh()
    assert (reader.count, reader.sequence_number()) == (6, 3)
    assert len(round_trips) == 1
    (packet,) = round_trips
    assert b"EVALSHA" not in packet
    assert packet.index(b"HMGET") < packet.index(b"LRANGE")
    round_trips.clear()
    reader.refresh()
    assert len(round_trips) == 1 and reader.sequence_number() == 3
    assert not driver.expect_snapshots


def test_a_commit_id_is_checked_in_the_same_round_trip_before_the_records_are_read(
    client: redis.Redis | redis.cluster.RedisCluster, round_trips: list[bytes]
) -> None:
    plain, _, driver = stores(client)
    key = f"ids-{uuid.uuid4()}"
    assert Counter(key, plain).handle(Increment(5), commit_id="cmd-1") == [Incremented(5)]
    round_trips.clear()
    again = Counter(key, plain)
    assert again.handle(Increment(5), commit_id="cmd-1") == []
    assert again.count == 5
    assert len(round_trips) == 1, "the load said the id is stored: nothing was appended"
    (packet,) = round_trips
    assert packet.index(b"HMGET") < packet.index(b"HEXISTS") < packet.index(b"LRANGE")
    round_trips.clear()
    assert Counter(key, plain).handle(Increment(1), commit_id="cmd-2") == [Incremented(1)]
    assert len(round_trips) == 2 and b"EVALSHA" in round_trips[1], "a load, then the append"
    assert driver.load(key, 0, commit_id="cmd-2").stored
    assert not driver.load(key, 0, commit_id="cmd-3").stored
    assert driver.load(key, 0, use_snapshot=False, commit_id="cmd-1") == Loaded(
        None, 1, driver.load(key, 0).records, True
    )


def test_a_snapshot_written_by_another_store_is_loaded_by_the_script_in_a_second_round_trip(
    client: redis.Redis | redis.cluster.RedisCluster, round_trips: list[bytes]
) -> None:
    plain, snapshotting, driver = stores(client)
    key = f"mixed-{uuid.uuid4()}"
    add(snapshotting, key, 1, 10, 100)  # a snapshot at 2, of count 11
    round_trips.clear()
    reader = Counter(key, plain)
    reader.refresh()
    assert (reader.count, reader.sequence_number()) == (111, 3)
    assert reader._replayed == [Incremented(100)], "restored from the snapshot, then one event"
    assert len(round_trips) == 2
    assert b"EVALSHA" not in round_trips[0] and b"EVALSHA" in round_trips[1]
    assert driver.expect_snapshots, "snapshots were found: the driver expects them from now on"
    round_trips.clear()
    loaded = driver.load(key, 0, commit_id="none")
    assert loaded.snapshot is not None and loaded.snapshot.sequence == 2
    assert (loaded.first, len(loaded.records), loaded.stored) == (3, 1, False)
    assert len(round_trips) == 1 and b"EVALSHA" in round_trips[0]


def test_a_snapshot_not_newer_than_the_reader_costs_no_second_round_trip(
    client: redis.Redis | redis.cluster.RedisCluster, round_trips: list[bytes]
) -> None:
    _, snapshotting, driver = stores(client)
    key = f"older-{uuid.uuid4()}"
    add(snapshotting, key, 1, 2, 4)  # a snapshot at 2
    round_trips.clear()
    loaded = driver.load(key, 2)
    assert (loaded.snapshot, loaded.first, len(loaded.records)) == (None, 3, 1)
    assert len(round_trips) == 1 and b"EVALSHA" not in round_trips[0]
    assert not driver.expect_snapshots


def test_a_store_with_snapshots_loads_with_the_script_in_one_round_trip(
    client: redis.Redis | redis.cluster.RedisCluster, round_trips: list[bytes]
) -> None:
    _, snapshotting, _ = stores(client)
    key = f"snapshots-{uuid.uuid4()}"
    add(snapshotting, key, 1, 2, 3)
    round_trips.clear()
    reader = Counter(key, snapshotting)
    reader.refresh()
    assert (reader.count, reader._replayed) == (6, [Incremented(3)])
    assert len(round_trips) == 1 and b"EVALSHA" in round_trips[0]


def test_from_url_expects_snapshots_when_the_store_writes_them(redis_server: RedisServer) -> None:
    for url, options, expected in [
        (redis_server.url, {}, False),
        (redis_server.url, {"snapshot_interval": 0}, False),
        (redis_server.url, {"snapshot_interval": 50}, True),
        (f"{redis_server.url}?snapshot_interval=50", {}, True),
        (f"{redis_server.url}?snapshot_interval=50", {"snapshot_interval": 0}, False),
    ]:
        with from_url(url, **options) as store:
            assert store.driver.expect_snapshots is expected, (url, options)  # type: ignore[attr-defined]


def test_a_corrupt_snapshot_sequence_or_a_key_of_another_type_fails_typed_through_the_reads(
    redis_client: redis.Redis,
) -> None:
    _, _, driver = stores(redis_client)
    key = f"corrupt-{uuid.uuid4()}"
    snapshots = driver.keys(key)[1]
    driver.append(Commit(key, 0, [b"r"]))
    redis_client.hset(snapshots, "s", b"not a number")
    with pytest.raises(EncodingError, match=r"snapshot of 'corrupt-.*'not a number'.*corrupt"):
        driver.load(key, 0)
    other = f"wrongtype-{uuid.uuid4()}"
    redis_client.set(driver.keys(other)[0], b"not a list")
    with pytest.raises(ConfigurationError, match=r"WRONGTYPE.*prefix of its own"):
        driver.load(other, 0, commit_id="c")
    assert not driver.expect_snapshots


def test_the_reads_are_chosen_and_read_as_data() -> None:
    layout = Layout("p", 4)
    events, snapshots, commits = layout.keys("k")
    options = {"use_snapshot": True, "commit_id": None, "metadata": False}
    assert load_reads(layout, "k", 0, **options, expect_snapshots=True) is None
    assert load_reads(layout, "k", 0, **{**options, "metadata": True}, expect_snapshots=False) is None
    alone = load_reads(layout, "k", 3, **{**options, "use_snapshot": False}, expect_snapshots=True)
    assert alone is not None and alone.commands == (("LRANGE", events, 3, -1),)
    reads = load_reads(layout, "k", 3, **{**options, "commit_id": "c"}, expect_snapshots=False)
    assert reads is not None
    assert reads.commands == (("HMGET", snapshots, "s"), ("HEXISTS", commits, "c"), ("LRANGE", events, 3, -1))
    assert parse_reads("k", 3, reads, [[None], True, [b"r4"]]) == Loaded(None, 4, [b"r4"], True)
    assert parse_reads("k", 3, reads, [[b"3"], False, []]) == Loaded(None, 4, [], False)
    assert parse_reads("k", 3, reads, [[b"4"], False, []]) is None, "a newer snapshot: the script loads it"
    assert parse_reads("k", 3, alone, [[b"r4"]]) == Loaded(None, 4, [b"r4"])
