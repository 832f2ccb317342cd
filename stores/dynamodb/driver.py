"""The DynamoDB driver: one ``UpdateItem`` + one ``TransactWriteItems`` per commit, one
``GetItem`` + ``Query`` per load, and the durable feed in per-bucket partitions.

Table layout (partition key ``k``, string; sort key ``s``, number)::

    k=<aggregate key>, s=0            the head: v=<head sequence>
                                      [n=<snapshot sequence>, b=<snapshot state>]
    k=<aggregate key>, s=<last seq>   a commit item: r=[<record>, ...], the records
                                      <last seq>-len(r)+1 .. <last seq>
                                      [e=<commit's last seq>, when a commit is split
                                      and this is not its final item]
    k=<key>␟id␟<commit id>, s=0       a commit-id marker (when the commit carried an id;
                                      ``␟h␟<sha256>`` when that is over 2 048 bytes):
                                      x=<expiry, epoch seconds> unless ids are kept for
                                      ever; an expired marker counts as absent, and the
                                      table's TTL (on ``x``, set by ``create_table``)
                                      deletes it
    k=␟f␟<bucket>, s=0                the bucket's feed counter: c=<last reserved position>,
                                      w=<position trimmed through, if trimmed>
    k=␟f␟<bucket>, s=<position>       a feed entry: t=<write time, epoch seconds>,
                                      a=<aggregate key>, f=<first sequence>, and either
                                      r=[<record>, ...] (inline) or l=<last sequence>
                                      (a reference to the commit items); a tombstone
                                      has ``t`` only, and ``g`` when a reader wrote it
                                      over a gap
    k=␟v␟<name>, s=0                  a small value: d=<bytes> [x=<expiry, epoch seconds>]

(``␟`` is U+001F, the unit separator.) Aggregate keys cannot hold control characters
(``kvsourcing.keys``; the driver refuses U+001F too), so no marker, feed or value key can
ever equal an aggregate's, and the three kinds differ in their first characters.
Attribute names are one letter because DynamoDB counts names in every item's size.

Commits
-------
A commit is a single transaction: the ``Put`` of the commit-id marker conditioned on its
absence (when the commit carries an id), an ``Update`` of the head conditioned on ``v``
being the expected sequence (or the head being absent for a new aggregate), the ``Put`` of
the feed entry conditioned on its absence, and the ``Put`` of the commit's records, all or
nothing. The conditions live on single items, so the checks and the append cannot be
separated. When the cancellation reasons show the marker's condition failed, the commit
was stored before (a re-send after a lost reply, or a command handled twice) and ``append``
returns ``ALREADY_STORED`` whatever the head; when the head's failed,
``ReturnValuesOnConditionCheckFailure=ALL_OLD`` hands the real head back inside the
cancellation, so the clash is reported without another read.
Records are stored together, one item per commit, so a commit costs one transaction
whatever its size; records beyond one item's 400 KB are spread over several items of the
same transaction, each keyed by the sequence of its last record. A commit holds at most a
transaction's 100 actions and 4 MB (counted with the head item at its largest unless the
commit carries the snapshot, and with the feed entry) and a record at most one item;
beyond that ``CommitTooLargeError`` is raised before anything is sent.
Cancellations for any other reason (``TransactionConflict``: another transaction touched
one of the items at that moment) wrote nothing and are retried here, a bounded number of
times; throttling and transient faults are retried by botocore's standard retry mode, and
a ``ClientRequestToken`` keeps botocore's resend of a transaction that did land idempotent.

The feed
--------
Every commit is recorded in the feed of its aggregate's bucket
(``partition_bucket(key, buckets)``, 32 buckets by default) in the same transaction as its
records, so the feed is spread over ``buckets`` partition keys rather than one hot key,
and commits on different aggregates never fail each other. Before its transaction a commit
reserves the next position of its bucket with an ``UpdateItem ADD c 1`` of the bucket's
counter item (outside the transaction, so that racing commits do not conflict on it), and
its transaction ``Put``s the feed entry at that position with ``attribute_not_exists``.
A small commit (one commit item, and room for its records twice in the transaction) keeps
its records inline in the entry; a split commit's entry holds a reference (``l``), and
``read_feed`` loads its records with a ``Query`` of the aggregate (``s BETWEEN f AND l``),
re-read while the view is torn.

A reserved position whose transaction does not land is a gap. A commit that fails for a
clash, an id already stored, or a cancellation that kept coming back fills its own gap at
once with a tombstone (a third request, on that path only). A writer that dies between
the reservation and the transaction, or a reservation that botocore resent, leaves a gap
that ``read_feed`` resolves: when a position is missing but a later entry exists whose
write time is older than ``feed_grace`` seconds (5 by default), the in-flight commit that
reserved the missing position (before the later one was reserved) has been pending at
least that long, and ``read_feed`` writes a tombstone there with ``attribute_not_exists``.
That is the very item the late commit's transaction would write, so exactly one of the
two wins: a commit that loses to a tombstone sees its feed condition fail, reserves a new
position and runs its transaction again, transparently. Such a gap tombstone (marked
``g``) is never trimmed, or the late commit could still land there, below the watermark
where no reader looks; they are few (one per commit that died or was that late).
``read_feed`` never returns an entry past an unresolved young gap, and skips tombstones,
so within a bucket the feed is complete and in position order, and one aggregate's
commits are in sequence order (a commit is only possible once the one before it landed,
so it reserves a later position).
Write times come from the writers' clocks: a skewed clock only moves when gaps are
resolved, never what the feed holds. A commit that fails after reserving its position
tombstones it at once, so readers need not wait out the grace; when the failure leaves
its transaction possibly still on its way (a timeout, a lost connection, a server error),
that tombstone is a gap's, kept by trims like a reader's.

``read_feed`` first reads the counters of the requested buckets with ``BatchGetItem``
(100 a request) and then ``Query``s (``ConsistentRead``) only the buckets whose counter is
past the consumer's position: an idle consumer of 32 buckets costs one request a poll.
Positions are the entries' sort keys as decimal strings. Each bucket takes one counter
update per commit; a DynamoDB partition takes about 1 000 writes a second, so raise
``buckets`` (fixed for the life of the table, the same in every process) for more.

Small values (``read_value``/``swap_value``: consumers' checkpoints, leases and member
lists) are items of their own; a swap is a ``PutItem`` or ``DeleteItem`` conditioned on
the current value (``d = :expected``, or its absence) and on the expiry ``x`` compared
with the writer's clock: an expired value counts as absent. Expired values stay in the
table until overwritten (they are a handful per consumer).

Snapshots and loads
-------------------
The snapshot lives in the head item, written in the same ``Update`` as the head sequence,
so the newest snapshot and the sequence it belongs to always agree. A snapshot that does not
fit the head item (400 KB with the key and the numbers) fails the commit with
``CommitTooLargeError``, writing nothing: keep large states out of snapshots (or use
``snapshot_interval=0``) rather than silently losing them.

Loading reads the head (``ConsistentRead``) for the head sequence and the snapshot, then
``Query``s ``s > start`` (``ConsistentRead``, following ``LastEvaluatedKey``): every item
holding a record after ``start`` has a sort key above it, and the first one's earlier
records are dropped. A ``Query`` is read-committed per item, so it might see part of a
split commit being applied: a gap in the sequences, or a final item still carrying ``e``,
means the view was torn, and the ``Query`` is read again. An up-to-date or fresh aggregate
costs the ``GetItem`` alone; loading without snapshots costs the ``Query`` alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from kvsourcing.errors import (
    CommitTooLargeError,
    ConfigurationError,
    EncodingError,
    InvalidKeyError,
    KvSourcingError,
    StoreUnavailableError,
    TableNotFoundError,
)
from kvsourcing.stores.keyvalue.driver import (
    ALREADY_STORED,
    DEFAULT_COMMIT_ID_TTL,
    Commit,
    FeedEntry,
    Loaded,
    Snapshot,
    partition_bucket,
    validate_commit_id_ttl,
)

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_FEED_GRACE",
    "ITEM_BYTES",
    "KEY_SCHEMA",
    "TRANSACTION_ACTIONS",
    "TRANSACTION_BYTES",
    "DynamoDBDriver",
    "translate_error",
]

#: DynamoDB's limits, counted in decimal (400 000 < 409 600 bytes, 4 000 000 < 4 MiB): a
#: margin for our size estimate, and within moto's stricter 405 000-byte item check. moto does
#: not enforce the transaction's 4 MB at all, hence the check here.
ITEM_BYTES = 400_000
TRANSACTION_BYTES = 4_000_000
TRANSACTION_ACTIONS = 100
PARTITION_KEY_BYTES = 2048

#: The table's key schema: ``(attribute, type, key role)``.
KEY_SCHEMA: tuple[tuple[str, str, str], ...] = (("k", "S", "HASH"), ("s", "N", "RANGE"))

# Upper bound of a number's stored size: DynamoDB takes 1 byte per 2 digits plus 1.
_NUMBER_BYTES = 21
# A list costs 3 bytes, and each element 1 byte, beyond its elements' own sizes.
_LIST_BYTES = 3
_ELEMENT_BYTES = 1

#: The feed's default bucket count and the age (seconds) after which a gap is tombstoned.
DEFAULT_BUCKETS = 32
DEFAULT_FEED_GRACE = 5.0

_HEAD = {"N": "0"}
_SEPARATOR = "\x1f"
_FEED_PREFIX = "\x1ff\x1f"
_VALUE_PREFIX = "\x1fv\x1f"
_HASHED_MARKER_PREFIX = "\x1fh\x1f"
_BATCH_GET_KEYS = 100
_BATCH_WRITE_ITEMS = 25
_TRANSIENT_REASONS = frozenset(
    {
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)
_MISSING_TABLE = frozenset({"ResourceNotFoundException", "ResourceNotFound"})
_AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "AccessDeniedException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "MissingAuthenticationTokenException",
    }
)


def _table_not_found(table_name: str) -> TableNotFoundError:
    return TableNotFoundError(
        f"DynamoDB table {table_name!r} does not exist; create it with "
        f"`kvsourcing dynamodb create-table {table_name}` or "
        f"`kvsourcing.stores.dynamodb.create_table(client, {table_name!r})`"
    )


def translate_error(err: Exception, table_name: str, endpoint: str | None) -> KvSourcingError:
    """Map a boto3/botocore failure to the library's exception, saying what to do about it."""
    where = f"DynamoDB at {endpoint}" if endpoint else "DynamoDB"
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        if code in _MISSING_TABLE:
            return _table_not_found(table_name)
        if code == "ValidationException" and "size" in message:
            return CommitTooLargeError(f"{where} refused an item as too large: {message}")
        if code in _AUTH_CODES:
            return StoreUnavailableError(
                f"{where} refused the AWS credentials ({code}: {message}); check the "
                "access key, secret and session token, or the profile in use"
            )
        return StoreUnavailableError(f"{where} failed on table {table_name!r}: {code}: {message}")
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return ConfigurationError(
            f"no usable AWS credentials for {where} ({err}): set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or pass client= with credentials"
        )
    if isinstance(err, NoRegionError):
        return ConfigurationError(
            "no AWS region for DynamoDB: pass region= (or ?region= in the store URL) "
            "or set AWS_DEFAULT_REGION"
        )
    if isinstance(
        err,
        EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError,
    ):
        return StoreUnavailableError(f"cannot reach {where}: {err}")
    return StoreUnavailableError(f"{where} request on table {table_name!r} failed: {err}")


