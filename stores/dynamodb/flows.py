"""The driver's operations as flows (``steps``): appends, loads, the feed and values.

Each function here is the whole logic of one driver call, written once for the sync and
the async driver: which requests in which order, what their replies decide, retries and
backoff. The requests are built and the replies read by ``commits``, ``loads``, ``feed``
and ``values``.

Appends. The feed positions are reserved first (one ``UpdateItem`` per bucket written),
then the transaction is sent. A cancellation that refuses a commit (its id stored, or its
head elsewhere) tombstones the reserved positions and reports it; a position a reader
tombstoned while the commit was late is reserved again; ``TransactionConflict`` and
throttling are retried, a bounded number of times. A failure that leaves the transaction
possibly still on its way (a lost connection, a server error) tombstones its positions as
a gap's, which trims keep.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from kvsourcing.errors import StoreUnavailableError
from kvsourcing.stores.dynamodb import commits as plan
from kvsourcing.stores.dynamodb import feed, loads, values
from kvsourcing.stores.dynamodb.errors import (
    CLIENT_ERRORS,
    MISSING_TABLE,
    backoff,
    cancellation_reasons,
    error_code,
    may_have_landed,
    table_not_found,
)
from kvsourcing.stores.dynamodb.layout import head_sequence, item_key
from kvsourcing.stores.dynamodb.steps import (
    Call,
    Flow,
    Pause,
    batch_delete,
    batch_get,
    conditionally,
    query_all,
    records_after,
)
from kvsourcing.stores.keyvalue.records import ALREADY_STORED, Commit, FeedEntry, Loaded, Refusal


def get(table: str, key: dict[str, Any], projection: str | None = None) -> Flow[dict[str, Any] | None]:
    """One item, read consistently (``None``: absent)."""
    request: dict[str, Any] = {"TableName": table, "Key": key, "ConsistentRead": True}
    if projection is not None:
        request["ProjectionExpression"] = projection
    reply = yield Call("get_item", request)
    item: dict[str, Any] | None = reply.get("Item")
    return item


def append_many(
    table: str, commits: Sequence[Commit], *, buckets: int, feed_on: bool, grace: float, attempts: int
) -> Flow[Refusal | None]:
    """Write every commit in one transaction (see the module docstring)."""
    if not commits:
        return None
    tx = plan.build_transaction(table, commits, buckets=buckets, feed=feed_on)
    positions = yield from reserve(table, tx.wanted_positions())
    conflicts = tombstoned = 0
    while True:
        plan.stamp(tx, time.time(), positions)
        try:
            token = str(uuid.uuid4())  # botocore's resends of this very attempt land once
            yield Call("transact_write_items", {"TransactItems": tx.actions, "ClientRequestToken": token})
            return None
        except CLIENT_ERRORS as err:
            if error_code(err) != "TransactionCanceledException":
                yield from abandon(table, tx, positions, landing=may_have_landed(err))
                raise
            assert isinstance(err, ClientError)
            failure = err
        cancelled = plan.read_cancellation(tx, commits, cancellation_reasons(failure))
        if cancelled.index is not None:
            yield from abandon(table, tx, positions)
            return (yield from refusal(table, commits, cancelled))
        if cancelled.lost:
            # Readers tombstoned positions while we were late: take new ones.
            tombstoned += 1
            if tombstoned >= attempts:
                raise StoreUnavailableError(
                    f"the commit to {commits[cancelled.lost[0]].key!r} on DynamoDB table {table!r} "
                    f"lost its feed position to a tombstone {tombstoned} times: its transactions "
                    f"take longer than feed_grace ({grace} s)"
                ) from failure
            positions.update((yield from reserve(table, tx.wanted_positions(cancelled.lost))))
            continue
        if cancelled.codes & MISSING_TABLE:
            raise table_not_found(table) from failure
        if not cancelled.transient:
            yield from abandon(table, tx, positions)
            raise failure
        conflicts += 1
        if conflicts >= attempts:
            yield from abandon(table, tx, positions)
            raise StoreUnavailableError(
                f"DynamoDB kept cancelling the commit to {commits[0].key!r} on table {table!r} "
                f"({attempts} attempts): its items are contended by other transactions; try again"
            ) from None
        yield Pause(backoff(conflicts))


def refusal(table: str, commits: Sequence[Commit], cancelled: plan.Cancellation) -> Flow[Refusal]:
    """The refusal of a cancelled append: the commit's id is stored, or its real head."""
    index = cancelled.index
    assert index is not None
    commit = commits[index]
    if cancelled.stored:
        return Refusal(index, ALREADY_STORED)
    # DynamoDB returns the head as it was (ALL_OLD), or nothing when there is none; a
    # server that returns nothing either way is asked.
    head = cancelled.head or (yield from get(table, item_key(commit.key, 0)))
    sequence = head_sequence(head)
    if plan.needs_id_check(commit, sequence):
        stored = (yield from get(table, item_key(commit.key, commit.last), "i")) or {}
        if stored.get("i", {}).get("S") == commit.commit_id:
            return Refusal(index, ALREADY_STORED)
    return Refusal(index, sequence)


