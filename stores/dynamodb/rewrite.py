"""The ``rewrite`` primitive on DynamoDB (``kvsourcing reencrypt``): an aggregate's commit
items rewritten in place, as a flow (``steps``) over plans of plain data.

Re-sealed records may be larger or smaller than they were, so each commit is packed
again (``packing.pack``) and its items replaced, added or deleted in one transaction: a
reader never sees a commit half rewritten. Commits whose records did not change are left
alone. Every transaction holds a ``ConditionCheck`` of the head at the expected sequence,
and each item action a condition that the item is there as it was read (absent, for an
item added), so a commit landing meanwhile, or another rewrite repacking a commit,
cancels it: nothing of it is written, and the caller reads again.

Chunks. The changed commits may need more actions than one transaction takes (100 and
4 MB on DynamoDB; moto takes 25, and ``REWRITE_ACTIONS`` keeps to that), so they go in
chunks of whole commits, the snapshot in the first. The rewrite is then not atomic as a
whole, but each chunk is, and each is idempotent: when a commit lands between two
chunks, those sent stay (they hold the same events, under the newest key), the next is
refused, and ``reencrypt`` reads again and rewrites what is left (keeping the records
already re-encrypted as they are). Every chunk is planned before the first is sent, so a
commit too large to rewrite in one transaction raises ``CommitTooLargeError`` having
written nothing.

The snapshot item is replaced; a snapshot that no longer fits an item is dropped (loads
replay the records instead), and one kept in the head by an earlier release is removed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.exceptions import ClientError

from kvsourcing.errors import CommitTooLargeError, StoreUnavailableError
from kvsourcing.stores.dynamodb.commits import TRANSIENT_REASONS
from kvsourcing.stores.dynamodb.errors import (
    MISSING_TABLE,
    backoff,
    cancellation_reasons,
    error_code,
    table_not_found,
)
from kvsourcing.stores.dynamodb.flows import get
from kvsourcing.stores.dynamodb.layout import (
    ITEM_BYTES,
    SNAPSHOT,
    TRANSACTION_BYTES,
    head_sequence,
    integer,
    item_key,
    key_bytes,
    number_of,
)
from kvsourcing.stores.dynamodb.loads import Head, from_head, head_keys, read_head
from kvsourcing.stores.dynamodb.packing import base_bytes, head_bytes, pack, snapshot_bytes
from kvsourcing.stores.dynamodb.steps import Call, Flow, Pause, batch_get, records_after
from kvsourcing.stores.keyvalue.records import Snapshot, check_rewrite

REWRITE_ACTIONS: Final = 25
"""Actions in one transaction of a rewrite, the head's check included: moto's limit
(DynamoDB's is 100; smaller chunks only cost more requests)."""
_FAILED: Final = "ConditionalCheckFailed"


@dataclass(slots=True)
class Chunk:
    """One transaction of a rewrite, but its head action: the item actions, their size,
    and whether the head's snapshot of an earlier release goes with them."""

    actions: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    legacy: bool = False


def rewrite(
    table: str,
    key: str,
    expected_head: int,
    records: Sequence[bytes],
    snapshot: Snapshot | None,
    attempts: int,
) -> Flow[int | None]:
    """Rewrite ``key``'s records and snapshot (see the module docstring): ``None`` when
    every chunk was written, else the head found, having written no more."""
    check_rewrite(expected_head, records)
    size = key_bytes(key)
    found = read_head((yield from batch_get(table, head_keys(key, True, None), "heads")), None)
    head = head_sequence(found.head)
    if head != expected_head:
        return head
    chunks = [Chunk()]
    if snapshot is not None:
        stored = from_head(found, 0)[0]
        if stored is None or stored.sequence != snapshot.sequence:
            return head
        chunks[0] = snapshot_chunk(table, key, size, found, snapshot)
    if expected_head:
        items = (yield from records_after(table, key, 0, attempts, expected_head)).items
        add_commits(chunks, table, key, size, items, records)
    for chunk in chunks:
        if chunk.actions:
            refused = yield from send(table, key, expected_head, chunk, attempts)
            if refused is not None:
                return refused
    return None


def snapshot_chunk(table: str, key: str, size: int, found: Head, snapshot: Snapshot) -> Chunk:
    """The first chunk, with the snapshot's action (none when it is stored as it is)."""
    legacy = found.head is not None and "n" in found.head
    stored = found.snapshot
    if not legacy and stored is not None and Snapshot(number_of(stored, "n"), stored["b"]["B"]) == snapshot:
        return Chunk()
    needed = snapshot_bytes(size, snapshot.state)
    if needed > ITEM_BYTES:
        drop = {"Delete": {"TableName": table, "Key": {"k": {"S": key}, "s": SNAPSHOT}}}
        return Chunk([drop], base_bytes(size), legacy)
    item = {"k": {"S": key}, "s": SNAPSHOT, "n": integer(snapshot.sequence), "b": {"B": snapshot.state}}
    return Chunk([{"Put": {"TableName": table, "Item": item}}], needed, legacy)


def add_commits(
    chunks: list[Chunk],
    table: str,
    key: str,
    size: int,
    items: list[dict[str, Any]],
    records: Sequence[bytes],
) -> None:
    """Add the actions of each changed commit to the last chunk, or to a new one when it is
    full. ``items`` are the commit items of records ``1..len(records)``, in order (read
    whole: ``records_after``); a commit's items end with one without ``e``."""
    pieces: list[dict[str, Any]] = []
    first = 1
    for item in items:
        pieces.append(item)
        if "e" in item:
            continue
        last = int(item["s"]["N"])
        planned = commit_actions(table, key, size, pieces, first, records[first - 1 : last])
        pieces, first = [], last + 1
        if planned is None:
            continue
        actions, total = planned
        if 1 + len(actions) > REWRITE_ACTIONS or head_bytes(size) + total > TRANSACTION_BYTES:
            raise CommitTooLargeError(
                f"cannot re-encrypt {key!r}: its commit ending at sequence {last} would need "
                f"{len(actions)} item actions of {total} bytes, more than one transaction of a "
                f"rewrite holds ({REWRITE_ACTIONS - 1} actions, {TRANSACTION_BYTES} bytes); "
                "nothing was written: keep the keys that sealed it"
            )
        chunk = chunks[-1]
        full = 1 + len(chunk.actions) + len(actions) > REWRITE_ACTIONS
        if full or head_bytes(size) + chunk.size + total > TRANSACTION_BYTES:
            chunk = Chunk()
            chunks.append(chunk)
        chunk.actions += actions
        chunk.size += total


def commit_actions(
    table: str, key: str, size: int, pieces: list[dict[str, Any]], first: int, records: Sequence[bytes]
) -> tuple[list[dict[str, Any]], int] | None:
    """The actions that store ``records`` as the commit held by ``pieces`` (its items,
    ``first`` its first sequence) and their size; ``None`` when they are stored already.
    Items are put whole (an item kept keeps its other attributes: the final one, at the
    same sort key, its commit's id and time), not updated: moto counts an updated
    attribute's old value and new one together against the item size limit."""
    if [value["B"] for piece in pieces for value in piece["r"]["L"]] == list(records):
        return None
    final = pieces[-1]
    last = int(final["s"]["N"])
    commit_id = final["i"]["S"] if "i" in final else None
    stored = {int(piece["s"]["N"]): piece for piece in pieces}
    actions: list[dict[str, Any]] = []
    total = 0
    packed = pack(records, first - 1, key, size, commit_id)
    for piece in packed:
        item = {**stored.get(piece.last, {"k": {"S": key}, "s": integer(piece.last)})}
        item["r"] = {"L": [{"B": record} for record in piece.records]}
        if piece.last != last:
            item["e"] = integer(last)
        held = "attribute_exists(k)" if piece.last in stored else "attribute_not_exists(k)"
        actions.append({"Put": {"TableName": table, "Item": item, "ConditionExpression": held}})
        total += piece.size
    for gone in sorted(set(stored) - {piece.last for piece in packed}):
        delete = {
            "TableName": table,
            "Key": item_key(key, gone),
            "ConditionExpression": "attribute_exists(k)",
        }
        actions.append({"Delete": delete})
        total += base_bytes(size)
    return actions, total


def head_action(table: str, key: str, expected_head: int, legacy: bool) -> dict[str, Any]:
    """The check that the head is at ``expected_head``; with ``legacy``, an update that also
    removes the snapshot an earlier release kept in the head."""
    check = {
        "TableName": table,
        "Key": item_key(key, 0),
        "ConditionExpression": "v = :e",
        "ExpressionAttributeValues": {":e": integer(expected_head)},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if legacy:
        return {"Update": {**check, "UpdateExpression": "REMOVE n, b"}}
    return {"ConditionCheck": check}


def send(table: str, key: str, expected_head: int, chunk: Chunk, attempts: int) -> Flow[int | None]:
    """Send one chunk: ``None`` when written, else the head found (the expected one when
    an item had changed). ``TransactionConflict`` and throttling are tried again."""
    actions = [head_action(table, key, expected_head, chunk.legacy), *chunk.actions]
    for attempt in range(attempts):
        try:
            token = str(uuid.uuid4())  # botocore's resends of this very attempt land once
            yield Call("transact_write_items", {"TransactItems": actions, "ClientRequestToken": token})
            return None
        except ClientError as err:
            if error_code(err) != "TransactionCanceledException":
                raise
            reasons = cancellation_reasons(err)
            codes = frozenset(str(reason.get("Code")) for reason in reasons) - {"None"}
            if reasons and reasons[0].get("Code") == _FAILED:
                return head_sequence(reasons[0].get("Item") or (yield from get(table, item_key(key, 0))))
            if _FAILED in codes:
                return expected_head
            if codes & MISSING_TABLE:
                raise table_not_found(table) from err
            if not codes <= TRANSIENT_REASONS:
                raise
        yield Pause(backoff(attempt))
    raise StoreUnavailableError(
        f"DynamoDB kept cancelling the rewrite of {key!r} on table {table!r} ({attempts} "
        "attempts): its items are contended by other transactions; try again"
    )