def _key_bytes(key: str) -> int:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKeyError(f"aggregate key {key!r} is not valid UTF-8 text") from None
    if _SEPARATOR in key:
        raise InvalidKeyError(
            f"aggregate key {key!r} holds the control character '\\x1f', which the DynamoDB "
            "driver keeps for its own items"
        )
    if size > PARTITION_KEY_BYTES:
        raise InvalidKeyError(
            f"aggregate key of {size} bytes exceeds DynamoDB's partition key limit of "
            f"{PARTITION_KEY_BYTES} bytes (UTF-8)"
        )
    return size


class _Transaction:
    """A commit's ``TransactItems`` and where its conditioned actions sit in them."""

    __slots__ = ("actions", "feed_index", "feed_item", "head_index", "marker_index")

    def __init__(
        self,
        actions: list[dict[str, Any]],
        feed_item: dict[str, Any],
        marker_index: int | None,
        head_index: int,
        feed_index: int,
    ) -> None:
        self.actions = actions
        self.feed_item = feed_item
        self.marker_index = marker_index
        self.head_index = head_index
        self.feed_index = feed_index


def _failed(reasons: list[dict[str, Any]], index: int | None) -> bool:
    """Whether the action at ``index`` was cancelled because its condition failed."""
    return (
        index is not None and index < len(reasons) and reasons[index].get("Code") == "ConditionalCheckFailed"
    )