def reserve(table: str, wanted: Mapping[int, int]) -> Flow[dict[int, int]]:
    """Feed positions for the commits of ``wanted`` (``{index: bucket}``), one request a bucket."""
    positions: dict[int, int] = {}
    for bucket, indexes in feed.by_bucket(wanted).items():
        reply = yield Call("update_item", feed.reservation(table, bucket, len(indexes)))
        positions.update(feed.reserved(indexes, reply))
    return positions


def abandon(
    table: str, tx: plan.Transaction, positions: dict[int, int], *, landing: bool = False
) -> Flow[None]:
    """Tombstone positions our transaction did not write, so readers need not wait out the
    grace; best effort. ``landing``: the transaction may still arrive, so the tombstones are
    a gap's, which trims keep: if it arrives, its feed condition fails and it writes nothing."""
    for index, position in positions.items():
        bucket = tx.buckets[index]
        assert bucket is not None
        try:
            yield from conditionally(
                "put_item", feed.tombstone(table, bucket, position, time.time(), gap=landing)
            )
        except CLIENT_ERRORS:
            return


def load(
    table: str,
    key: str,
    after: int,
    *,
    use_snapshot: bool,
    commit_id: str | None,
    metadata: bool,
    attempts: int,
) -> Flow[Loaded]:
    """The head, snapshot and marker in one request when wanted, then the newer records."""
    snapshot, start, stored = None, after, False
    if use_snapshot or commit_id is not None:
        items = yield from batch_get(table, loads.head_keys(key, use_snapshot, commit_id), "heads")
        found = loads.read_head(items, commit_id)
        stored = found.stored
        if use_snapshot:
            snapshot, start, current = loads.from_head(found, after)
            if current:
                return Loaded(snapshot, start + 1, [], stored)
    reading = yield from records_after(table, key, start, attempts)
    return Loaded(snapshot, start + 1, reading.found, stored, reading.commits if metadata else ())


def read_feed(
    table: str, starts: dict[int, int], limit: int, grace: float, attempts: int
) -> Flow[list[FeedEntry]]:
    """Up to ``limit`` entries of each bucket after its start: the counters of every bucket in
    one request, then a ``Query`` of each bucket with entries past its start."""
    if not starts:
        return []
    found = yield from batch_get(table, feed.counter_keys(list(starts)), "feed counters", "k, c, w")
    counters = feed.read_counters(list(starts), found)
    entries: list[FeedEntry] = []
    for bucket, start in starts.items():
        reserved, trimmed = counters.get(bucket, (0, 0))
        start = max(start, trimmed)
        if reserved > start:
            items = yield from read_bucket(table, bucket, start, limit, grace, attempts)
            for position, item in items:
                records = None
                reference = feed.reference(item)
                if reference is not None:
                    key, first, last = reference
                    records = (yield from records_after(table, key, first - 1, attempts, last)).found
                entries.append(feed.feed_entry(bucket, position, item, records))
    return entries


def read_bucket(
    table: str, bucket: int, start: int, limit: int, grace: float, attempts: int
) -> Flow[list[tuple[int, dict[str, Any]]]]:
    """Up to ``limit`` entry items of ``bucket`` after ``start``, tombstoning old gaps."""
    entries: list[tuple[int, dict[str, Any]]] = []
    expected = start + 1
    for _ in range(attempts):
        request = feed.bucket_query(table, bucket, expected - 1, limit)
        while True:
            page = yield Call("query", request)
            page_plan = feed.plan_page(page["Items"], expected, limit - len(entries), time.time(), grace)
            raced = None
            for gap, before in page_plan.gaps:
                for position in gap:
                    tombstone = feed.tombstone(table, bucket, position, time.time(), gap=True)
                    if not (yield from conditionally("put_item", tombstone)):
                        raced = (gap, before)  # the late commit landed, or another reader was first
                        break
                if raced:
                    break
            if raced:
                entries.extend(page_plan.entries[: raced[1]])
                expected = raced[0].start
                break  # read again from the gap
            entries.extend(page_plan.entries)
            expected = page_plan.expected
            if page_plan.done or "LastEvaluatedKey" not in page:
                return entries
            request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}
    return entries


def trim_feed(table: str, bucket: int, through: int | None) -> Flow[int]:
    """Record the watermark first (so that readers start after it), then delete the items
    at or before it but the gap tombstones; how many went (none when ``through`` is ``None``)."""
    if through is None:
        return 0
    yield from conditionally("update_item", feed.watermark(table, bucket, through))
    keys = feed.trimmable((yield from query_all(feed.trim_query(table, bucket, through))))
    yield from batch_delete(table, keys)
    return len(keys)


def read_value(table: str, name: str) -> Flow[bytes | None]:
    """The value ``name`` (``None``: absent or expired)."""
    return values.live_value((yield from get(table, values.value_key(name))), time.time())


def read_values(table: str, names: Sequence[str]) -> Flow[list[bytes | None]]:
    """The values of ``names``, in order, by ``BatchGetItem``s."""
    keys = {name: values.value_key(name) for name in names}
    items = yield from batch_get(table, list(keys.values()), "values", "k, d, x")
    found = {item["k"]["S"]: item for item in items}
    now = time.time()
    return [values.live_value(found.get(keys[name]["k"]["S"]), now) for name in names]
