"""An atomic append as one ``TransactWriteItems``, and what its cancellation says (sans-IO).

Per commit, in this order: the ``Put`` of its marker when its id is named (conditioned on
the marker's absence), the ``Update`` of its head (conditioned on the expected sequence,
``ReturnValuesOnConditionCheckFailure=ALL_OLD`` so that a clash reports the real head),
the ``Put`` of its snapshot when one is due, the ``Put`` of its feed entry when the
driver keeps the feed (conditioned on absence: a reader may have tombstoned a late
commit's position), then the ``Put`` of its commit item(s). The commits' positions and
time are filled in per attempt by ``stamp``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kvsourcing.errors import CommitTooLargeError, KvSourcingError
from kvsourcing.stores.dynamodb.layout import (
    HEAD,
    ITEM_BYTES,
    SNAPSHOT,
    TRANSACTION_ACTIONS,
    TRANSACTION_BYTES,
    feed_partition,
    integer,
    key_bytes,
    marker_sort_key,
    number,
)
from kvsourcing.stores.dynamodb.packing import (
    NUMBER_BYTES,
    feed_entry_bytes,
    head_bytes,
    marker_bytes,
    pack,
    records_bytes,
    snapshot_bytes,
)
from kvsourcing.stores.keyvalue.records import Commit, partition_bucket

TRANSIENT_REASONS: Final = frozenset(
    {
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)
"""Cancellation reasons that wrote nothing and are worth another attempt."""
_FAILED: Final = "ConditionalCheckFailed"


@dataclass(slots=True)
class Transaction:
    """The ``TransactItems`` of an append, and where each commit's actions sit in them."""

    actions: list[dict[str, Any]] = field(default_factory=list)
    markers: list[int | None] = field(default_factory=list)
    heads: list[int] = field(default_factory=list)
    feeds: list[int | None] = field(default_factory=list)
    buckets: list[int | None] = field(default_factory=list)
    finals: list[dict[str, Any]] = field(default_factory=list)
    """Each commit's final commit item (which keeps its id and time)."""

    def wanted_positions(self, commits: Sequence[int] | None = None) -> dict[int, int]:
        """``{commit index: bucket}`` of the commits (all by default) that need a feed position."""
        indexes = range(len(self.buckets)) if commits is None else commits
        return {index: bucket for index in indexes if (bucket := self.buckets[index]) is not None}


def build_transaction(table: str, commits: Sequence[Commit], *, buckets: int, feed: bool) -> Transaction:
    """The append's transaction, or ``CommitTooLargeError`` beyond DynamoDB's limits (100
    actions, 4 MB)."""
    tx = Transaction()
    total = 0
    inline: list[tuple[dict[str, Any], dict[str, Any], int, int]] = []
    for commit in commits:
        size = key_bytes(commit.key)
        pieces = pack(commit.records, commit.expected, commit.key, size, commit.commit_id)
        tx.markers.append(None)
        if commit.named and commit.commit_id is not None:
            tx.markers[-1] = len(tx.actions)
            tx.actions.append({"Put": _marker_put(table, commit.key, commit.commit_id)})
            total += marker_bytes(size, commit.commit_id)
        tx.heads.append(len(tx.actions))
        tx.actions.append({"Update": _head_update(table, commit)})
        total += head_bytes(size)
        if commit.snapshot is not None:
            tx.actions.append({"Put": _snapshot_put(table, commit, size)})
            total += snapshot_bytes(size, commit.snapshot)
        tx.feeds.append(None)
        tx.buckets.append(None)
        entry: dict[str, Any] = {}
        entry_size = 0
        if feed:
            bucket = partition_bucket(commit.key, buckets)
            entry = {
                "k": {"S": feed_partition(bucket)},
                "a": {"S": commit.key},
                "f": integer(commit.expected + 1),
            }
            if commit.commit_id is not None:
                entry["i"] = {"S": commit.commit_id}
            tx.feeds[-1], tx.buckets[-1] = len(tx.actions), bucket
            put = {"TableName": table, "Item": entry, "ConditionExpression": "attribute_not_exists(k)"}
            tx.actions.append({"Put": put})
            entry_size = feed_entry_bytes(size, commit.commit_id)
            total += entry_size + 1 + NUMBER_BYTES  # with a reference (l), until inlined below
        for piece in pieces:
            item = {
                "k": {"S": commit.key},
                "s": integer(piece.last),
                "r": {"L": [{"B": r} for r in piece.records]},
            }
            if piece.last != commit.last:
                item["e"] = integer(commit.last)
            tx.actions.append({"Put": {"TableName": table, "Item": item}})
            total += piece.size
        final = tx.actions[-1]["Put"]["Item"]
        if commit.commit_id is not None:
            final["i"] = {"S": commit.commit_id}
        tx.finals.append(final)
        if feed:
            entry["l"] = integer(commit.last)
            if len(pieces) == 1:
                whole = records_bytes(commit.records)
                inline.append((entry, final, entry_size + whole, whole - (1 + NUMBER_BYTES)))
    if len(tx.actions) > TRANSACTION_ACTIONS or total > TRANSACTION_BYTES:
        events = sum(len(commit.records) for commit in commits)
        raise CommitTooLargeError(
            f"an append of {events} records to {len(commits)} aggregate(s) ({commits[0].key!r} "
            f"first) needs {len(tx.actions)} items of {total} bytes in all (with heads, snapshots, "
            f"feed entries and commit-id markers); one DynamoDB transaction holds at most "
            f"{TRANSACTION_ACTIONS} items and "
            f"{TRANSACTION_BYTES} bytes: commit fewer or smaller events"
        )
    for entry, final, entry_size, extra in inline:
        if entry_size <= ITEM_BYTES and total + extra <= TRANSACTION_BYTES:
            del entry["l"]
            entry["r"] = final["r"]
            total += extra
    return tx


