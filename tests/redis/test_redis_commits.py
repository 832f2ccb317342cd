"""The Redis driver's commits: several aggregates in one script, all or nothing; commit ids
and metadata kept with the aggregate; feed entries that carry them; ``feed=False``; and
data written by the driver before commits kept metadata."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import msgpack
import pytest
import redis
from redis.crc import key_slot

from kvsourcing.errors import ConfigurationError, CrossPartitionError, EncodingError
from kvsourcing.stores.keyvalue import ALREADY_STORED, Commit, FeedConsumer, Refusal, Snapshot
from kvsourcing.stores.redis import RedisDriver, from_url, new_store, protocol
from kvsourcing.testing.domain import Counter, Increment, Incremented, registry
from kvsourcing.testing.servers import RedisClusterNodes, RedisServer


@pytest.fixture(params=["single", "cluster"])
def driver(
    request: pytest.FixtureRequest, redis_server: RedisServer, redis_cluster: RedisClusterNodes
) -> Iterator[RedisDriver]:
    """A driver with a prefix of its own (so its feeds start empty), on a node then a cluster."""
    client = redis_server.client() if request.param == "single" else redis_cluster.client()
    driver = RedisDriver(client, prefix=f"commits-{uuid.uuid4().hex[:8]}", buckets=64, owns_client=True)
    yield driver
    driver.close()


def tagged(count: int) -> list[str]:
    """Fresh aggregate keys sharing one hash tag: one bucket, hence one slot."""
    tag = uuid.uuid4().hex[:8]
    return [f"acct-{n}-{uuid.uuid4().hex[:6]}{{{tag}}}" for n in range(count)]


def stored(driver: RedisDriver, key: str) -> tuple[list[bytes], Snapshot | None, int, int]:
    """An aggregate's records, snapshot, commits kept and entries in its bucket's feed."""
    loaded = driver.load(key, 0, metadata=True)
    records = list(driver.load(key, 0, use_snapshot=False).records)
    feed = [e for e in driver.read_feed({driver.layout.bucket(key): None}, 10_000) if e.key == key]
    return (
        records,
        loaded.snapshot,
        len(driver.load(key, 0, use_snapshot=False, metadata=True).commits),
        len(feed),
    )


def test_append_many_writes_three_aggregates_or_none(driver: RedisDriver) -> None:
    a, b, c = tagged(3)
    assert driver.append(Commit(c, 0, [b"c1"], commit_id="c-1")) is None
    before = {key: stored(driver, key) for key in (a, b, c)}
    clash = [
        Commit(a, 0, [b"a1", b"a2"], snapshot=b"sa", commit_id="t-1"),
        Commit(b, 0, [b"b1"], snapshot=b"sb"),
        Commit(c, 0, [b"c2"]),
    ]
    assert driver.append_many(clash) == Refusal(2, 1)
    resent = [*clash[:2], Commit(c, 1, [b"c2"], commit_id="c-1")]
    assert driver.append_many(resent) == Refusal(2, ALREADY_STORED)
    assert {key: stored(driver, key) for key in (a, b, c)} == before, "nothing of the first two was written"
    assert driver.append_many([*clash[:2], Commit(c, 1, [b"c2"], commit_id="c-2")]) is None
    assert stored(driver, a) == ([b"a1", b"a2"], Snapshot(2, b"sa"), 1, 1)
    assert stored(driver, b) == ([b"b1"], Snapshot(1, b"sb"), 1, 1)
    assert stored(driver, c) == ([b"c1", b"c2"], None, 2, 2)
    infos = [driver.load(key, 0, use_snapshot=False, metadata=True).commits[-1] for key in (a, b, c)]
    assert [(i.first, i.last, i.commit_id) for i in infos] == [(1, 2, "t-1"), (1, 1, None), (2, 2, "c-2")]
    assert len({i.recorded_at for i in infos}) == 1, "one script, one time"
    assert driver.append_many([Commit(a, 2, [b"a3"], commit_id="t-1")]) == Refusal(0, ALREADY_STORED)


def in_two_buckets(driver: RedisDriver) -> tuple[str, str]:
    """Two fresh aggregate keys in different buckets (so with different feeds)."""
    first = f"a-{uuid.uuid4()}"
    others = (f"b-{uuid.uuid4()}" for _ in range(100))
    return first, next(k for k in others if driver.layout.bucket(k) != driver.layout.bucket(first))


def dump_prefix(client: redis.Redis, prefix: str) -> dict[bytes, bytes]:
    """Every key of a store's prefix, with its serialized value."""
    return {key: client.dump(key) for key in client.scan_iter(match=f"{{{prefix}:*", count=1000)}