def _number(value: float) -> dict[str, str]:
    return {"N": f"{value:.6f}"}


def _code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


def feed_partition(bucket: int) -> str:
    """The partition key of bucket ``bucket``'s feed (its counter and its entries)."""
    return f"{_FEED_PREFIX}{bucket}"


def marker_key(key: str, commit_id: str) -> str:
    """The partition key of the marker recording that ``key`` stored commit ``commit_id``."""
    plain = f"{key}{_SEPARATOR}id{_SEPARATOR}{commit_id}"
    try:
        if len(plain.encode("utf-8")) <= PARTITION_KEY_BYTES:
            return plain
    except UnicodeEncodeError:
        pass
    digest = hashlib.sha256(f"{key}{_SEPARATOR}{commit_id}".encode("utf-8", "surrogatepass")).hexdigest()
    return _HASHED_MARKER_PREFIX + digest


class DynamoDBDriver:
    """The keyvalue ``FeedDriver`` primitives on one DynamoDB table (see the module docstring).

    ``client`` is a boto3 DynamoDB client; the driver closes it on ``close()`` only when
    ``owns_client`` is true (it made the client itself). ``buckets`` is the feed's bucket
    count (the same for every process using the table); ``feed_grace`` the seconds after
    which ``read_feed`` tombstones a reserved feed position that was never written.
    """

    system_name = "aws.dynamodb"
    """OpenTelemetry's ``db.system.name`` of this backend."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        owns_client: bool = False,
        conflict_attempts: int = 8,
        buckets: int = DEFAULT_BUCKETS,
        feed_grace: float = DEFAULT_FEED_GRACE,
        commit_id_ttl: float | None = DEFAULT_COMMIT_ID_TTL,
    ) -> None:
        if conflict_attempts < 1:
            raise ValueError(f"conflict_attempts must be at least 1, got {conflict_attempts}")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ConfigurationError(f"DynamoDB feed bucket count must be an int >= 1, not {buckets!r}")
        if isinstance(feed_grace, bool) or not isinstance(feed_grace, int | float) or feed_grace < 0:
            raise ConfigurationError(
                f"DynamoDB feed_grace must be a number of seconds >= 0, not {feed_grace!r}"
            )
        self.client = client
        self.table_name = table_name
        self.buckets = buckets
        self.feed_grace = float(feed_grace)
        self.commit_id_ttl = validate_commit_id_ttl(commit_id_ttl)
        self._owns_client = owns_client
        self._conflict_attempts = conflict_attempts
        self._closed = False

    def _fail(self, err: Exception) -> KvSourcingError:
        return translate_error(err, self.table_name, self.client.meta.endpoint_url)

    # ------------------------------------------------------------------ commits

    def append(self, commit: Commit) -> int | None:
        """Reserve a feed position, then write ``commit`` in one transaction if its id is not
        stored and the head is at ``commit.expected``.

        Return ``None`` when written, ``ALREADY_STORED`` when the commit id was stored, else
        the head's real sequence (nothing written in either case).
        """
        transaction = self._transaction(commit)
        bucket = partition_bucket(commit.key, self.buckets)
        position = self._reserve(bucket)
        feed_item = transaction.feed_item
        conflicts = tombstoned = 0
        while True:
            feed_item["s"] = {"N": str(position)}
            feed_item["t"] = _number(time.time())
            try:
                self.client.transact_write_items(
                    TransactItems=transaction.actions, ClientRequestToken=str(uuid.uuid4())
                )
                return None
            except ClientError as err:
                if _code(err) != "TransactionCanceledException":
                    self._abandon(bucket, position, landing=_may_have_landed(err))
                    raise self._fail(err) from err
                reasons = err.response.get("CancellationReasons") or []
                if _failed(reasons, transaction.marker_index):
                    self._abandon(bucket, position)
                    return ALREADY_STORED
                if _failed(reasons, transaction.head_index):
                    self._abandon(bucket, position)
                    head = reasons[transaction.head_index].get("Item")
                    # DynamoDB returns the head as it was (ALL_OLD), or nothing when there is
                    # none; a server that returns nothing either way is asked.
                    return _head_sequence(head if head is not None else self._head_item(commit.key))
                if _failed(reasons, transaction.feed_index):
                    # A reader tombstoned our position while we were late: take a new one.
                    tombstoned += 1
                    if tombstoned >= self._conflict_attempts:
                        raise StoreUnavailableError(
                            f"the commit to {commit.key!r} on DynamoDB table {self.table_name!r} "
                            f"lost its feed position to a tombstone {tombstoned} times: its "
                            f"transactions take longer than feed_grace ({self.feed_grace} s)"
                        ) from err
                    position = self._reserve(bucket)
                    continue
                codes = {r.get("Code") for r in reasons} - {"None", None}
                if codes & _MISSING_TABLE:
                    raise _table_not_found(self.table_name) from err
                if not codes <= _TRANSIENT_REASONS:
                    self._abandon(bucket, position)
                    raise self._fail(err) from err
                conflicts += 1
                if conflicts >= self._conflict_attempts:
                    self._abandon(bucket, position)
                    raise StoreUnavailableError(
                        f"DynamoDB kept cancelling the commit to {commit.key!r} on table "
                        f"{self.table_name!r} ({self._conflict_attempts} attempts): the head item "
                        "is contended by other transactions; try again"
                    ) from None
                time.sleep(random.uniform(0, min(0.5, 0.01 * 2**conflicts)))
            except BotoCoreError as err:
                self._abandon(bucket, position, landing=True)
                raise self._fail(err) from err

    def _reserve(self, bucket: int) -> int:
        """The next position of ``bucket``'s feed (``UpdateItem ADD`` on its counter)."""
        try:
            reply = self.client.update_item(
                TableName=self.table_name,
                Key={"k": {"S": feed_partition(bucket)}, "s": _HEAD},
                UpdateExpression="ADD c :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="UPDATED_NEW",
            )
        except (ClientError, BotoCoreError) as err:
            raise self._fail(err) from err
        return int(reply["Attributes"]["c"]["N"])

    def _tombstone(self, bucket: int, position: int, *, gap: bool = False) -> bool:
        """Write a tombstone at ``position`` unless something is there; whether it was written.

        ``gap``: a reader fills a position whose commit may still come, so trims keep it.
        """
        item = {"k": {"S": feed_partition(bucket)}, "s": {"N": str(position)}, "t": _number(time.time())}
        if gap:
            item["g"] = {"N": "1"}
        return self._conditionally(
            self.client.put_item,
            TableName=self.table_name,
            Item=item,
            ConditionExpression="attribute_not_exists(k)",
        )

    def _conditionally(self, write: Any, **request: Any) -> bool:
        """Send one conditional write; whether its condition held (and so it was applied).

        A transaction writing the same item at that moment (``TransactionConflict``: a late
        commit landing where a reader tombstones) counts as the condition failing: the
        item is being written by someone else, and the caller reads it again.
        """
        try:
            write(**request)
        except ClientError as err:
            if _code(err) in ("ConditionalCheckFailedException", "TransactionConflictException"):
                return False
            raise self._fail(err) from err
        except BotoCoreError as err:
            raise self._fail(err) from err
        return True

    def _abandon(self, bucket: int, position: int, *, landing: bool = False) -> None:
        """Tombstone a position our transaction did not write, so readers need not wait for
        ``feed_grace``; best effort (a reader resolves the gap otherwise). ``landing``: the
        failure leaves it unknown whether the transaction is still on its way (a timeout,
        a lost connection, a server error), so the tombstone is a gap's, which trims keep:
        if it arrives, its feed condition fails and it writes nothing, as the caller was told."""
        with contextlib.suppress(KvSourcingError):
            self._tombstone(bucket, position, gap=landing)

    def _transaction(self, commit: Commit) -> _Transaction:
        """The commit's ``TransactItems``, or ``CommitTooLargeError`` beyond DynamoDB's limits.

        The feed entry's position and time are filled in per attempt by ``append``.
        """
        key_bytes = _key_bytes(commit.key)
        item_base = len("k") + key_bytes + len("s") + _NUMBER_BYTES
        head_bytes = item_base + len("v") + _NUMBER_BYTES
        expected = {"N": str(commit.expected)}
        last = {"N": str(commit.last)}
        actions: list[dict[str, Any]] = []
        total = 0
        marker_index = None
        if commit.commit_id is not None:
            marker = marker_key(commit.key, commit.commit_id)
            marker_index = len(actions)
            marker_item = {"k": {"S": marker}, "s": _HEAD}
            put: dict[str, Any] = {
                "TableName": self.table_name,
                "Item": marker_item,
                "ConditionExpression": "attribute_not_exists(k)",
            }
            if self.commit_id_ttl is not None:
                now = time.time()
                marker_item["x"] = _number(now + self.commit_id_ttl)
                put["ConditionExpression"] = "attribute_not_exists(k) OR x <= :now"
                put["ExpressionAttributeValues"] = {":now": _number(now)}
            actions.append({"Put": put})
            total += len("k") + len(marker.encode("utf-8")) + len("s") + _NUMBER_BYTES
            total += len("x") + _NUMBER_BYTES
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"k": {"S": commit.key}, "s": _HEAD},
            "UpdateExpression": "SET v = :v",
            "ConditionExpression": "attribute_not_exists(v) OR v = :e" if commit.expected == 0 else "v = :e",
            "ExpressionAttributeValues": {":v": last, ":e": expected},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if commit.snapshot is None:
            # The head keeps an older snapshot we do not know the size of: count it in full.
            head_bytes = ITEM_BYTES
        else:
            head_bytes += len("n") + _NUMBER_BYTES + len("b") + len(commit.snapshot)
            if head_bytes > ITEM_BYTES:
                raise CommitTooLargeError(
                    f"snapshot of {len(commit.snapshot)} bytes for {commit.key!r} does not fit "
                    f"DynamoDB's head item ({head_bytes} bytes with key and numbers > "
                    f"{ITEM_BYTES} bytes per item); shrink the state or use "
                    "snapshot_interval=0"
                )
            update["UpdateExpression"] = "SET v = :v, n = :v, b = :b"
            update["ExpressionAttributeValues"][":b"] = {"B": commit.snapshot}
        head_index = len(actions)
        actions.append({"Update": update})
        total += head_bytes
        partition = feed_partition(partition_bucket(commit.key, self.buckets))
        feed_item: dict[str, Any] = {
            "k": {"S": partition},
            "a": {"S": commit.key},
            "f": {"N": str(commit.expected + 1)},
        }
        feed_bytes = (
            len("k") + len(partition) + len("s") + len("t") + 2 * _NUMBER_BYTES
            + len("a") + key_bytes + len("f") + _NUMBER_BYTES
        )  # fmt: skip
        feed_index = len(actions)
        actions.append(
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": feed_item,
                    "ConditionExpression": "attribute_not_exists(k)",
                }
            }
        )
        groups = _pack(commit.records, commit.expected, item_base, commit.key)
        for end, group, size in groups:
            total += size
            item = {
                "k": {"S": commit.key},
                "s": {"N": str(end)},
                "r": {"L": [{"B": record} for record in group]},
            }
            if end != commit.last:
                item["e"] = last
            actions.append({"Put": {"TableName": self.table_name, "Item": item}})
        inline_bytes = (
            feed_bytes + len("r") + _LIST_BYTES + sum(_ELEMENT_BYTES + len(r) for r in commit.records)
        )
        if len(groups) == 1 and inline_bytes <= ITEM_BYTES and total + inline_bytes <= TRANSACTION_BYTES:
            feed_item["r"] = actions[-1]["Put"]["Item"]["r"]
            total += inline_bytes
        else:
            feed_item["l"] = last
            total += feed_bytes + len("l") + _NUMBER_BYTES
        if len(actions) > TRANSACTION_ACTIONS or total > TRANSACTION_BYTES:
            raise CommitTooLargeError(
                f"commit of {len(commit.records)} records to {commit.key!r} needs "
                f"{len(actions)} items of {total} bytes in all (head counted at up to "
                f"{ITEM_BYTES}, with the feed entry and any commit-id marker); one DynamoDB "
                f"transaction holds at most {TRANSACTION_ACTIONS} items and "
                f"{TRANSACTION_BYTES} bytes: commit fewer or smaller events"
            )
        return _Transaction(actions, feed_item, marker_index, head_index, feed_index)

    # ------------------------------------------------------------------ loads

    def load(self, key: str, after: int, *, use_snapshot: bool = True) -> Loaded:
        """Read the head (for the snapshot) and the records after ``after``, consistently."""
        _key_bytes(key)
        start, snapshot = after, None
        if use_snapshot:
            head = self._head_item(key)
            if head is None:
                return Loaded(None, after + 1, [])
            if "n" in head and int(head["n"]["N"]) > after:
                snapshot = Snapshot(int(head["n"]["N"]), head["b"]["B"])
                start = snapshot.sequence
            if int(head["v"]["N"]) <= start:
                return Loaded(snapshot, start + 1, [])
        return Loaded(snapshot, start + 1, self._records_after(key, start))

    def _head_item(self, key: str) -> dict[str, Any] | None:
        """The aggregate's head item, read consistently (``None``: nothing stored)."""
        try:
            return self.client.get_item(
                TableName=self.table_name, Key={"k": {"S": key}, "s": _HEAD}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as err:
            raise self._fail(err) from err

    def _records_after(self, key: str, start: int, last: int | None = None) -> list[bytes]:
        """The records after ``start`` (up to ``last``: then exactly those), re-read while the
        view is torn (see ``_read_after``)."""
        for attempt in range(self._conflict_attempts):
            records = self._read_after(key, start, last)
            if records is not None:
                return records
            time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
        raise StoreUnavailableError(
            f"the records of {key!r} in DynamoDB table {self.table_name!r} after sequence "
            f"{start} kept reading with a gap or a partly visible commit "
            f"({self._conflict_attempts} attempts); the table may have been edited by hand"
        )

    def _read_after(self, key: str, start: int, last: int | None = None) -> list[bytes] | None:
        """One paged ``Query``; ``None`` when it saw a gap or only part of a split commit.

        A ``Query`` is read-committed per item, so while a split commit is being applied it
        may see some of its items and not others: items not ending their commit carry the
        commit's end in ``e``, and sequences must follow on without a gap. With ``last``
        (the end of one commit, as a feed entry refers to it) the ``Query`` stops there and
        must find every record up to it.
        """
        values = {":k": {"S": key}, ":s": {"N": str(start)}}
        condition = "k = :k AND s > :s"
        if last is not None:
            values = {":k": {"S": key}, ":s": {"N": str(start + 1)}, ":l": {"N": str(last)}}
            condition = "k = :k AND s BETWEEN :s AND :l"
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        records: list[bytes] = []
        unfinished = False
        while True:
            try:
                page = self.client.query(**request)
            except (ClientError, BotoCoreError) as err:
                raise self._fail(err) from err
            for item in page["Items"]:
                values = item["r"]["L"]
                end = int(item["s"]["N"])
                skip = start + 1 + len(records) - (end - len(values) + 1)
                if skip < 0 or (records and skip):
                    return None
                records.extend(value["B"] for value in values[skip:])
                unfinished = "e" in item
            if "LastEvaluatedKey" not in page:
                if unfinished or (last is not None and len(records) != last - start):
                    return None
                return records
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ------------------------------------------------------------------ the feed

    def read_feed(self, after: dict[int, str | None], limit: int) -> list[FeedEntry]:
        """Up to ``limit`` entries of each bucket in ``after`` after its position (``None``:
        from the start), oldest first within each bucket; tombstones skipped, old gaps
        tombstoned, nothing returned past a young gap (see the module docstring)."""
        if not after:
            return []
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        starts: dict[int, int] = {}
        for bucket, position in after.items():
            if not 0 <= bucket < self.buckets:
                raise ValueError(f"bucket {bucket} is not in 0 .. {self.buckets - 1}")
            try:
                starts[bucket] = 0 if position is None else int(position)
            except ValueError:
                raise ValueError(f"{position!r} is not a DynamoDB feed position (bucket {bucket})") from None
        counters = self._counters(list(starts))
        entries: list[FeedEntry] = []
        for bucket, start in starts.items():
            reserved, trimmed = counters.get(bucket, (0, 0))
            start = max(start, trimmed)
            if reserved > start:
                entries.extend(self._read_bucket(bucket, start, limit))
        return entries

    def _counters(self, buckets: list[int]) -> dict[int, tuple[int, int]]:
        """``(last reserved position, trimmed through)`` of each of ``buckets``' feeds, by
        ``BatchGetItem`` of their counter items."""
        by_partition = {feed_partition(bucket): bucket for bucket in buckets}
        keys = [{"k": {"S": partition}, "s": _HEAD} for partition in by_partition]
        return {
            by_partition[item["k"]["S"]]: (_number_of(item, "c"), _number_of(item, "w"))
            for item in self._batch_get(keys, "k, c, w", "feed counters")
        }

    def _until_processed(
        self, send: Callable[..., dict[str, Any]], request: dict[str, Any], unprocessed: str, what: str
    ) -> list[dict[str, Any]]:
        """Send a batch request, then again what DynamoDB left ``unprocessed``, with
        jittered backoff, until nothing is left; returns the replies."""
        replies = []
        for attempt in range(100):
            try:
                reply = send(RequestItems=request)
            except (ClientError, BotoCoreError) as err:
                raise self._fail(err) from err
            replies.append(reply)
            request = reply.get(unprocessed) or {}
            if not request:
                return replies
            time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
        raise StoreUnavailableError(f"DynamoDB kept leaving {what} of table {self.table_name!r} unprocessed")

    def _batch_get(self, keys: list[dict[str, Any]], projection: str, what: str) -> list[dict[str, Any]]:
        """The items of ``keys`` that exist, by consistent ``BatchGetItem``s of up to 100
        keys, retrying what DynamoDB leaves unprocessed."""
        items: list[dict[str, Any]] = []
        for offset in range(0, len(keys), _BATCH_GET_KEYS):
            request = {
                self.table_name: {
                    "Keys": keys[offset : offset + _BATCH_GET_KEYS],
                    "ConsistentRead": True,
                    "ProjectionExpression": projection,
                }
            }
            for reply in self._until_processed(self.client.batch_get_item, request, "UnprocessedKeys", what):
                items.extend(reply.get("Responses", {}).get(self.table_name, []))
        return items

    def _read_bucket(self, bucket: int, start: int, limit: int) -> list[FeedEntry]:
        """Up to ``limit`` entries of ``bucket`` after ``start``, resolving old gaps."""
        partition = feed_partition(bucket)
        entries: list[FeedEntry] = []
        expected = start + 1
        restarts = 0

        def query_from(position: int) -> dict[str, Any]:
            return {
                "TableName": self.table_name,
                "KeyConditionExpression": "k = :k AND s > :s",
                "ExpressionAttributeValues": {":k": {"S": partition}, ":s": {"N": str(position)}},
                "ConsistentRead": True,
                "Limit": limit,
            }

        request = query_from(start)
        while True:
            try:
                page = self.client.query(**request)
            except (ClientError, BotoCoreError) as err:
                raise self._fail(err) from err
            raced = False
            for item in page["Items"]:
                position = int(item["s"]["N"])
                if position > expected:
                    written = float(item["t"]["N"]) if "t" in item else 0.0
                    if time.time() - written < self.feed_grace:
                        return entries  # a young gap: its commit may still land
                    if not all(self._tombstone(bucket, gap, gap=True) for gap in range(expected, position)):
                        raced = True  # the late commit landed (or another reader was first)
                        break
                expected = position + 1
                if "a" in item:
                    entries.append(self._entry(bucket, position, item))
                    if len(entries) >= limit:
                        return entries
            if raced:
                restarts += 1
                if restarts > self._conflict_attempts:
                    return entries
                request = query_from(expected - 1)
                continue
            if "LastEvaluatedKey" not in page:
                return entries
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _entry(self, bucket: int, position: int, item: dict[str, Any]) -> FeedEntry:
        """The ``FeedEntry`` of a feed item; ``EncodingError`` when it is not one we wrote."""
        try:
            key = item["a"]["S"]
            first = int(item["f"]["N"])
            if "r" in item:
                records = [value["B"] for value in item["r"]["L"]]
            else:
                records = self._records_after(key, first - 1, int(item["l"]["N"]))
        except (KeyError, TypeError, ValueError) as err:
            raise EncodingError(
                f"feed entry {position} of bucket {bucket} in DynamoDB table {self.table_name!r} "
                f"is corrupt: {type(err).__name__}: {err}"
            ) from err
        return FeedEntry(bucket, str(position), key, first, records)

    # ------------------------------------------------------------------ small values

    def _value_key(self, name: str) -> dict[str, Any]:
        partition = _VALUE_PREFIX + name
        try:
            size = len(partition.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidKeyError(f"value name {name!r} is not valid UTF-8 text") from None
        if size > PARTITION_KEY_BYTES:
            raise InvalidKeyError(
                f"value name of {size - len(_VALUE_PREFIX)} bytes exceeds DynamoDB's partition "
                f"key limit ({PARTITION_KEY_BYTES} bytes with the driver's 3-byte prefix)"
            )
        return {"k": {"S": partition}, "s": _HEAD}

    def read_value(self, name: str) -> bytes | None:
        """The value stored under ``name`` (``None`` when absent or expired)."""
        try:
            item = self.client.get_item(
                TableName=self.table_name, Key=self._value_key(name), ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as err:
            raise self._fail(err) from err
        return _live_value(item, time.time())

    def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        """Delete the feed items of ``bucket`` at or before the earliest of ``checkpoints``
        (entries and tombstones, but not the gap tombstones that keep late commits out):
        the counter item first records that position (``w``) so that readers start after
        it, then a ``Query`` of keys and ``BatchWriteItem``s of 25 deletes. Returns how
        many items went."""
        if not checkpoints:
            return 0
        through = min(int(position) for position in checkpoints)
        # First the watermark, so that no reader takes the trimmed positions for a gap.
        self._conditionally(
            self.client.update_item,
            TableName=self.table_name,
            Key={"k": {"S": feed_partition(bucket)}, "s": _HEAD},
            UpdateExpression="SET w = :w",
            ConditionExpression="attribute_not_exists(w) OR w < :w",
            ExpressionAttributeValues={":w": {"N": str(through)}},
        )
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "k = :k AND s BETWEEN :first AND :through",
            "ExpressionAttributeValues": {
                ":k": {"S": feed_partition(bucket)},
                ":first": {"N": "1"},
                ":through": {"N": str(through)},
            },
            "ProjectionExpression": "k, s, g",
            "ConsistentRead": True,
        }
        keys: list[dict[str, Any]] = []
        while True:
            try:
                page = self.client.query(**request)
            except (ClientError, BotoCoreError) as err:
                raise self._fail(err) from err
            keys.extend({"k": item["k"], "s": item["s"]} for item in page.get("Items", []) if "g" not in item)
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        for offset in range(0, len(keys), _BATCH_WRITE_ITEMS):
            deletes = [{"DeleteRequest": {"Key": key}} for key in keys[offset : offset + _BATCH_WRITE_ITEMS]]
            self._until_processed(
                self.client.batch_write_item, {self.table_name: deletes}, "UnprocessedItems", "feed deletes"
            )
        return len(keys)

    def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        """The values of ``names``, in order, by ``BatchGetItem`` (100 names a request)."""
        keys = {name: self._value_key(name) for name in names}
        found = {item["k"]["S"]: item for item in self._batch_get(list(keys.values()), "k, d, x", "values")}
        now = time.time()
        return [_live_value(found.get(keys[name]["k"]["S"]), now) for name in names]

    def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        """Atomically replace ``name``'s value by ``new`` (``None`` deletes it) if it is
        ``expected`` (``None``: absent or expired); ``ttl`` seconds makes ``new`` expire.
        One conditional ``PutItem`` or ``DeleteItem``; returns whether it was replaced."""
        key = self._value_key(name)
        now = time.time()
        values: dict[str, Any] = {":now": _number(now)}
        if expected is None:
            condition = "attribute_not_exists(d) OR x <= :now"
        else:
            condition = "d = :e AND (attribute_not_exists(x) OR x > :now)"
            values[":e"] = {"B": expected}
        if new is None:
            return self._conditionally(
                self.client.delete_item,
                TableName=self.table_name,
                Key=key,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        item = {**key, "d": {"B": new}}
        if ttl is not None:
            item["x"] = _number(now + ttl)
        return self._conditionally(
            self.client.put_item,
            TableName=self.table_name,
            Item=item,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )

    def close(self) -> None:
        """Close the client if this driver made it (idempotent)."""
        if self._owns_client and not self._closed:
            self._closed = True
            self.client.close()


def _number_of(item: dict[str, Any], attribute: str) -> int:
    """A number attribute of an item, 0 when it has none."""
    return int(item[attribute]["N"]) if attribute in item else 0


def _live_value(item: dict[str, Any] | None, now: float) -> bytes | None:
    """A value item's bytes, or ``None`` when it is absent or expired."""
    if item is None or "d" not in item:
        return None
    if "x" in item and float(item["x"]["N"]) <= now:
        return None
    return item["d"]["B"]


def _may_have_landed(err: ClientError) -> bool:
    """Whether a transaction that failed with ``err`` may still be applied: a server error
    (5xx) leaves it unknown, as does ``TransactionInProgressException`` (botocore's resend of
    an attempt still being applied); any other refusal (4xx) applied nothing."""
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500
    return status >= 500 or _code(err) == "TransactionInProgressException"


def _head_sequence(item: dict[str, Any] | None) -> int:
    """The sequence recorded in a head item (as ``ALL_OLD`` returns it); 0 when absent."""
    if not item or "v" not in item:
        return 0
    return int(item["v"]["N"])


def _pack(
    records: Sequence[bytes], expected: int, item_base: int, key: str
) -> list[tuple[int, list[bytes], int]]:
    """Group records in order into items under ``ITEM_BYTES``: ``(last seq, records, size)``."""
    empty = item_base + len("r") + _LIST_BYTES + len("e") + _NUMBER_BYTES
    groups: list[tuple[int, list[bytes], int]] = []
    group: list[bytes] = []
    size = empty
    for index, record in enumerate(records):
        cost = _ELEMENT_BYTES + len(record)
        if empty + cost > ITEM_BYTES:
            raise CommitTooLargeError(
                f"record {expected + index + 1} of {key!r} is {len(record)} bytes; a DynamoDB "
                f"item holds at most {ITEM_BYTES} bytes ({ITEM_BYTES - empty - _ELEMENT_BYTES} "
                "for one record with this key): make the event smaller"
            )
        if group and size + cost > ITEM_BYTES:
            groups.append((expected + index, group, size))
            group, size = [], empty
        group.append(record)
        size += cost
    if group:
        groups.append((expected + len(records), group, size))
    return groups