def _marker_put(table: str, key: str, commit_id: str) -> dict[str, Any]:
    return {
        "TableName": table,
        "Item": {"k": {"S": key}, "s": integer(marker_sort_key(commit_id)), "i": {"S": commit_id}},
        "ConditionExpression": "attribute_not_exists(k)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _head_update(table: str, commit: Commit) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": table,
        "Key": {"k": {"S": commit.key}, "s": HEAD},
        "UpdateExpression": "SET v = :v",
        "ConditionExpression": "attribute_not_exists(v) OR v = :e" if commit.expected == 0 else "v = :e",
        "ExpressionAttributeValues": {":v": integer(commit.last), ":e": integer(commit.expected)},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if commit.snapshot is not None:
        update["UpdateExpression"] = "SET v = :v REMOVE n, b"  # a snapshot of earlier releases
    return update


def _snapshot_put(table: str, commit: Commit, size: int) -> dict[str, Any]:
    assert commit.snapshot is not None
    needed = snapshot_bytes(size, commit.snapshot)
    if needed > ITEM_BYTES:
        raise CommitTooLargeError(
            f"snapshot of {len(commit.snapshot)} bytes for {commit.key!r} does not fit a "
            f"DynamoDB item ({needed} bytes with key and numbers > {ITEM_BYTES} bytes per item); "
            "shrink the state or use snapshot_interval=0"
        )
    item = {"k": {"S": commit.key}, "s": SNAPSHOT, "n": integer(commit.last), "b": {"B": commit.snapshot}}
    return {"TableName": table, "Item": item}


def stamp(tx: Transaction, now: float, positions: Mapping[int, int]) -> None:
    """Give every commit of ``tx`` its time ``now``, and its feed entry its position."""
    stamp = number(now)
    for index, final in enumerate(tx.finals):
        final["t"] = stamp
        feed = tx.feeds[index]
        if feed is not None:
            entry = tx.actions[feed]["Put"]["Item"]
            entry["s"], entry["t"] = integer(positions[index]), stamp


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What the reasons of a cancelled append say.

    ``index``: the first commit refused, with ``stored`` when its marker shows its id
    stored, else ``head`` (its head as it was; ``None`` when the server did not say);
    ``lost``: commits whose feed position another wrote first (a reader's tombstone);
    ``codes``: any other reasons.
    """

    index: int | None = None
    stored: bool = False
    head: dict[str, Any] | None = None
    lost: tuple[int, ...] = ()
    codes: frozenset[str] = frozenset()

    @property
    def transient(self) -> bool:
        return self.codes <= TRANSIENT_REASONS


def read_cancellation(
    tx: Transaction, commits: Sequence[Commit], reasons: list[dict[str, Any]]
) -> Cancellation:
    """Read the cancellation ``reasons`` (one per action) of ``tx``: a marker's failure comes
    first for its commit (the commit is stored, whatever the head), then a head's."""

    def failed(action: int | None) -> bool:
        return action is not None and action < len(reasons) and reasons[action].get("Code") == _FAILED

    for index, commit in enumerate(commits):
        marker = tx.markers[index]
        if marker is not None and failed(marker):
            theirs = (reasons[marker].get("Item") or {}).get("i", {}).get("S", commit.commit_id)
            if theirs != commit.commit_id:
                raise KvSourcingError(
                    f"commit id {commit.commit_id!r} of {commit.key!r} has the marker slot of stored "
                    f"commit {theirs!r} (their SHA-256 prefixes collide): use another commit id"
                )
            return Cancellation(index, stored=True)
        if failed(tx.heads[index]):
            return Cancellation(index, head=reasons[tx.heads[index]].get("Item"))
    lost = tuple(index for index, action in enumerate(tx.feeds) if failed(action))
    if lost:
        return Cancellation(lost=lost)
    return Cancellation(codes=frozenset(str(r.get("Code")) for r in reasons) - {"None"})


def needs_id_check(commit: Commit, head: int) -> bool:
    """Whether a refused commit may be this very commit stored before (a re-send after a
    lost reply): it has an unnamed id, and its aggregate reached the commit's last sequence.
    Then the commit item at ``commit.last`` holds the id to compare."""
    return commit.commit_id is not None and not commit.named and head >= commit.last
