"""The DynamoDB driver's decisions as functions of data, without a client (what an asyncio
driver reuses): transactions built, cancellations read, feed pages planned, and a whole
append flow driven by hand."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from kvsourcing.errors import KvSourcingError
from kvsourcing.stores.dynamodb.commits import build_transaction, needs_id_check, read_cancellation, stamp
from kvsourcing.stores.dynamodb.feed import by_bucket, plan_page, reserved
from kvsourcing.stores.dynamodb.flows import append_many
from kvsourcing.stores.dynamodb.loads import Head, RecordsReading, from_head
from kvsourcing.stores.dynamodb.steps import Call
from kvsourcing.stores.keyvalue import Commit, CommitInfo, Refusal, Snapshot

FAILED = {"Code": "ConditionalCheckFailed"}
NONE = {"Code": "None"}


def test_transaction_layout_per_commit() -> None:
    commits = [
        Commit("a", 0, [b"1"], commit_id="named", named=True),
        Commit("b", 4, [b"5", b"6"], snapshot=b"state", commit_id="auto"),
    ]
    tx = build_transaction("t", commits, buckets=4, feed=True)
    kinds = [next(iter(action)) for action in tx.actions]
    assert kinds == ["Put", "Update", "Put", "Put", "Update", "Put", "Put", "Put"]
    assert (tx.markers, tx.heads, tx.feeds) == ([0, None], [1, 4], [2, 6])
    stamp(tx, 12.5, {0: 7, 1: 8})
    assert tx.finals[1] == {
        "k": {"S": "b"},
        "s": {"N": "6"},
        "r": {"L": [{"B": b"5"}, {"B": b"6"}]},
        "i": {"S": "auto"},
        "t": {"N": "12.500000"},
    }
    entry = tx.actions[6]["Put"]["Item"]
    assert (entry["s"], entry["i"], entry["r"]) == ({"N": "8"}, {"S": "auto"}, tx.finals[1]["r"])
    quiet = build_transaction("t", commits, buckets=4, feed=False)
    assert [next(iter(a)) for a in quiet.actions] == ["Put", "Update", "Put", "Update", "Put", "Put"]


def test_cancellation_reasons_are_read_in_commit_order() -> None:
    commits = [Commit("a", 0, [b"1"], commit_id="x", named=True), Commit("b", 2, [b"3"], commit_id="y")]
    tx = build_transaction("t", commits, buckets=1, feed=True)
    head_b = {"k": {"S": "b"}, "s": {"N": "0"}, "v": {"N": "5"}}
    # a's marker and b's head fail: a's id is stored, and that comes first.
    reasons: list[dict[str, Any]] = [FAILED, NONE, NONE, NONE, {**FAILED, "Item": head_b}, NONE, NONE]
    first = read_cancellation(tx, commits, reasons)
    assert (first.index, first.stored) == (0, True)
    reasons[0] = NONE
    cancelled = read_cancellation(tx, commits, reasons)
    assert (cancelled.index, cancelled.stored, cancelled.head) == (1, False, head_b)
    assert needs_id_check(commits[1], 5) and not needs_id_check(commits[1], 2)
    assert not needs_id_check(commits[0], 9), "a named id is found by its marker"
    lost = read_cancellation(tx, commits, [NONE, NONE, FAILED, NONE, NONE, NONE, NONE])
    assert (lost.index, lost.lost) == (None, (0,))
    conflict = read_cancellation(tx, commits, [NONE, {"Code": "TransactionConflict"}])
    assert conflict.transient and conflict.codes == {"TransactionConflict"}
    theirs = {**FAILED, "Item": {"i": {"S": "other"}}}
    with pytest.raises(KvSourcingError, match="collide"):
        read_cancellation(tx, commits, [theirs, NONE, NONE, NONE, NONE, NONE, NONE])


def test_feed_positions_are_reserved_per_bucket() -> None:
    assert by_bucket({0: 3, 1: 1, 2: 3}) == {3: [0, 2], 1: [1]}
    assert reserved([0, 2], {"Attributes": {"c": {"N": "9"}}}) == {0: 8, 2: 9}


def feed_item(position: int, written: float, entry: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {"s": {"N": str(position)}, "t": {"N": str(written)}}
    if entry:
        item["a"] = {"S": "k"}
    return item


def test_a_page_stops_at_a_young_gap_and_plans_tombstones_for_old_ones() -> None:
    items = [feed_item(1, 0), feed_item(2, 0, entry=False), feed_item(5, 90), feed_item(7, 99.5)]
    plan = plan_page(items, 1, 10, now=100.0, grace=5.0)
    assert [position for position, _ in plan.entries] == [1, 5]
    assert plan.gaps == [(range(3, 5), 1)]
    assert (plan.expected, plan.done) == (6, True), "position 6 is a young gap: stop before 7"
    limited = plan_page(items, 1, 1, now=100.0, grace=5.0)
    assert ([p for p, _ in limited.entries], limited.done, limited.expected) == ([1], True, 2)


def test_records_and_commit_metadata_from_query_pages() -> None:
    def item(end: int, records: list[bytes], **extra: Any) -> dict[str, Any]:
        return {"s": {"N": str(end)}, "r": {"L": [{"B": r} for r in records]}, **extra}

    reading = RecordsReading(1)
    stamped = {"i": {"S": "c2"}, "t": {"N": "7.5"}}
    assert reading.add([item(2, [b"1", b"2"]), item(3, [b"3"], e={"N": "4"})])
    assert reading.records() is None, "a split commit seen in part"
    assert reading.add([item(4, [b"4"], **stamped)])
    assert reading.records() == [b"2", b"3", b"4"]
    assert reading.commits == [CommitInfo(3, 4, "c2", 7.5)], "the commit before has no metadata"
    assert not RecordsReading(0).add([item(3, [b"3"])]), "a gap: the view is torn"


def test_the_newest_snapshot_wins_whether_in_its_item_or_an_old_head() -> None:
    old_head = {"v": {"N": "9"}, "n": {"N": "4"}, "b": {"B": b"old"}}
    snapshot = {"n": {"N": "6"}, "b": {"B": b"new"}}
    assert from_head(Head(old_head, snapshot, False), 0) == (Snapshot(6, b"new"), 6, False)
    assert from_head(Head(old_head, None, False), 0) == (Snapshot(4, b"old"), 4, False)
    assert from_head(Head(old_head, snapshot, False), 9) == (None, 9, True)
    assert from_head(Head(None, None, False), 3) == (None, 3, True)


def test_an_append_flow_driven_by_hand_reports_a_clash_and_tombstones_its_position() -> None:
    """What an asyncio driver does with the same flow: send each step, feed back the reply."""
    flow = append_many("t", [Commit("a", 0, [b"1"])], buckets=1, feed_on=True, grace=5.0, attempts=3)
    step = next(flow)
    assert isinstance(step, Call) and step.operation == "update_item"
    step = flow.send({"Attributes": {"c": {"N": "4"}}})
    assert step.operation == "transact_write_items"
    assert step.request["TransactItems"][1]["Put"]["Item"]["s"] == {"N": "4"}, "the reserved position"
    cancelled = ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{**FAILED, "Item": {"v": {"N": "3"}}}, NONE, NONE],
        },
        "TransactWriteItems",
    )
    step = flow.throw(cancelled)
    assert step.operation == "put_item" and step.request["Item"]["s"] == {"N": "4"}, "its tombstone"
    with pytest.raises(StopIteration) as done:
        flow.send({})
    assert done.value.value == Refusal(0, 3)