WRONG_KEYS = [
    (kind, position, named, feed)
    for kind in ("events", "commits", "snapshots", "feed")
    for position in (0, 1)
    for named in (False, True)
    for feed in (True, False)
    if feed or kind != "feed"
]


@pytest.mark.parametrize(("kind", "position", "named", "feed"), WRONG_KEYS)
def test_a_key_of_another_type_anywhere_in_a_commit_writes_nothing(
    redis_client: redis.Redis, kind: str, position: int, named: bool, feed: bool
) -> None:
    """Every key an append writes, in the first commit and a later one, with and without a
    commit id and a feed: the script reads each before its first write (or that first write
    is to it), so WRONGTYPE leaves the store as it was."""
    prefix = f"wrongtype-{uuid.uuid4().hex[:8]}"
    driver = RedisDriver(redis_client, prefix=prefix, buckets=8, feed=feed)
    a, b = in_two_buckets(driver)
    driver.append(Commit(a, 0, [b"a0"]))
    commits = [
        Commit(a, 1, [b"a1"], snapshot=b"sa", commit_id="id-a" if named else None),
        Commit(b, 0, [b"b1", b"b2"], snapshot=b"sb", commit_id="id-b" if named else None),
    ]
    target = commits[position].key
    events, snapshots, metadata = driver.keys(target)
    wrong = {"events": events, "snapshots": snapshots, "commits": metadata}.get(kind)
    redis_client.set(wrong or driver.feed_key(driver.layout.bucket(target)), b"not a kvsourcing key")
    before = dump_prefix(redis_client, prefix)
    with pytest.raises(ConfigurationError, match="WRONGTYPE"):
        driver.append_many(commits)
    assert dump_prefix(redis_client, prefix) == before


def test_an_aggregate_named_twice_is_refused_before_sending(
    driver: RedisDriver, round_trips: list[bytes]
) -> None:
    (key,) = tagged(1)
    with pytest.raises(ValueError, match="appears twice"):
        driver.append_many([Commit(key, 0, [b"1"]), Commit(key, 1, [b"2"])])
    assert round_trips == []


def test_a_cluster_refuses_aggregates_of_different_slots_before_sending(
    redis_cluster: RedisClusterNodes, round_trips: list[bytes]
) -> None:
    driver = RedisDriver(redis_cluster.client(), prefix=f"slots-{uuid.uuid4().hex[:8]}", owns_client=True)
    try:
        keys = [f"order-{n}-{uuid.uuid4()}" for n in range(40)]
        slot = key_slot(driver.keys(keys[0])[0])
        other = next(key for key in keys if key_slot(driver.keys(key)[0]) != slot)
        round_trips.clear()
        with pytest.raises(CrossPartitionError, match=r"hash slots.*\{bank\}.*hence a slot"):
            driver.append_many([Commit(keys[0], 0, [b"1"]), Commit(other, 0, [b"2"])])
        assert round_trips == [], "refused before anything was sent"
        assert driver.load(keys[0], 0).records == [] == driver.load(other, 0).records
        together = tagged(3)
        assert driver.append_many([Commit(key, 0, [key.encode()]) for key in together]) is None
        assert [list(driver.load(key, 0).records) for key in together] == [[key.encode()] for key in together]
    finally:
        driver.close()


def test_a_single_node_commits_aggregates_of_any_buckets_together(redis_client: redis.Redis) -> None:
    driver = RedisDriver(redis_client, prefix=f"anyslot-{uuid.uuid4().hex[:8]}")
    keys = [f"order-{n}-{uuid.uuid4()}" for n in range(5)]
    assert len({driver.layout.bucket(key) for key in keys}) > 1
    assert driver.append_many([Commit(key, 0, [b"1"]) for key in keys]) is None
    assert all(list(driver.load(key, 0).records) == [b"1"] for key in keys)


def test_load_says_whether_a_commit_id_is_stored_in_its_one_round_trip(
    driver: RedisDriver, round_trips: list[bytes]
) -> None:
    key, other = tagged(2)
    driver.append(Commit(key, 0, [b"1"], commit_id="first"))
    driver.append(Commit(key, 1, [b"2", b"3"], snapshot=b"s3"))
    for n in range(3):
        driver.append(Commit(key, 3 + n, [b"later"], commit_id=f"later-{n}"))
    driver.append(Commit(other, 0, [b"x"], commit_id="elsewhere"))
    round_trips.clear()
    loaded = driver.load(key, 0, commit_id="first")
    assert len(round_trips) == 1 and b"EVALSHA" in round_trips[0]
    assert (loaded.stored, loaded.snapshot, loaded.first, len(loaded.records)) == (
        True,
        Snapshot(3, b"s3"),
        4,
        3,
    )
    assert driver.load(key, 6, commit_id="later-2").stored
    assert driver.load(key, 0, use_snapshot=False, commit_id="first").stored
    assert not driver.load(key, 0, commit_id="elsewhere").stored
    assert not driver.load(key, 0, commit_id="never").stored
    assert not driver.load(key, 0).stored


