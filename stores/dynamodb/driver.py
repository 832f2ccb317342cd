"""``DynamoDBDriver``: the keyvalue ``FeedDriver`` on one DynamoDB table.

An append is one ``TransactWriteItems`` of every commit (``commits``), preceded, when the
driver keeps the feed, by one ``UpdateItem`` per feed bucket written (``feed``). A load is
one ``BatchGetItem`` of the head and the snapshot (and a named commit's marker when asked
about a commit id), and a ``Query`` when records are newer (``loads``).

Commit ids. Every commit keeps its id and time on its commit item, so ``read_events``
shows them at no cost. A re-sent commit (the reply to the first send was lost) is
recognised on the failure path, as KurrentDB does: its head condition fails, the head
shows the aggregate reached the commit's last sequence, and the commit item there holds
its id (one ``GetItem``, on that path only). A named commit (``handle(command,
commit_id=...)``) also writes a marker in its aggregate's own partition, in the same
transaction, which ``load`` reads in the same request as the head: so a re-sent command
is found stored whatever was committed after it, with no extra request. Markers live as
long as their aggregate: the idempotency window is the aggregate's whole history.

Cancellations for other reasons (``TransactionConflict``, throttling) wrote nothing and
are retried, a bounded number of times; botocore's standard retry mode retries
throttled and failed requests, and a ``ClientRequestToken`` keeps such a resend of a
transaction that did land idempotent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from kvsourcing.errors import ConfigurationError, KvSourcingError, StoreUnavailableError
from kvsourcing.stores.dynamodb import commits as plan
from kvsourcing.stores.dynamodb import feed, loads, values
from kvsourcing.stores.dynamodb.errors import (
    MISSING_TABLE,
    backoff,
    cancellation_reasons,
    error_code,
    may_have_landed,
    table_not_found,
)
from kvsourcing.stores.dynamodb.layout import (
    DEFAULT_BUCKETS,
    DEFAULT_FEED_GRACE,
    head_sequence,
    item_key,
    key_bytes,
)
from kvsourcing.stores.dynamodb.table import TableIO
from kvsourcing.stores.keyvalue.base import validate_buckets
from kvsourcing.stores.keyvalue.records import ALREADY_STORED, Commit, FeedEntry, Loaded, Refusal


class DynamoDBDriver(TableIO):
    """The driver (see the module docstring). ``client`` is a boto3 DynamoDB client, closed
    by ``close()`` only when ``owns_client`` (the driver made it). ``buckets`` is the feed's
    bucket count (the same for every process using the table); ``feed=False`` keeps no
    feed; ``feed_grace`` is the seconds after which ``read_feed`` tombstones a reserved
    position that was never written; ``attempts`` bounds retries of cancelled
    transactions and of torn reads."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        owns_client: bool = False,
        buckets: int = DEFAULT_BUCKETS,
        feed: bool = True,
        feed_grace: float = DEFAULT_FEED_GRACE,
        attempts: int = 8,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, not {attempts!r}")
        if isinstance(feed_grace, bool) or not isinstance(feed_grace, int | float) or feed_grace < 0:
            raise ConfigurationError(
                f"DynamoDB feed_grace must be a number of seconds >= 0, not {feed_grace!r}"
            )
        self.client = client
        self.table_name = table_name
        self.buckets = validate_buckets(buckets, "DynamoDB")
        self.feed = bool(feed)
        self.feed_grace = float(feed_grace)
        self.attempts = attempts
        self.owns_client = owns_client

    # ------------------------------------------------------------------ commits

    def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        if not commits:
            return None
        tx = plan.build_transaction(self.table_name, commits, buckets=self.buckets, feed=self.feed)
        positions = self._reserve(tx.wanted_positions())
        conflicts = tombstoned = 0
        while True:
            plan.stamp(tx, time.time(), positions)
            try:
                with self.served():
                    try:
                        self.client.transact_write_items(
                            TransactItems=tx.actions, ClientRequestToken=str(uuid.uuid4())
                        )
                        return None
                    except ClientError as err:
                        if error_code(err) != "TransactionCanceledException":
                            raise
                        failure = err
            except KvSourcingError as err:
                self._abandon(tx, positions, landing=may_have_landed(err.__cause__ or err))
                raise
            cancelled = plan.read_cancellation(tx, commits, cancellation_reasons(failure))
            if cancelled.index is not None:
                self._abandon(tx, positions)
                return self._refusal(commits, cancelled)
            if cancelled.lost:
                # Readers tombstoned positions while we were late: take new ones.
                tombstoned += 1
                if tombstoned >= self.attempts:
                    raise StoreUnavailableError(
                        f"the commit to {commits[cancelled.lost[0]].key!r} on DynamoDB table "
                        f"{self.table_name!r} lost its feed position to a tombstone {tombstoned} "
                        f"times: its transactions take longer than feed_grace ({self.feed_grace} s)"
                    ) from failure
                positions.update(self._reserve(tx.wanted_positions(cancelled.lost)))
                continue
            if cancelled.codes & MISSING_TABLE:
                raise table_not_found(self.table_name) from failure
            if not cancelled.transient:
                self._abandon(tx, positions)
                raise self.translate(failure) from failure
            conflicts += 1
            if conflicts >= self.attempts:
                self._abandon(tx, positions)
                raise StoreUnavailableError(
                    f"DynamoDB kept cancelling the commit to {commits[0].key!r} on table "
                    f"{self.table_name!r} ({self.attempts} attempts): its items are contended "
                    "by other transactions; try again"
                ) from None
            time.sleep(backoff(conflicts))

    def _refusal(self, commits: Sequence[Commit], cancelled: plan.Cancellation) -> Refusal:
        """The refusal of a cancelled append: the commit's id is stored, or its real head."""
        index = cancelled.index
        assert index is not None
        commit = commits[index]
        if cancelled.stored:
            return Refusal(index, ALREADY_STORED)
        # DynamoDB returns the head as it was (ALL_OLD), or nothing when there is none; a
        # server that returns nothing either way is asked.
        head = cancelled.head or self._get(item_key(commit.key, 0))
        sequence = head_sequence(head)
        if plan.needs_id_check(commit, sequence):
            stored = self._get(item_key(commit.key, commit.last), "i") or {}
            if stored.get("i", {}).get("S") == commit.commit_id:
                return Refusal(index, ALREADY_STORED)
        return Refusal(index, sequence)

    def _reserve(self, wanted: dict[int, int]) -> dict[int, int]:
        """Feed positions for the commits of ``wanted`` (``{index: bucket}``), one request a bucket."""
        positions: dict[int, int] = {}
        for bucket, indexes in feed.by_bucket(wanted).items():
            reply = self.call("update_item", **feed.reservation(self.table_name, bucket, len(indexes)))
            positions.update(feed.reserved(indexes, reply))
        return positions

    def _abandon(self, tx: plan.Transaction, positions: dict[int, int], *, landing: bool = False) -> None:
        """Tombstone positions our transaction did not write, so readers need not wait out
        ``feed_grace``; best effort. ``landing``: the transaction may still arrive (a
        timeout, a lost connection, a server error), so the tombstones are a gap's, which
        trims keep: if it arrives, its feed condition fails and it writes nothing."""
        for index, position in positions.items():
            bucket = tx.buckets[index]
            assert bucket is not None
            try:
                self.tombstone(bucket, position, gap=landing)
            except KvSourcingError:
                return

    def _get(self, key: dict[str, Any], projection: str | None = None) -> dict[str, Any] | None:
        request: dict[str, Any] = {"TableName": self.table_name, "Key": key, "ConsistentRead": True}
        if projection is not None:
            request["ProjectionExpression"] = projection
        item: dict[str, Any] | None = self.call("get_item", **request).get("Item")
        return item

    # ------------------------------------------------------------------ loads

    def load(
        self, key: str, after: int, *, use_snapshot: bool = True, commit_id: str | None = None,
        metadata: bool = False,
    ) -> Loaded:  # fmt: skip
        key_bytes(key)
        snapshot, start, stored = None, after, False
        if use_snapshot or commit_id is not None:
            found = loads.read_head(
                self.batch_get(loads.head_keys(key, use_snapshot, commit_id), "heads"), commit_id
            )
            stored = found.stored
            if use_snapshot:
                snapshot, start, current = loads.from_head(found, after)
                if current:
                    return Loaded(snapshot, start + 1, [], stored)
        reading = self.records_after(key, start)
        return Loaded(snapshot, start + 1, reading.found, stored, reading.commits if metadata else ())

    # ------------------------------------------------------------------ the feed

    def read_feed(self, after: dict[int, str | None], limit: int, *, wait: float = 0.0) -> list[FeedEntry]:
        """Up to ``limit`` entries of each bucket in ``after`` after its position; tombstones
        skipped, old gaps tombstoned, nothing past a young gap (``feed``). DynamoDB cannot
        be told of new entries: ``wait`` is ignored, and consumers poll."""
        self.check_feed_request(after, limit)
        starts = {bucket: feed.parse_position(bucket, position) for bucket, position in after.items()}
        if not starts or not self.feed:
            return []
        found = self.batch_get(feed.counter_keys(list(starts)), "feed counters", "k, c, w")
        counters = feed.read_counters(list(starts), found)
        entries: list[FeedEntry] = []
        for bucket, start in starts.items():
            reserved, trimmed = counters.get(bucket, (0, 0))
            start = max(start, trimmed)
            if reserved > start:
                entries.extend(self._read_bucket(bucket, start, limit))
        return entries

    def _read_bucket(self, bucket: int, start: int, limit: int) -> list[FeedEntry]:
        """Up to ``limit`` entries of ``bucket`` after ``start``, resolving old gaps."""
        entries: list[tuple[int, dict[str, Any]]] = []
        expected = start + 1
        for _ in range(self.attempts):
            request = feed.bucket_query(self.table_name, bucket, expected - 1, limit)
            raced = False
            for page in self.query_pages(request):
                page_plan = feed.plan_page(
                    page["Items"], expected, limit - len(entries), time.time(), self.feed_grace
                )
                for gap, before in page_plan.gaps:
                    if not all(self.tombstone(bucket, position, gap=True) for position in gap):
                        # The late commit landed (or another reader was first): read again.
                        entries.extend(page_plan.entries[:before])
                        expected, raced = gap.start, True
                        break
                if raced:
                    break
                entries.extend(page_plan.entries)
                expected = page_plan.expected
                if page_plan.done:
                    return self._entries(bucket, entries)
            if not raced:
                break
        return self._entries(bucket, entries)

    def _entries(self, bucket: int, items: list[tuple[int, dict[str, Any]]]) -> list[FeedEntry]:
        """The ``FeedEntry`` of each item, loading the records of those that refer to them."""
        entries = []
        for position, item in items:
            records = None
            reference = feed.reference(item)
            if reference is not None:
                key, first, last = reference
                records = self.records_after(key, first - 1, last).found
            entries.append(feed.feed_entry(bucket, position, item, records))
        return entries

    def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        """Delete the feed items of ``bucket`` at or before the earliest of ``checkpoints``
        (entries and tombstones, not the gap tombstones that keep late commits out): the
        counter first records that position (``w``) so that readers start after it, then a
        ``Query`` of keys and ``BatchWriteItem``s of deletes. Returns how many items went."""
        if not checkpoints:
            return 0
        through = min(feed.parse_position(bucket, position) for position in checkpoints)
        self.conditionally("update_item", **feed.watermark(self.table_name, bucket, through))
        keys = [
            key
            for page in self.query_pages(feed.trim_query(self.table_name, bucket, through))
            for key in feed.trimmable(page["Items"])
        ]
        self.batch_delete(keys)
        return len(keys)

    # ------------------------------------------------------------------ small values

    def read_value(self, name: str) -> bytes | None:
        return values.live_value(self._get(values.value_key(name)), time.time())

    def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        keys = {name: values.value_key(name) for name in names}
        found = {item["k"]["S"]: item for item in self.batch_get(list(keys.values()), "values", "k, d, x")}
        now = time.time()
        return [values.live_value(found.get(keys[name]["k"]["S"]), now) for name in names]

    def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        operation, request = values.swap(self.table_name, name, expected, new, ttl, time.time())
        return self.conditionally(operation, **request)
