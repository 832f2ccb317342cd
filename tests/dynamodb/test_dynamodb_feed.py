"""The durable feed on DynamoDB: the FeedSuite on moto in-process and on moto's server, and
the driver's feed, commit-id and value primitives (gaps, tombstones, swaps, re-sends).

Each FeedSuite test gets a fresh table (moto deep-copies the whole table on every
transaction and scans it on every query), shared by every store the test makes; the
concurrent-writers test writes an eighth of the suite's commits, and the transfer hammer
30 transfers a thread instead of 250, for the same reason.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from test_dynamodb_driver import records, table_items

from kvsourcing.errors import KvSourcingError, StoreUnavailableError
from kvsourcing.protocols import EventStore
from kvsourcing.stores.dynamodb import DynamoDBDriver, flows, new_store
from kvsourcing.stores.dynamodb.layout import feed_partition, marker_sort_key
from kvsourcing.stores.dynamodb.steps import run
from kvsourcing.stores.keyvalue import (
    ALREADY_STORED,
    Commit,
    FeedDriver,
    FeedEntry,
    Snapshot,
    partition_bucket,
)
from kvsourcing.testing import FeedSuite
from kvsourcing.testing.domain import Counter, Increment, Incremented
from kvsourcing.testing.requests import count_requests, lose_next_reply

GRACE = 0.3
SUITE_GRACE = 3.0
"""The suites' grace: their writers race on a busy machine, and a commit later than the
grace loses its position (and after 8 such losses fails); their feeds have no gaps to wait on."""


class _SmallerFeedSuite(FeedSuite):
    transfers_per_thread = 30

    def write_concurrently(
        self, store: Any, prefix: str, commits: int, threads: int, aggregates: int
    ) -> dict[str, int]:
        return super().write_concurrently(store, prefix, commits // 8, threads, aggregates)


class TestDynamoDBFeedOnMoto(_SmallerFeedSuite):
    @pytest.fixture(autouse=True)
    def _table(self, moto_client: Any, moto_table: str) -> None:
        self.client, self.table = moto_client, moto_table

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return new_store(
            self.table, client=self.client, snapshot_interval=snapshot_interval, feed_grace=SUITE_GRACE
        )


class TestDynamoDBFeedOnMotoServer(_SmallerFeedSuite):
    @pytest.fixture(autouse=True)
    def _table(self, server_client: Any, server_table: str) -> None:
        self.client, self.table = server_client, server_table

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return new_store(
            self.table,
            client=self.client,
            snapshot_interval=snapshot_interval,
            feed_grace=SUITE_GRACE,
            buckets=8,
        )


# --- the driver's primitives ------------------------------------------------------------


@pytest.fixture
def driver(moto_client: Any, moto_table: str) -> DynamoDBDriver:
    """One bucket, so that every aggregate shares one feed."""
    return DynamoDBDriver(moto_client, moto_table, buckets=1, feed_grace=GRACE)


def key() -> str:
    return f"agg-{uuid.uuid4().hex[:12]}"


def reserve_position(driver: DynamoDBDriver) -> int:
    """Reserve the next position of bucket 0 as a commit does, and write nothing there: a
    writer that died before its transaction."""
    return run(flows.reserve(driver.table_name, {0: 0}), driver.client)[0]


def feed_items(client: Any, table: str, bucket: int = 0) -> dict[int, dict[str, Any]]:
    return {int(i["s"]["N"]): i for i in table_items(client, table) if i["k"]["S"] == feed_partition(bucket)}


def summary(entries: list[FeedEntry]) -> list[tuple[str, str, int, list[bytes]]]:
    return [(e.position, e.key, e.first, list(e.records)) for e in entries]


def before_the_next_transaction(client: Any, meanwhile: Callable[[], None]) -> None:
    """Run ``meanwhile`` once, just before the next ``TransactWriteItems`` is sent: that
    commit has reserved its position and is late."""
    pending = [meanwhile]

    def hold(**_: Any) -> None:
        if pending:
            pending.pop()()

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", hold)


def test_driver_is_a_feed_driver(driver: DynamoDBDriver) -> None:
    assert isinstance(driver, FeedDriver)
    assert driver.read_feed({0: None}, 10) == []
    assert driver.read_feed({}, 10) == []
    with pytest.raises(ValueError, match="bucket 1"):
        driver.read_feed({1: None}, 10)
    with pytest.raises(ValueError, match="limit"):
        driver.read_feed({0: None}, 0)


def test_commits_reach_their_bucket_feed_in_order(moto_client: Any, moto_table: str) -> None:
    driver = DynamoDBDriver(moto_client, moto_table, buckets=4)
    keys = [key() for _ in range(6)]
    for k in keys:
        driver.append(Commit(k, 0, records(1, 2)))
        driver.append(Commit(k, 2, records(3, 1)))
    entries = driver.read_feed(dict.fromkeys(range(4)), 100)
    for k in keys:
        mine = [e for e in entries if e.key == k]
        assert {e.bucket for e in mine} == {partition_bucket(k, 4)}
        assert [(e.first, list(e.records)) for e in mine] == [(1, records(1, 2)), (3, records(3, 1))]
    for bucket in range(4):
        positions = [int(e.position) for e in entries if e.bucket == bucket]
        assert positions == list(range(1, len(positions) + 1))
    paged = driver.read_feed({b: None for b in range(4)}, 1)
    assert len(paged) == len({e.bucket for e in entries})
    first = entries[0]
    rest = driver.read_feed({first.bucket: first.position}, 100)
    assert rest == [e for e in entries if e.bucket == first.bucket][1:]


def test_split_commit_is_referenced_and_loaded(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    big = records(1, 5, size=130_000)
    driver.append(Commit(k, 0, big))
    driver.append(Commit(k, 5, records(6, 1)))
    items = feed_items(moto_client, moto_table)
    assert "r" not in items[1] and items[1]["l"] == {"N": "5"}
    assert "r" in items[2]
    assert summary(driver.read_feed({0: None}, 10)) == [("1", k, 1, big), ("2", k, 6, records(6, 1))]


def test_failed_commit_tombstones_its_own_position_at_once(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k, other = key(), key()
    driver.append(Commit(k, 0, records(1, 1)))
    counts = count_requests(moto_client)
    assert driver.append(Commit(k, 0, records(1, 1))) == 1  # a clash
    assert counts == {"UpdateItem": 1, "TransactWriteItems": 1, "PutItem": 1}
    driver.append(Commit(other, 0, records(1, 1)))
    items = feed_items(moto_client, moto_table)
    assert sorted(items) == [0, 1, 2, 3] and "a" not in items[2]
    # No grace period to wait for: the gap was filled by the writer itself.
    assert summary(driver.read_feed({0: None}, 10)) == [
        ("1", k, 1, records(1, 1)),
        ("3", other, 1, records(1, 1)),
    ]


def test_reserved_position_never_written_is_tombstoned_after_the_grace_period(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    first, after = key(), key()
    driver.append(Commit(first, 0, records(1, 1)))
    assert reserve_position(driver) == 2  # a writer that died before its transaction
    driver.append(Commit(after, 0, records(1, 2)))
    # The gap is young to a reader of the same table with a long grace, however slow the
    # machine (to ``driver`` it is young for GRACE only, and a pause can outlast that).
    patient = DynamoDBDriver(moto_client, moto_table, buckets=1, feed_grace=60)
    assert summary(patient.read_feed({0: None}, 10)) == [("1", first, 1, records(1, 1))]
    assert patient.read_feed({0: "1"}, 10) == [], "nothing past a young gap"
    assert 2 not in feed_items(moto_client, moto_table)
    time.sleep(GRACE + 0.05)
    assert summary(driver.read_feed({0: "1"}, 10)) == [("3", after, 1, records(1, 2))]
    tombstone = feed_items(moto_client, moto_table)[2]
    assert set(tombstone) == {"k", "s", "t", "g"}, "a gap tombstone, which trims keep"
    counts = count_requests(moto_client)
    assert summary(driver.read_feed({0: None}, 10)) == [
        ("1", first, 1, records(1, 1)),
        ("3", after, 1, records(1, 2)),
    ]
    assert counts == {"BatchGetItem": 1, "Query": 1}, "the tombstone is skipped, not written again"


def test_trimmed_positions_are_not_taken_for_gaps(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    for n in range(4):
        driver.append(Commit(k, n, records(n + 1, 1)))
    assert driver.trim_feed(0, ["3", "2"]) == 2
    assert sorted(feed_items(moto_client, moto_table)) == [0, 3, 4]
    assert feed_items(moto_client, moto_table)[0]["w"] == {"N": "2"}
    time.sleep(GRACE + 0.05)
    counts = count_requests(moto_client)
    assert summary(driver.read_feed({0: None}, 10)) == [
        ("3", k, 3, records(3, 1)),
        ("4", k, 4, records(4, 1)),
    ]
    assert counts == {"BatchGetItem": 1, "Query": 1}, "no tombstone is written where entries were trimmed"
    assert driver.trim_feed(0, ["1"]) == 0, "a trim never moves the watermark back"
    assert feed_items(moto_client, moto_table)[0]["w"] == {"N": "2"}


def test_late_commit_losing_to_a_tombstone_retries_at_a_new_position(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    late, other = key(), key()

    def meanwhile() -> None:
        # While the late commit (position 1) is on its way: another commit lands at 2,
        # the grace period passes, and a reader tombstones position 1.
        assert driver.append(Commit(other, 0, records(1, 1))) is None
        time.sleep(GRACE + 0.05)
        assert summary(driver.read_feed({0: None}, 10)) == [("2", other, 1, records(1, 1))]

    before_the_next_transaction(moto_client, meanwhile)
    counts = count_requests(moto_client)
    assert driver.append(Commit(late, 0, records(1, 3), commit_id="late-1")) is None
    assert counts["TransactWriteItems"] == 3  # the late one twice, the other once
    entries = driver.read_feed({0: None}, 10)
    assert summary(entries) == [("2", other, 1, records(1, 1)), ("3", late, 1, records(1, 3))]
    items = feed_items(moto_client, moto_table)
    assert set(items[1]) == {"k", "s", "t", "g"}
    assert [e.key for e in entries].count(late) == 1
    assert list(driver.load(late, 0).records) == records(1, 3)


def marker_items(client: Any, table: str, key: str) -> dict[int, dict[str, Any]]:
    return {
        int(i["s"]["N"]): i
        for i in table_items(client, table)
        if i["k"]["S"] == key and i["s"]["N"][0] == "-"
    }


def test_named_commit_id_already_stored(driver: DynamoDBDriver, moto_client: Any, moto_table: str) -> None:
    k = key()
    assert driver.append(Commit(k, 0, records(1, 2), commit_id="c-1", named=True)) is None
    # The same commit re-sent (a lost reply), and the same id at another head: already stored.
    assert driver.append(Commit(k, 0, records(1, 2), commit_id="c-1", named=True)) == ALREADY_STORED
    assert driver.append(Commit(k, 2, records(3, 1), commit_id="c-1", named=True)) == ALREADY_STORED
    # Another id clashes as usual; the id is per aggregate.
    assert driver.append(Commit(k, 0, records(1, 1), commit_id="c-2", named=True)) == 2
    assert driver.append(Commit(key(), 0, records(1, 1), commit_id="c-1", named=True)) is None
    assert driver.append(Commit(k, 2, records(3, 1), commit_id="c-2", named=True)) is None
    assert list(driver.load(k, 0).records) == records(1, 2) + records(3, 1)
    feed = [e for e in driver.read_feed({0: None}, 100) if e.key == k]
    assert [(e.first, len(e.records), e.commit_id) for e in feed] == [(1, 2, "c-1"), (3, 1, "c-2")]
    markers = marker_items(moto_client, moto_table, k)
    assert {s: m["i"]["S"] for s, m in markers.items()} == {
        marker_sort_key("c-1"): "c-1",
        marker_sort_key("c-2"): "c-2",
    }
    assert all(set(m) == {"k", "s", "i"} for m in markers.values()), (
        "no expiry: markers live with the aggregate"
    )


def test_unnamed_commit_id_writes_no_marker_and_a_resend_is_found_on_the_failure_path(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    commit = Commit(k, 0, records(1, 2), commit_id="auto-1")
    assert driver.append(commit) is None
    assert marker_items(moto_client, moto_table, k) == {}
    counts = count_requests(moto_client)
    assert driver.append(commit) == ALREADY_STORED
    assert counts["GetItem"] == 1, "one extra request, on the failure path only"
    # A later commit moved the head past it: still recognised by the commit item's id.
    assert driver.append(Commit(k, 2, records(3, 1), commit_id="auto-2")) is None
    assert driver.append(commit) == ALREADY_STORED
    # Another commit ending at the same sequence is a clash, not a re-send.
    assert driver.append(Commit(k, 0, records(1, 2), commit_id="auto-3")) == 3
    assert driver.append(Commit(k, 0, records(1, 2))) == 3
    assert list(driver.load(k, 0).records) == records(1, 2) + records(3, 1)


def test_marker_sort_keys_stay_below_the_head() -> None:
    keys = {marker_sort_key(f"cmd-{n}") for n in range(1000)}
    assert len(keys) == 1000 and max(keys) < 0
    assert marker_sort_key("x" * 1024) == marker_sort_key("x" * 1024) != marker_sort_key("x" * 1023)
    assert min(len(str(-k)) for k in keys) > 30 and max(len(str(-k)) for k in keys) <= 38


def test_commit_id_counts_in_the_transaction(moto_client: Any, moto_table: str) -> None:
    counts = count_requests(moto_client)
    seen: list[int] = []
    moto_client.meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params, **_: seen.append(len(params["TransactItems"])),
    )
    driver = DynamoDBDriver(moto_client, moto_table)
    driver.append(Commit(key(), 0, records(1, 1), commit_id="x", named=True))
    driver.append(Commit(key(), 0, records(1, 1), commit_id="y"))
    assert seen == [4, 3]  # marker, head, feed entry, commit item; no marker for an unnamed id
    assert counts == {"UpdateItem": 2, "TransactWriteItems": 2}
    seen.clear()
    counts.clear()
    quiet = DynamoDBDriver(moto_client, moto_table, feed=False)
    quiet.append(Commit(key(), 0, records(1, 1), commit_id="x", named=True))
    quiet.append(Commit(key(), 0, records(1, 1), commit_id="y"))
    assert seen == [3, 2]  # without the feed: the marker when named, the head, the commit item
    assert counts == {"TransactWriteItems": 2}


def test_handle_twice_with_a_commit_id(moto_client: Any, moto_table: str) -> None:
    store = new_store(moto_table, client=moto_client)
    counter = Counter(key(), store)
    assert counter.handle(Increment(4), commit_id="cmd") == [Incremented(4)]
    assert counter.handle(Increment(4), commit_id="cmd") == []
    again = Counter(counter.get_key(), store)
    assert again.handle(Increment(4), commit_id="cmd") == []
    assert (again.count, again.sequence_number()) == (4, 1)


def test_resend_after_a_lost_reply_is_already_stored(driver: DynamoDBDriver, moto_client: Any) -> None:
    k = key()
    lose_next_reply(moto_client)
    commit = Commit(k, 0, records(1, 2), commit_id="once")
    with pytest.raises(StoreUnavailableError):
        driver.append(commit)
    assert driver.append(commit) == ALREADY_STORED
    entries = driver.read_feed({0: None}, 10)
    assert summary(entries) == [("1", k, 1, records(1, 2))]  # position 2 was tombstoned at once


def test_swap_value(driver: DynamoDBDriver) -> None:
    name = f"consumer/{uuid.uuid4().hex[:8]}/lease"
    assert driver.read_value(name) is None
    assert driver.swap_value(name, None, None)  # absent to absent
    assert driver.swap_value(name, None, b"a")
    assert driver.read_value(name) == b"a"
    assert not driver.swap_value(name, None, b"b"), "present is not absent"
    assert not driver.swap_value(name, b"x", b"b"), "wrong expected value"
    assert driver.swap_value(name, b"a", b"b")
    assert driver.read_value(name) == b"b"
    assert driver.swap_value(name, b"b", None)
    assert driver.read_value(name) is None
    assert not driver.swap_value(name, b"b", b"c"), "absent is not a value"


def test_swap_value_ttl(driver: DynamoDBDriver) -> None:
    name = f"lease-{uuid.uuid4().hex[:8]}"
    # A long ttl while the value must be there (a pause of the process must not expire
    # it), then a renewal to a short one that must expire.
    assert driver.swap_value(name, None, b"mine", ttl=30)
    assert driver.read_value(name) == b"mine"
    assert not driver.swap_value(name, None, b"theirs"), "not expired yet"
    assert driver.swap_value(name, b"mine", b"mine", ttl=0.2), "renewed"
    time.sleep(0.3)
    assert driver.read_value(name) is None, "expired counts as absent"
    assert not driver.swap_value(name, b"mine", b"mine"), "an expired value cannot be renewed"
    assert driver.swap_value(name, None, b"theirs")
    assert driver.read_value(name) == b"theirs", "no ttl: it stays"
    time.sleep(0.05)
    assert driver.read_value(name) == b"theirs"


def test_bucket_and_grace_options(moto_client: Any, moto_table: str) -> None:
    from kvsourcing.errors import ConfigurationError
    from kvsourcing.stores.dynamodb import from_url

    with new_store(moto_table, client=moto_client, buckets=3, feed_grace=1.5) as store:
        assert (store.driver.buckets, store.driver.feed_grace) == (3, 1.5)
    with from_url(f"dynamodb://{moto_table}", client=moto_client, buckets=5) as store:
        assert store.driver.buckets == 5
    for bad in (0, "8", True):
        with pytest.raises(ConfigurationError, match="bucket"):
            new_store(moto_table, client=moto_client, buckets=bad)
    with pytest.raises(ConfigurationError, match="feed_grace"):
        new_store(moto_table, client=moto_client, feed_grace=-1)


def test_items_written_before_commit_ids_still_load(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    """Commit items without ``i``/``t``, a snapshot in the head and an old-style TTL marker,
    as earlier releases wrote them."""
    k = key()
    old = [
        {"k": {"S": k}, "s": {"N": "0"}, "v": {"N": "3"}, "n": {"N": "2"}, "b": {"B": b"state@2"}},
        {"k": {"S": k}, "s": {"N": "2"}, "r": {"L": [{"B": r} for r in records(1, 2)]}},
        {"k": {"S": k}, "s": {"N": "3"}, "r": {"L": [{"B": r} for r in records(3, 1)]}},
        {"k": {"S": f"{k}\x1fid\x1fold-1"}, "s": {"N": "0"}, "x": {"N": "9999999999"}},
    ]
    for item in old:
        moto_client.put_item(TableName=moto_table, Item=item)
    loaded = driver.load(k, 0, metadata=True, commit_id="old-1")
    assert (loaded.snapshot, list(loaded.records), loaded.stored) == (
        Snapshot(2, b"state@2"),
        records(3, 1),
        False,
    )
    assert loaded.commits == []
    assert driver.append(Commit(k, 3, records(4, 1), commit_id="new-1", named=True)) is None
    loaded = driver.load(k, 0, use_snapshot=False, metadata=True)
    assert list(loaded.records) == records(1, 4)
    assert [(c.first, c.last, c.commit_id) for c in loaded.commits] == [(4, 4, "new-1")]
    assert driver.load(k, 0).snapshot == Snapshot(2, b"state@2")
    assert driver.append(Commit(k, 4, records(5, 1), snapshot=b"state@5")) is None
    head = next(i for i in table_items(moto_client, moto_table) if i["k"]["S"] == k and i["s"]["N"] == "0")
    assert set(head) == {"k", "s", "v"}, "the head's old snapshot is gone with the new one"
    assert driver.load(k, 0).snapshot == Snapshot(5, b"state@5")


def test_create_table_sets_the_ttl_attribute(moto_client: Any) -> None:
    from kvsourcing.stores.dynamodb import create_table
    from kvsourcing.testing.moto import fresh_table_name

    name = fresh_table_name()
    assert create_table(moto_client, name) is True
    ttl = moto_client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "x")
    assert create_table(moto_client, name) is False


def test_trim_keeps_a_late_commit_from_landing_below_the_watermark(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    """A commit that reserved position 1 and was later than ``feed_grace``: a reader
    tombstones 1 and a consumer passes it, the feed is trimmed, then the commit's
    transaction arrives. It must not land at 1, below the trim watermark, where no reader
    looks: it must move to a new position, as it does when the tombstone is still there."""
    late, other = key(), key()

    def meanwhile() -> None:
        assert driver.append(Commit(other, 0, records(1, 1))) is None
        time.sleep(GRACE + 0.05)
        assert summary(driver.read_feed({0: None}, 10)) == [("2", other, 1, records(1, 1))]
        driver.trim_feed(0, ["2"])  # every consumer is past position 2

    before_the_next_transaction(moto_client, meanwhile)
    assert driver.append(Commit(late, 0, records(1, 3))) is None
    assert list(driver.load(late, 0).records) == records(1, 3)
    entries = driver.read_feed({0: "2"}, 10)
    assert [(e.key, e.first, list(e.records)) for e in entries] == [(late, 1, records(1, 3))]
    positions = set(feed_items(moto_client, moto_table))
    assert 1 in positions and 2 not in positions, "the gap's tombstone is kept, the consumed entry trimmed"


def test_trim_still_removes_the_tombstone_of_a_failed_commit(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    assert driver.append(Commit(k, 0, records(1, 1))) is None
    assert driver.append(Commit(k, 0, records(1, 1))) == 1  # a clash: it tombstones position 2 itself
    assert driver.append(Commit(k, 1, records(2, 1))) is None
    assert driver.trim_feed(0, ["3"]) == 3
    assert set(feed_items(moto_client, moto_table)) == {0}


def _refusal(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "TransactWriteItems",
    )


@pytest.mark.parametrize(
    ("failure", "may_land"),
    [
        (EndpointConnectionError(endpoint_url="https://dynamodb.example"), True),
        (_refusal("InternalServerError", 500), True),
        (_refusal("TransactionInProgressException", 400), True),
        (_refusal("ValidationException", 400), False),
    ],
    ids=["connection lost", "server error", "in progress", "refused"],
)
def test_a_failed_commit_tombstones_its_position_at_once(
    moto_client: Any, moto_table: str, failure: Exception, may_land: bool
) -> None:
    """Readers need not wait out the grace. When the transaction may still arrive (and must
    then write nothing), the tombstone is a gap's, which trims keep."""
    driver = DynamoDBDriver(moto_client, moto_table, buckets=1, feed_grace=60)
    failed, after = key(), key()

    def fail(**_: Any) -> None:
        raise failure

    moto_client.meta.events.register("before-call.dynamodb.TransactWriteItems", fail)
    with pytest.raises(KvSourcingError):
        driver.append(Commit(failed, 0, records(1, 1)))
    moto_client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", fail)
    assert driver.append(Commit(after, 0, records(1, 1))) is None
    assert summary(driver.read_feed({0: None}, 10)) == [("2", after, 1, records(1, 1))]
    assert ("g" in feed_items(moto_client, moto_table)[1]) is may_land
    assert driver.load(failed, 0).records == []


def test_a_tombstone_racing_a_landing_transaction_makes_the_reader_look_again(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    """DynamoDB refuses a write to an item a transaction is writing (TransactionConflict):
    for a reader's tombstone that is a late commit landing, not an unavailable store."""
    first, after = key(), key()
    driver.append(Commit(first, 0, records(1, 1)))
    assert reserve_position(driver) == 2
    driver.append(Commit(after, 0, records(1, 1)))
    time.sleep(GRACE + 0.05)
    conflicts: list[str] = []

    def conflict(params: dict[str, Any], **_: Any) -> None:
        if not conflicts and "t" in params.get("Item", {}):
            conflicts.append(params["Item"]["s"]["N"])
            raise ClientError(
                {"Error": {"Code": "TransactionConflictException", "Message": "in a transaction"}}, "PutItem"
            )

    moto_client.meta.events.register("before-parameter-build.dynamodb.PutItem", conflict)
    try:
        assert summary(driver.read_feed({0: "1"}, 10)) == [("3", after, 1, records(1, 1))]
    finally:
        moto_client.meta.events.unregister("before-parameter-build.dynamodb.PutItem", conflict)
    assert conflicts == ["2"] and set(feed_items(moto_client, moto_table)[2]) == {"k", "s", "t", "g"}