def test_commit_metadata_comes_from_the_writer_clock_through_read_events(redis_server: RedisServer) -> None:
    client = redis_server.client()
    store = new_store(client, prefix=f"meta-{uuid.uuid4().hex[:8]}", buckets=8, snapshot_interval=2)
    driver = store.driver
    assert isinstance(driver, RedisDriver)
    key = f"meta-{uuid.uuid4()}"
    counter = Counter(key, store)
    counter.handle(Increment(2), commit_id="cmd-1")
    counter.apply_event(Incremented(3))
    counter.apply_event(Incremented(4))
    counter.commit()
    driver.append(Commit(key, 3, [driver.load(key, 0, use_snapshot=False).records[0]]))  # no id
    now = time.time()
    events = store.read_events(key)
    assert [e.commit_id for e in events][:1] == ["cmd-1"]
    assert events[1].commit_id == events[2].commit_id not in (None, "cmd-1"), "the aggregate names commits"
    assert events[3].commit_id is None
    times = [e.recorded_at for e in events]
    assert all(t is not None and t.tzinfo is not None for t in times)
    assert times[0] <= times[1] == times[2] <= times[3]  # type: ignore[operator]
    assert abs(times[3].timestamp() - now) < 5  # type: ignore[union-attr]
    tail = store.read_events(key, after=2)
    assert [(e.sequence, e.commit_id, e.recorded_at) for e in tail] == [
        (e.sequence, e.commit_id, e.recorded_at) for e in events[2:]
    ], "a commit that began before 'after' still names the events after it"
    assert Counter(key, store).handle(Increment(2), commit_id="cmd-1") == []
    store.close()
    client.close()


def test_a_commit_is_timed_by_the_writer_clock(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commits hash and the feed entry keep the writer's time, as on every backend
    (the script sends no TIME)."""
    driver = RedisDriver(redis_client, prefix=f"clock-{uuid.uuid4().hex[:8]}", buckets=4)
    key = f"clock-{uuid.uuid4()}"
    monkeypatch.setattr(protocol, "time", SimpleNamespace(time=lambda: 1_000_000_000.25))
    assert driver.append_many([Commit(key, 0, [b"1"], commit_id="c-1"), Commit(key + "x", 0, [b"2"])]) is None
    (info,) = driver.load(key, 0, metadata=True).commits
    entries = driver.read_feed(dict.fromkeys(range(4)), 10)
    assert info.recorded_at == 1_000_000_000.25
    assert [e.recorded_at for e in entries] == [1_000_000_000.25] * 2


def test_feed_entries_carry_the_commit_id_and_time(driver: RedisDriver) -> None:
    key, other = tagged(2)
    driver.append_many([Commit(key, 0, [b"1"], commit_id="cmd-ü"), Commit(other, 0, [b"2"])])
    entries = {e.key: e for e in driver.read_feed({driver.layout.bucket(key): None}, 100)}
    infos = {k: driver.load(k, 0, metadata=True).commits[0] for k in (key, other)}
    assert (entries[key].commit_id, entries[other].commit_id) == ("cmd-ü", None)
    assert entries[key].recorded_at == infos[key].recorded_at == entries[other].recorded_at
    assert isinstance(entries[key].recorded_at, float)


@pytest.mark.parametrize("how", ["keyword", "query"])
def test_feed_false_writes_no_stream(redis_server: RedisServer, how: str) -> None:
    prefix = f"nofeed-{uuid.uuid4().hex[:8]}"
    url = f"{redis_server.url}?prefix={prefix}&buckets=2"
    with from_url(url, feed=False) if how == "keyword" else from_url(url + "&feed=false") as store:
        driver = store.driver
        assert isinstance(driver, RedisDriver) and driver.feed is False
        key = f"k-{uuid.uuid4()}"
        Counter(key, store).handle(Increment(1), commit_id="one")
        assert Counter(key, store).handle(Increment(1), commit_id="one") == []
        assert [e.commit_id for e in store.read_events(key)] == ["one"]
        assert not driver.client.exists(driver.feed_key(0), driver.feed_key(1))
        with pytest.raises(ConfigurationError, match="feed=False"):
            FeedConsumer(store, "nobody", registry())
    with from_url(url + "&feed=true") as store:
        assert store.driver.feed is True


def test_a_bad_feed_query_value_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="feed must be true or false"):
        from_url("redis://localhost?feed=maybe")


# What the driver's append script was before commits kept metadata (main at 68b2173):
# records in the list, commit ids in a sorted set c:<key>, feed entries of k, s, r.
OLD_APPEND = """
local now
if ARGV[4] == '1' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) + tonumber(time[2]) / 1000000
  local stored = redis.call('ZSCORE', KEYS[3], ARGV[5])
  if stored and (ARGV[7] == '' or tonumber(stored) > now - tonumber(ARGV[7])) then
    return -1
  end
