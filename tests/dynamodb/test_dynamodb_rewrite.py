"""The DynamoDB ``rewrite`` primitive (``kvsourcing reencrypt``) on in-process moto: commits
repacked when their records grow or shrink, chunks of whole commits, a commit landing
between chunks, a concurrent rewrite, snapshots kept, moved or dropped, and limits.
What every driver's ``rewrite`` does is in the store suite (``kvsourcing.testing.reencrypt``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.stub import Stubber
from test_dynamodb_driver import table_items

from kvsourcing.errors import CommitTooLargeError
from kvsourcing.stores.dynamodb import ITEM_BYTES, DynamoDBDriver, make_client
from kvsourcing.stores.dynamodb.rewrite import REWRITE_ACTIONS
from kvsourcing.stores.keyvalue import Commit, Snapshot
from kvsourcing.testing.moto import REGION
from kvsourcing.testing.requests import count_requests


def records(first: int, count: int, size: int, fill: bytes = b".") -> list[bytes]:
    return [f"{first + i}".encode().ljust(size, fill) for i in range(count)]


@pytest.fixture
def driver(moto_client: Any, moto_table: str) -> DynamoDBDriver:
    return DynamoDBDriver(moto_client, moto_table)


def key() -> str:
    return f"agg-{uuid.uuid4()}"


def items_of(client: Any, table: str, k: str) -> dict[int, dict[str, Any]]:
    return {int(i["s"]["N"]): i for i in table_items(client, table) if i["k"]["S"] == k}


def test_a_commit_is_repacked_when_its_records_grow_and_when_they_shrink(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    assert driver.append(Commit(k, 0, records(1, 9, 130_000), commit_id="c-1", named=True)) is None
    assert driver.append(Commit(k, 9, records(10, 1, 10))) is None
    metadata = driver.load(k, 0, metadata=True).commits
    assert [end for end in sorted(items_of(moto_client, moto_table, k)) if end > 0] == [3, 6, 9, 10]

    counts = count_requests(moto_client)
    grown = records(1, 9, 140_000, b"+") + records(10, 1, 10)  # two an item: ends 2, 4, 6, 8, 9
    assert driver.rewrite(k, 10, grown) is None
    assert counts["TransactWriteItems"] == 1, "one commit, one transaction"
    items = items_of(moto_client, moto_table, k)
    assert [end for end in sorted(items) if end > 0] == [2, 4, 6, 8, 9, 10]
    assert all(items[end]["e"] == {"N": "9"} for end in (2, 4, 6, 8)) and "e" not in items[9]
    assert list(driver.load(k, 0).records) == grown
    assert driver.load(k, 0, metadata=True).commits == metadata, "ids and times kept"
    assert driver.load(k, 0, commit_id="c-1").stored

    shrunk = records(1, 10, 10, b"-")  # one item again: the others are deleted
    assert driver.rewrite(k, 10, shrunk) is None
    assert [end for end in sorted(items_of(moto_client, moto_table, k)) if end > 0] == [9, 10]
    assert list(driver.load(k, 0).records) == shrunk
    assert driver.load(k, 0, metadata=True).commits == metadata


def test_unchanged_commits_and_snapshot_are_not_written(driver: DynamoDBDriver, moto_client: Any) -> None:
    k = key()
    for n in range(3):
        driver.append(Commit(k, n, records(n + 1, 1, 10), snapshot=b"s" if n == 2 else None))
    stored = list(driver.load(k, 0, use_snapshot=False).records)
    counts = count_requests(moto_client)
    assert driver.rewrite(k, 3, stored, Snapshot(3, b"s")) is None
    assert "TransactWriteItems" not in counts
    sent: list[list[str]] = []
    moto_client.meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params, **_: sent.append([next(iter(action)) for action in params["TransactItems"]]),
    )
    assert driver.rewrite(k, 3, [stored[0], b"new", stored[2]], Snapshot(3, b"s")) is None
    assert sent == [["ConditionCheck", "Put"]]


def test_commits_go_in_chunks_and_a_commit_between_chunks_stops_the_rest(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    total = 2 * (REWRITE_ACTIONS - 1) + 3  # three chunks of commits, each of one item
    for n in range(total):
        driver.append(Commit(k, n, records(n + 1, 1, 10)))
    old = list(driver.load(k, 0).records)
    new = records(1, total, 10, b"+")
    other = DynamoDBDriver(make_client(region=REGION), moto_table)
    sent: list[int] = []
    raced: list[bool] = []

    def between_chunks(params: dict[str, Any], **_: Any) -> None:
        sent.append(len(params["TransactItems"]))
        if len(sent) == 2 and not raced:
            raced.append(other.append(Commit(k, total, records(total + 1, 1, 10))) is None)

    moto_client.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", between_chunks)
    assert driver.rewrite(k, total, new) == total + 1
    assert raced == [True] and sent == [REWRITE_ACTIONS, REWRITE_ACTIONS]
    stored = list(driver.load(k, 0).records)
    cut = REWRITE_ACTIONS - 1
    assert stored == new[:cut] + old[cut:] + records(total + 1, 1, 10), "the first chunk stays"

    sent.clear()
    assert driver.rewrite(k, total + 1, [*new, stored[-1]]) is None
    assert sent == [REWRITE_ACTIONS, 1 + total - 2 * cut], "what the first chunk wrote is not written again"
    assert list(driver.load(k, 0).records) == [*new, stored[-1]]


def test_a_concurrent_repack_makes_it_read_again_not_leave_overlapping_items(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    driver.append(Commit(k, 0, records(1, 9, 130_000)))  # items ending at 3, 6 and 9
    other = DynamoDBDriver(make_client(region=REGION), moto_table)
    grown = records(1, 9, 140_000, b"+")
    repacked: list[int | None] = []

    def repack_first(**_: Any) -> None:
        if not repacked:
            repacked.append(other.rewrite(k, 9, grown))  # ends 2, 4, 6, 8, 9: 3 is deleted

    moto_client.meta.events.register("before-call.dynamodb.TransactWriteItems", repack_first)
    shrunk = records(1, 9, 10, b"-")
    assert driver.rewrite(k, 9, shrunk) == 9, "its delete of item 3 found it gone: nothing written"
    assert repacked == [None] and list(driver.load(k, 0).records) == grown
    assert driver.rewrite(k, 9, shrunk) is None
    assert [end for end in sorted(items_of(moto_client, moto_table, k)) if end > 0] == [9]
    assert list(driver.load(k, 0).records) == shrunk


def test_a_snapshot_kept_in_the_head_by_an_earlier_release_is_moved_to_its_item(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    driver.append(Commit(k, 0, records(1, 3, 10)))
    moto_client.update_item(
        TableName=moto_table,
        Key={"k": {"S": k}, "s": {"N": "0"}},
        UpdateExpression="SET n = :n, b = :b",
        ExpressionAttributeValues={":n": {"N": "3"}, ":b": {"B": b"old state"}},
    )
    assert driver.load(k, 0).snapshot == Snapshot(3, b"old state")
    assert driver.rewrite(k, 3, records(1, 3, 10, b"+"), Snapshot(3, b"new state")) is None
    items = items_of(moto_client, moto_table, k)
    assert "n" not in items[0] and "b" not in items[0]
    assert (items[-1]["n"], items[-1]["b"]) == ({"N": "3"}, {"B": b"new state"})
    assert driver.load(k, 0).snapshot == Snapshot(3, b"new state")


def test_a_snapshot_that_no_longer_fits_an_item_is_dropped(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    driver.append(Commit(k, 0, records(1, 2, 10), snapshot=b"y" * (ITEM_BYTES - 200)))
    assert driver.rewrite(k, 2, records(1, 2, 10, b"+"), Snapshot(2, b"z" * ITEM_BYTES)) is None
    assert -1 not in items_of(moto_client, moto_table, k)
    loaded = driver.load(k, 0)
    assert (loaded.snapshot, list(loaded.records)) == (None, records(1, 2, 10, b"+"))


def test_a_commit_too_large_for_one_transaction_raises_writing_nothing(
    driver: DynamoDBDriver, moto_client: Any, moto_table: str
) -> None:
    k = key()
    driver.append(Commit(k, 0, records(1, 1, 10)))
    driver.append(Commit(k, 1, records(2, 11, 360_000)))  # 3.96 MB: one item a record
    before = table_items(moto_client, moto_table)
    counts = count_requests(moto_client)
    with pytest.raises(CommitTooLargeError, match=r"cannot re-encrypt .* ending at sequence 12"):
        driver.rewrite(k, 12, records(1, 1, 10, b"+") + records(2, 11, 375_000))
    assert "TransactWriteItems" not in counts, "planned whole before anything is sent"
    assert table_items(moto_client, moto_table) == before


def test_a_transaction_conflict_is_tried_again(aws_env: None) -> None:
    client = make_client(region=REGION)
    k = key()
    head = {"k": {"S": k}, "s": {"N": "0"}, "v": {"N": "1"}}
    item = {"k": {"S": k}, "s": {"N": "1"}, "r": {"L": [{"B": b"old"}]}}
    conflict = {
        "service_error_code": "TransactionCanceledException",
        "service_message": "Transaction cancelled [None, TransactionConflict]",
        "modeled_fields": {"CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]},
    }
    with Stubber(client) as stub:
        stub.add_response("batch_get_item", {"Responses": {"t": [head]}})
        stub.add_response("query", {"Items": [item]})
        stub.add_client_error("transact_write_items", **conflict)
        stub.add_response("transact_write_items", {})
        assert DynamoDBDriver(client, "t").rewrite(k, 1, [b"new"]) is None
        stub.assert_no_pending_responses()
