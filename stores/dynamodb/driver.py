"""``DynamoDBDriver``: the keyvalue ``FeedDriver`` on one DynamoDB table, as a thin layer
that runs the ``flows`` with a boto3 client. ``DynamoDBBase`` holds what it shares with
``AsyncDynamoDBDriver`` (``aio``): the settings, the flow of each call, error translation.

An append is one ``TransactWriteItems`` of every commit (``commits``), preceded, when the
driver keeps the feed, by one ``UpdateItem`` per feed bucket written (``feed``). A load is
one ``BatchGetItem`` of the head and the snapshot (and a named commit's marker when asked
about a commit id), and a ``Query`` when records are newer (``loads``). ``rewrite``
(``kvsourcing reencrypt``) rewrites commit items in transactions of whole commits
(``rewrite``).

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
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

from kvsourcing.errors import ConfigurationError, KvSourcingError
from kvsourcing.stores.dynamodb import feed, flows, rewrite, values
from kvsourcing.stores.dynamodb.errors import CLIENT_ERRORS, translate_error
from kvsourcing.stores.dynamodb.layout import DEFAULT_BUCKETS, DEFAULT_FEED_GRACE, key_bytes
from kvsourcing.stores.dynamodb.steps import Flow, conditionally, run
from kvsourcing.stores.keyvalue.base import DriverBase, DriverChecks, validate_buckets
from kvsourcing.stores.keyvalue.records import Commit, FeedEntry, Loaded, Refusal, Snapshot

T = TypeVar("T")


class DynamoDBBase(DriverChecks):
    """What both DynamoDB drivers hold: the settings and, for each driver call, its flow
    (``flows``), which a driver only runs on its client. ``buckets`` is the feed's bucket
    count (the same for every process using the table); ``feed=False`` keeps no feed;
    ``feed_grace`` is the seconds after which ``read_feed`` tombstones a reserved position
    that was never written; ``attempts`` bounds retries of cancelled transactions and of
    torn reads. A client is closed by ``close()`` only when ``owns_client`` (the driver made it)."""

    system_name = "aws.dynamodb"
    """OpenTelemetry's ``db.system.name`` of this backend."""
    client_errors: ClassVar[tuple[type[BaseException], ...]] = CLIENT_ERRORS

    def __init__(
        self,
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
        self.table_name = table_name
        self.buckets = validate_buckets(buckets, "DynamoDB")
        self.feed = bool(feed)
        self.feed_grace = float(feed_grace)
        self.attempts = attempts
        self.owns_client = owns_client

    def endpoint_url(self) -> str | None:
        """The endpoint the client sends to, for messages."""
        raise NotImplementedError

    def translate(self, err: BaseException) -> KvSourcingError:
        return translate_error(err, self.table_name, self.endpoint_url())

    def append_flow(self, commits: Sequence[Commit]) -> Flow[Refusal | None]:
        return flows.append_many(
            self.table_name,
            commits,
            buckets=self.buckets,
            feed_on=self.feed,
            grace=self.feed_grace,
            attempts=self.attempts,
        )

    def load_flow(
        self, key: str, after: int, *, use_snapshot: bool, commit_id: str | None, metadata: bool
    ) -> Flow[Loaded]:
        key_bytes(key)
        return flows.load(
            self.table_name,
            key,
            after,
            use_snapshot=use_snapshot,
            commit_id=commit_id,
            metadata=metadata,
            attempts=self.attempts,
        )

    def read_feed_flow(self, after: dict[int, str | None], limit: int) -> Flow[list[FeedEntry]]:
        """Up to ``limit`` entries of each bucket in ``after`` after its position; tombstones
        skipped, old gaps tombstoned, nothing past a young gap (``feed``). DynamoDB cannot
        be told of new entries: a read's ``wait`` is ignored, and consumers poll."""
        self.check_feed_request(after, limit)
        starts = {bucket: feed.parse_position(bucket, position) for bucket, position in after.items()}
        return flows.read_feed(
            self.table_name, starts if self.feed else {}, limit, self.feed_grace, self.attempts
        )

    def trim_feed_flow(self, bucket: int, checkpoints: Sequence[str]) -> Flow[int]:
        """Delete the feed items of ``bucket`` at or before the earliest of ``checkpoints``
        (entries and tombstones, not the gap tombstones that keep late commits out): the
        counter first records that position (``w``) so that readers start after it, then a
        ``Query`` of keys and ``BatchWriteItem``s of deletes. Its result: how many items went."""
        through = min((feed.parse_position(bucket, position) for position in checkpoints), default=None)
        return flows.trim_feed(self.table_name, bucket, through)

    def rewrite_flow(
        self, key: str, expected_head: int, records: Sequence[bytes], snapshot: Snapshot | None
    ) -> Flow[int | None]:
        return rewrite.rewrite(self.table_name, key, expected_head, records, snapshot, self.attempts)

    def swap_value_flow(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None
    ) -> Flow[bool]:
        operation, request = values.swap(self.table_name, name, expected, new, ttl, time.time())
        return conditionally(operation, request)


class DynamoDBDriver(DynamoDBBase, DriverBase):
    """The driver (see the module docstring) on ``client``, a boto3 DynamoDB client; the
    other arguments are ``DynamoDBBase``'s."""

    def __init__(self, client: Any, table_name: str, **settings: Any) -> None:
        super().__init__(table_name, **settings)
        self.client = client

    def endpoint_url(self) -> str | None:
        endpoint: str | None = self.client.meta.endpoint_url
        return endpoint

    def close_client(self) -> None:
        self.client.close()

    def _run(self, flow: Flow[T]) -> T:
        with self.served():
            return run(flow, self.client)

    def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        return self._run(self.append_flow(commits))

    def load(
        self, key: str, after: int, *, use_snapshot: bool = True, commit_id: str | None = None,
        metadata: bool = False,
    ) -> Loaded:  # fmt: skip
        flow = self.load_flow(key, after, use_snapshot=use_snapshot, commit_id=commit_id, metadata=metadata)
        return self._run(flow)

    def read_feed(self, after: dict[int, str | None], limit: int, *, wait: float = 0.0) -> list[FeedEntry]:
        """See ``read_feed_flow``."""
        return self._run(self.read_feed_flow(after, limit))

    def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        """See ``trim_feed_flow``."""
        return self._run(self.trim_feed_flow(bucket, checkpoints))

    def rewrite(
        self, key: str, expected_head: int, records: Sequence[bytes], snapshot: Snapshot | None = None
    ) -> int | None:
        """The ``RewritingDriver`` primitive (``kvsourcing reencrypt``): each commit rewritten
        atomically, in chunks of whole commits conditioned on the head (``rewrite``)."""
        return self._run(self.rewrite_flow(key, expected_head, records, snapshot))

    def read_value(self, name: str) -> bytes | None:
        return self._run(flows.read_value(self.table_name, name))

    def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        return self._run(flows.read_values(self.table_name, names))

    def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        return self._run(self.swap_value_flow(name, expected, new, ttl))