end
local head = redis.call('LLEN', KEYS[1])
if head ~= tonumber(ARGV[1]) then
  return head
end
local records = cmsgpack.unpack(ARGV[6])
local n = #records
for i = 1, n, 4096 do
  redis.call('RPUSH', KEYS[1], unpack(records, i, math.min(i + 4095, n)))
end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 's', head + n, 'd', ARGV[3])
end
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[3], now, ARGV[5])
  if ARGV[7] ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[7]))
  end
end
redis.call('XADD', KEYS[4], '*', 'k', string.sub(KEYS[1], #KEYS[4] + 2), 's', head + 1, 'r', ARGV[6])
return nil
"""


def test_data_written_before_commit_metadata_still_loads(redis_server: RedisServer) -> None:
    client = redis_server.client()
    scratch = new_store(client, prefix=f"scratch-{uuid.uuid4().hex[:8]}", buckets=4)
    key = f"old-{uuid.uuid4()}"
    Counter(key, scratch).handle(Increment(1))
    Counter(key, scratch).handle(Increment(2))
    assert isinstance(scratch.driver, RedisDriver)
    encoded = client.lrange(scratch.driver.keys(key)[0], 0, -1)  # two events, as the codec makes them
    store = new_store(client, prefix=f"old-{uuid.uuid4().hex[:8]}", buckets=4)
    driver = store.driver
    assert isinstance(driver, RedisDriver)
    events, snapshots, commits = driver.keys(key)
    bucket = driver.layout.bucket(key)
    old_ids = events.replace(b":e:", b":c:")
    keys = [events, snapshots, old_ids, driver.feed_key(bucket)]
    packed = msgpack.packb(encoded, use_bin_type=False)
    assert client.eval(OLD_APPEND, 4, *keys, 0, "0", b"", "1", "old-cmd", packed, "86400") is None
    assert client.exists(old_ids) and not client.exists(commits)
    counter = Counter(key, store)
    counter.refresh()
    assert (counter.count, counter.sequence_number()) == (3, 2)
    counter.handle(Increment(4), commit_id="new-cmd")
    history = store.read_events(key)
    assert [(e.sequence, e.commit_id, e.recorded_at is None) for e in history] == [
        (1, None, True),
        (2, None, True),
        (3, "new-cmd", False),
    ]
    old_entry, new_entry = driver.read_feed({bucket: None}, 10)
    assert (old_entry.key, old_entry.first, old_entry.commit_id, old_entry.recorded_at) == (
        key,
        1,
        None,
        None,
    )
    assert list(old_entry.records) == encoded
    assert (new_entry.first, new_entry.commit_id) == (3, "new-cmd") and new_entry.recorded_at is not None
    store.close()
    scratch.close()
    client.close()


def test_read_events_with_metadata_is_one_round_trip(
    redis_client: redis.Redis, round_trips: list[bytes]
) -> None:
    store = new_store(redis_client, prefix=f"trips-{uuid.uuid4().hex[:8]}", buckets=4)
    key = f"trips-{uuid.uuid4()}"
    Counter(key, store).handle(Increment(1), commit_id="one")
    store.read_events(key)  # loads the script
    round_trips.clear()
    assert [e.commit_id for e in store.read_events(key)] == ["one"]
    assert len(round_trips) == 1 and b"EVALSHA" in round_trips[0]


def test_a_corrupt_commits_hash_raises_encoding_error(redis_client: redis.Redis) -> None:
    store = new_store(redis_client, prefix=f"corrupt-{uuid.uuid4().hex[:8]}", buckets=4)
    driver = store.driver
    assert isinstance(driver, RedisDriver)
    key = f"corrupt-{uuid.uuid4()}"
    Counter(key, store).handle(Increment(1), commit_id="one")
    redis_client.hset(driver.keys(key)[2], "one", "not three numbers")
    with pytest.raises(EncodingError, match=rf"commits of '{key}'.*'first last time'"):
        store.read_events(key)
