"""The durable feed's decisions (sans-IO): reserving positions, reading a bucket past its
gaps, tombstones and trims.

Every commit is recorded in the feed of its aggregate's bucket (``partition_bucket(key,
buckets)``) in the same transaction as its records. Before that transaction, an append
reserves the next positions of each bucket it writes with one ``UpdateItem ADD c n`` of
the bucket's counter (outside the transaction, so that racing commits do not conflict on
it), and the transaction ``Put``s each entry at its position with ``attribute_not_exists``.

A reserved position whose transaction does not land is a gap. A commit that fails fills
its own gaps at once with tombstones (on that path only). A writer that dies between the
reservation and the transaction leaves a gap that ``read_feed`` resolves: when a position
is missing but a later entry exists whose time is older than ``feed_grace`` seconds, the
commit that reserved the missing position has been pending at least that long, and the
reader writes a tombstone there with ``attribute_not_exists``. That is the very item the
late commit's transaction would write, so exactly one of the two wins: a commit that
loses to a tombstone reserves a new position and runs its transaction again. Such a gap
tombstone (``g``) is never trimmed, or the late commit could still land below the
watermark where no reader looks. ``read_feed`` never returns an entry past a young gap,
and skips tombstones, so within a bucket the feed is complete and in position order.
Times come from the writers' clocks: a skewed clock only moves when gaps are resolved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvsourcing.stores.dynamodb.layout import HEAD, feed_partition, integer, number, number_of
from kvsourcing.stores.keyvalue.base import corrupt_entry
from kvsourcing.stores.keyvalue.records import FeedEntry


def reservation(table: str, bucket: int, count: int) -> dict[str, Any]:
    """The ``UpdateItem`` reserving the next ``count`` positions of ``bucket``'s feed."""
    return {
        "TableName": table,
        "Key": {"k": {"S": feed_partition(bucket)}, "s": HEAD},
        "UpdateExpression": "ADD c :n",
        "ExpressionAttributeValues": {":n": integer(count)},
        "ReturnValues": "UPDATED_NEW",
    }


def by_bucket(wanted: Mapping[int, int]) -> dict[int, list[int]]:
    """``{bucket: [commit index, ...]}`` of ``{commit index: bucket}``, in commit order."""
    grouped: dict[int, list[int]] = {}
    for index, bucket in sorted(wanted.items()):
        grouped.setdefault(bucket, []).append(index)
    return grouped


def reserved(indexes: Sequence[int], reply: Mapping[str, Any]) -> dict[int, int]:
    """The positions that a ``reservation`` for ``indexes`` gave them, in order."""
    last = int(reply["Attributes"]["c"]["N"])
    return {index: last - len(indexes) + 1 + offset for offset, index in enumerate(indexes)}


def tombstone(table: str, bucket: int, position: int, now: float, *, gap: bool) -> dict[str, Any]:
    """The ``PutItem`` of a tombstone at ``position`` unless something is there. ``gap``: a
    commit may still come for it, so trims keep it."""
    item = {"k": {"S": feed_partition(bucket)}, "s": integer(position), "t": number(now)}
    if gap:
        item["g"] = {"N": "1"}
    return {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(k)"}


def counter_keys(buckets: Sequence[int]) -> list[dict[str, Any]]:
    return [{"k": {"S": feed_partition(bucket)}, "s": HEAD} for bucket in buckets]


def read_counters(buckets: Sequence[int], items: list[dict[str, Any]]) -> dict[int, tuple[int, int]]:
    """``{bucket: (last reserved position, trimmed through)}`` from the counter items."""
    partition = {feed_partition(bucket): bucket for bucket in buckets}
    return {partition[item["k"]["S"]]: (number_of(item, "c"), number_of(item, "w")) for item in items}


def parse_position(bucket: int, position: str | None) -> int:
    """A feed position as a number (0: from the start); ``ValueError`` when it is not one."""
    try:
        return 0 if position is None else int(position)
    except ValueError:
        raise ValueError(f"{position!r} is not a DynamoDB feed position (bucket {bucket})") from None


def bucket_query(table: str, bucket: int, after: int, limit: int) -> dict[str, Any]:
    return {
        "TableName": table,
        "KeyConditionExpression": "k = :k AND s > :s",
        "ExpressionAttributeValues": {":k": {"S": feed_partition(bucket)}, ":s": integer(after)},
        "ConsistentRead": True,
        "Limit": limit,
    }


@dataclass(slots=True)
class PagePlan:
    """What a page of a bucket's feed holds: ``entries`` to return (``(position, item)``),
    old ``gaps`` to tombstone first (positions, and how many of ``entries`` precede them),
    the next position ``expected``, and whether to stop (``done``: the limit, or a young gap)."""

    expected: int
    entries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    gaps: list[tuple[range, int]] = field(default_factory=list)
    done: bool = False


def plan_page(items: list[dict[str, Any]], expected: int, wanted: int, now: float, grace: float) -> PagePlan:
    """Read a page of feed items from position ``expected`` on, for up to ``wanted`` entries."""
    plan = PagePlan(expected)
    for item in items:
        position = int(item["s"]["N"])
        if position > plan.expected:
            written = float(item["t"]["N"]) if "t" in item else 0.0
            if now - written < grace:
                plan.done = True  # a young gap: its commit may still land
                return plan
            plan.gaps.append((range(plan.expected, position), len(plan.entries)))
        plan.expected = position + 1
        if "a" in item:
            plan.entries.append((position, item))
            if len(plan.entries) >= wanted:
                plan.done = True
                return plan
    return plan


def reference(item: dict[str, Any]) -> tuple[str, int, int] | None:
    """``(aggregate key, first, last)`` of an entry whose records live in the commit items."""
    if "r" in item or "l" not in item:
        return None
    return item["a"]["S"], int(item["f"]["N"]), int(item["l"]["N"])


def feed_entry(bucket: int, position: int, item: dict[str, Any], records: list[bytes] | None) -> FeedEntry:
    """The ``FeedEntry`` of a feed item (its records loaded when it refers to them);
    ``EncodingError`` when it is not one the driver wrote."""
    try:
        if records is None:
            records = [value["B"] for value in item["r"]["L"]]
        commit_id = item["i"]["S"] if "i" in item else None
        recorded_at = float(item["t"]["N"]) if "t" in item else None
        return FeedEntry(
            bucket, str(position), item["a"]["S"], int(item["f"]["N"]), records, commit_id, recorded_at
        )
    except (KeyError, TypeError, ValueError) as err:
        raise corrupt_entry(bucket, str(position), err) from err


def watermark(table: str, bucket: int, through: int) -> dict[str, Any]:
    """The ``UpdateItem`` recording that ``bucket`` is trimmed through ``through`` (never back)."""
    return {
        "TableName": table,
        "Key": {"k": {"S": feed_partition(bucket)}, "s": HEAD},
        "UpdateExpression": "SET w = :w",
        "ConditionExpression": "attribute_not_exists(w) OR w < :w",
        "ExpressionAttributeValues": {":w": integer(through)},
    }


def trim_query(table: str, bucket: int, through: int) -> dict[str, Any]:
    return {
        "TableName": table,
        "KeyConditionExpression": "k = :k AND s BETWEEN :first AND :through",
        "ExpressionAttributeValues": {
            ":k": {"S": feed_partition(bucket)},
            ":first": integer(1),
            ":through": integer(through),
        },
        "ProjectionExpression": "k, s, g",
        "ConsistentRead": True,
    }


def trimmable(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The keys of the trimmed items to delete: all but the gap tombstones."""
    return [{"k": item["k"], "s": item["s"]} for item in items if "g" not in item]
