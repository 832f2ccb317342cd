"""The DynamoDB driver's primitives on in-process moto: atomicity, splitting, limits, requests."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from botocore.stub import Stubber

from kvsourcing.errors import (
    CommitTooLargeError,
    ConfigurationError,
    InvalidKeyError,
    StoreUnavailableError,
    TableNotFoundError,
)
from kvsourcing.stores.dynamodb import ITEM_BYTES, DynamoDBDriver, create_table, make_client
from kvsourcing.stores.keyvalue import Commit, Snapshot
from kvsourcing.testing.moto import REGION, fresh_table_name
from kvsourcing.testing.requests import count_requests


def records(first: int, count: int, size: int = 8) -> list[bytes]:
    return [f"{first + i}".encode().ljust(size, b".") for i in range(count)]


@pytest.fixture
def driver(moto_client: Any, moto_table: str) -> DynamoDBDriver:
    return DynamoDBDriver(moto_client, moto_table)


def key() -> str:
    return f"agg-{uuid.uuid4()}"


def table_items(client: Any, table: str) -> list[dict[str, Any]]:
    pages = client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def aggregate_items(client: Any, table: str) -> list[dict[str, Any]]:
    """The heads and commit items (not the feed, commit-id markers or values)."""
    return [i for i in table_items(client, table) if "\x1f" not in i["k"]["S"]]


def test_append_then_load(driver: DynamoDBDriver) -> None:
    k = key()
    assert driver.append(Commit(k, 0, records(1, 3))) is None
    assert driver.append(Commit(k, 3, records(4, 2))) is None
    loaded = driver.load(k, 0)
    assert (loaded.snapshot, loaded.first, list(loaded.records)) == (None, 1, records(1, 5))
    tail = driver.load(k, 2)
    assert (tail.first, list(tail.records)) == (3, records(3, 3))
    assert list(driver.load(k, 5).records) == []


def test_fresh_aggregate_loads_empty(driver: DynamoDBDriver) -> None:
    loaded = driver.load(key(), 0)
    assert (loaded.snapshot, loaded.first, list(loaded.records)) == (None, 1, [])


def test_clash_returns_actual_head_and_writes_nothing(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    driver.append(Commit(k, 0, records(1, 2)))
    before = aggregate_items(moto_client, moto_table)
    assert driver.append(Commit(k, 0, records(1, 1))) == 2
    assert driver.append(Commit(k, 1, records(2, 3))) == 2
    assert driver.append(Commit(k, 5, records(6, 1))) == 2
    assert driver.append(Commit(key(), 4, records(5, 1))) == 0
    assert aggregate_items(moto_client, moto_table) == before


def test_snapshot_lives_in_head(driver: DynamoDBDriver) -> None:
    k = key()
    driver.append(Commit(k, 0, records(1, 3), snapshot=b"state@3"))
    driver.append(Commit(k, 3, records(4, 2)))
    loaded = driver.load(k, 0)
    assert loaded.snapshot == Snapshot(3, b"state@3")
    assert (loaded.first, list(loaded.records)) == (4, records(4, 2))
    assert driver.load(k, 3).snapshot is None
    plain = driver.load(k, 0, use_snapshot=False)
    assert (plain.snapshot, plain.first, list(plain.records)) == (None, 1, records(1, 5))
    driver.append(Commit(k, 5, records(6, 1), snapshot=b"state@6"))
    assert driver.load(k, 0).snapshot == Snapshot(6, b"state@6")


def test_request_counts(driver: DynamoDBDriver, moto_client: Any) -> None:
    counts = count_requests(moto_client)
    k = key()
    driver.load(k, 0)
    assert counts == {"BatchGetItem": 1}, "a fresh aggregate costs one request (head and snapshot)"
    counts.clear()
    for n in range(0, 30, 10):
        driver.append(Commit(k, n, records(n + 1, 10)))
    assert counts == {"UpdateItem": 3, "TransactWriteItems": 3}, "two requests per commit, whatever N"
    counts.clear()
    driver.load(k, 0)
    assert counts == {"BatchGetItem": 1, "Query": 1}
    counts.clear()
    driver.load(k, 30)
    assert counts == {"BatchGetItem": 1}, "an up-to-date aggregate costs one request"
    counts.clear()
    driver.load(k, 0, use_snapshot=False)
    assert counts == {"Query": 1}


def test_commit_split_over_items_and_reloaded(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    big = records(1, 9, size=130_000)  # 1.2 MB: three items of three
    counts = count_requests(moto_client)
    assert driver.append(Commit(k, 0, big, snapshot=b"s" * 1000)) is None
    assert counts == {"UpdateItem": 1, "TransactWriteItems": 1}
    items = [i for i in table_items(moto_client, moto_table) if i["k"]["S"] == k]
    assert sorted(int(i["s"]["N"]) for i in items) == [-1, 0, 3, 6, 9]  # snapshot, head, three items
    assert list(driver.load(k, 0, use_snapshot=False).records) == big
    assert list(driver.load(k, 4, use_snapshot=False).records) == big[4:]
    driver.append(Commit(k, 9, records(10, 1)))
    loaded = driver.load(k, 0)
    assert (loaded.snapshot, list(loaded.records)) == (Snapshot(9, b"s" * 1000), records(10, 1))


def test_load_follows_query_pages(driver: DynamoDBDriver, moto_client: Any) -> None:
    k = key()
    big = records(1, 12, size=250_000)  # 3 MB over 12 items: more than one 1 MB page
    for n in range(0, 12, 3):
        driver.append(Commit(k, n, big[n : n + 3]))
    counts = count_requests(moto_client)
    assert list(driver.load(k, 0).records) == big
    assert counts["Query"] > 1


def test_too_large_commit_writes_nothing(driver: DynamoDBDriver, moto_client: Any, moto_table: str) -> None:
    k = key()
    driver.append(Commit(k, 0, records(1, 1)))
    before = table_items(moto_client, moto_table)
    counts = count_requests(moto_client)
    with pytest.raises(CommitTooLargeError, match=r"4000000 bytes"):
        driver.append(Commit(k, 1, records(2, 11, size=390_000)))
    with pytest.raises(CommitTooLargeError, match=r"record 2 .* 400000"):
        driver.append(Commit(k, 1, [b"x" * ITEM_BYTES]))
    with pytest.raises(CommitTooLargeError, match="snapshot"):
        driver.append(Commit(k, 1, records(2, 1), snapshot=b"x" * ITEM_BYTES))
    assert not counts, "nothing was sent"
    assert table_items(moto_client, moto_table) == before


def test_largest_record_fits(driver: DynamoDBDriver) -> None:
    k = key()
    record = b"x" * (ITEM_BYTES - 200)
    assert driver.append(Commit(k, 0, [record], snapshot=b"y" * (ITEM_BYTES - 200))) is None
    assert list(driver.load(k, 0, use_snapshot=False).records) == [record]


def test_key_limits(driver: DynamoDBDriver) -> None:
    with pytest.raises(InvalidKeyError, match="2048"):
        driver.append(Commit("k" * 2049, 0, records(1, 1)))
    with pytest.raises(InvalidKeyError):
        driver.load("\ud800", 0)


def test_racing_writers_one_wins(driver: DynamoDBDriver) -> None:
    k = key()
    results: list[int | None] = []
    barrier = threading.Barrier(6)

    def write(n: int) -> None:
        barrier.wait()
        results.append(driver.append(Commit(k, 0, [f"w{n}".encode()])))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=lambda r: r is not None) == [None] + [1] * 5
    assert len(driver.load(k, 0).records) == 1


def test_missing_table(moto_client: Any) -> None:
    name = fresh_table_name()
    driver = DynamoDBDriver(moto_client, name)
    with pytest.raises(TableNotFoundError, match=rf"{name}.*create-table {name}"):
        driver.append(Commit(key(), 0, records(1, 1)))
    with pytest.raises(TableNotFoundError, match="create_table"):
        driver.load(key(), 0)
    with pytest.raises(TableNotFoundError):
        driver.load(key(), 0, use_snapshot=False)


def test_create_table_idempotent_and_schema_checked(moto_client: Any) -> None:
    name = fresh_table_name()
    assert create_table(moto_client, name) is True
    assert create_table(moto_client, name) is False
    other = fresh_table_name()
    moto_client.create_table(
        TableName=other,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigurationError, match=r"id \(S, HASH\).*k \(S, HASH\), s \(N, RANGE\)"):
        create_table(moto_client, other)
    with pytest.raises(ConfigurationError, match="table name"):
        create_table(moto_client, "x")
    described = moto_client.describe_table(TableName=name)["Table"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_transaction_conflict_is_retried(aws_env: None) -> None:
    client = make_client(region=REGION)
    driver = DynamoDBDriver(client, "t-conflict")
    conflict = {
        "service_error_code": "TransactionCanceledException",
        "service_message": "Transaction cancelled [TransactionConflict, None, None]",
        "modeled_fields": {
            "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}, {"Code": "None"}]
        },
    }
    reserved = {"Attributes": {"c": {"N": "7"}}}
    with Stubber(client) as stub:
        stub.add_response("update_item", reserved)
        stub.add_client_error("transact_write_items", **conflict)
        stub.add_client_error("transact_write_items", **conflict)
        stub.add_response("transact_write_items", {})
        assert driver.append(Commit(key(), 0, records(1, 1))) is None
        stub.assert_no_pending_responses()
    with Stubber(client) as stub:
        stub.add_response("update_item", reserved)
        for _ in range(3):
            stub.add_client_error("transact_write_items", **conflict)
        stub.add_response("put_item", {})  # the abandoned position's tombstone
        with pytest.raises(StoreUnavailableError, match="contended"):
            DynamoDBDriver(client, "t-conflict", attempts=3).append(Commit(key(), 0, records(1, 1)))
        stub.assert_no_pending_responses()


def test_unreachable_endpoint_named(aws_env: None) -> None:
    import boto3
    from botocore.config import Config

    endpoint = "http://127.0.0.1:9"
    client = boto3.session.Session().client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=endpoint,
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(StoreUnavailableError, match=endpoint):
        DynamoDBDriver(client, "t-unreachable").load(key(), 0)


def test_no_region(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigurationError, match=r"region=.*AWS_DEFAULT_REGION"):
        make_client()


def test_no_credentials(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    client = make_client(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="credentials"):
        DynamoDBDriver(client, "t-creds").load(key(), 0)


def test_torn_view_of_a_split_commit_is_read_again(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    big = records(1, 5, size=130_000)  # items ending at 3 (with e=5) and 5, in one page
    driver.append(Commit(k, 0, big))
    items = {int(i["s"]["N"]): i for i in table_items(moto_client, moto_table) if i["k"]["S"] == k}
    assert items[3]["e"] == {"N": "5"} and "e" not in items[5]
    # What each Query sees: the first item only, then the last only (a gap), then both.
    views = [[3], [5], [3, 5]]

    def show(**_: Any) -> None:
        visible = views.pop(0)
        for end, item in items.items():
            if end in visible:
                moto_client.put_item(TableName=moto_table, Item=item)
            else:
                moto_client.delete_item(TableName=moto_table, Key={"k": item["k"], "s": item["s"]})

    counts = count_requests(moto_client)
    moto_client.meta.events.register("before-call.dynamodb.Query", show)
    assert list(driver.load(k, 0, use_snapshot=False).records) == big
    assert counts["Query"] == 3


def test_persistent_gap_is_reported(driver: DynamoDBDriver, moto_client: Any, moto_table: str) -> None:
    k = key()
    driver.append(Commit(k, 0, records(1, 5, size=130_000)))
    moto_client.delete_item(TableName=moto_table, Key={"k": {"S": k}, "s": {"N": "3"}})
    with pytest.raises(StoreUnavailableError, match="gap"):
        DynamoDBDriver(moto_client, moto_table, attempts=2).load(k, 0)


def test_a_clash_reports_the_real_head_even_when_the_server_omits_it(
    driver: DynamoDBDriver, moto_client: Any
) -> None:
    """Some DynamoDB emulators leave the head out of the cancellation reasons."""
    k = key()
    assert driver.append(Commit(k, 0, records(1, 2))) is None

    def omit_items(parsed: dict[str, Any], **_: Any) -> None:
        for reason in parsed.get("CancellationReasons", []):
            reason.pop("Item", None)

    moto_client.meta.events.register("after-call.dynamodb.TransactWriteItems", omit_items)
    try:
        assert driver.append(Commit(k, 1, records(2, 1))) == 2
        assert driver.append(Commit(key(), 3, records(4, 1))) == 0, "nothing stored: a real 0"
    finally:
        moto_client.meta.events.unregister("after-call.dynamodb.TransactWriteItems", omit_items)
