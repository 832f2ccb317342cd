"""The DynamoDB driver: one ``TransactWriteItems`` per commit, one ``GetItem`` + ``Query`` per load.

Table layout (partition key ``k``, string; sort key ``s``, number)::

    k=<aggregate key>, s=0            the head: v=<head sequence>
                                      [n=<snapshot sequence>, b=<snapshot state>]
    k=<aggregate key>, s=<last seq>   a commit item: r=[<record>, ...], the records
                                      <last seq>-len(r)+1 .. <last seq>
                                      [e=<commit's last seq>, when a commit is split
                                      and this is not its final item]

Attribute names are one letter because DynamoDB counts names in every item's size.

A commit is a single transaction: an ``Update`` of the head, conditioned on ``v`` being the
expected sequence (or the head being absent for a new aggregate), plus the ``Put`` of the
commit's records, all or nothing. The condition lives on one item, so the check and the
append cannot be separated. Records are stored together, one item per commit, so a commit
costs one request whatever its size; records beyond one item's 400 KB are spread over
several items of the same transaction, each keyed by the sequence of its last record.
A commit holds at most a transaction's 4 MB (counted with the head item at its largest
unless the commit carries the snapshot, so about 3.6 MB of records) and a record at most
one item; beyond that ``CommitTooLargeError`` is raised before anything is sent.
When the head's condition fails, ``ReturnValuesOnConditionCheckFailure=ALL_OLD`` hands the
real head back inside the cancellation, so the clash is reported without another read.
Cancellations for any other reason (``TransactionConflict``: another transaction touched
the head at that moment) wrote nothing and are retried here, a bounded number of times;
throttling and transient faults are retried by botocore's standard retry mode, and a
``ClientRequestToken`` keeps botocore's resend of a transaction that did land idempotent.

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

import random
import time
import uuid
from collections.abc import Sequence
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
    InvalidKeyError,
    KvSourcingError,
    StoreUnavailableError,
    TableNotFoundError,
)
from kvsourcing.stores.keyvalue.driver import Commit, Loaded, Snapshot

__all__ = [
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

_HEAD = {"N": "0"}
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
    if size > PARTITION_KEY_BYTES:
        raise InvalidKeyError(
            f"aggregate key of {size} bytes exceeds DynamoDB's partition key limit of "
            f"{PARTITION_KEY_BYTES} bytes (UTF-8)"
        )
    return size


class DynamoDBDriver:
    """The keyvalue ``Driver`` primitives on one DynamoDB table (see the module docstring).

    ``client`` is a boto3 DynamoDB client; the driver closes it on ``close()`` only when
    ``owns_client`` is true (it made the client itself).
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        owns_client: bool = False,
        conflict_attempts: int = 8,
    ) -> None:
        if conflict_attempts < 1:
            raise ValueError(f"conflict_attempts must be at least 1, got {conflict_attempts}")
        self.client = client
        self.table_name = table_name
        self._owns_client = owns_client
        self._conflict_attempts = conflict_attempts
        self._closed = False

    def _fail(self, err: Exception) -> KvSourcingError:
        return translate_error(err, self.table_name, self.client.meta.endpoint_url)

    def append(self, commit: Commit) -> int | None:
        """Write ``commit`` in one transaction if the head is at ``commit.expected``.

        Return ``None`` when written, else the head's real sequence (nothing written).
        """
        actions = self._transaction(commit)
        for attempt in range(self._conflict_attempts):
            try:
                self.client.transact_write_items(TransactItems=actions, ClientRequestToken=str(uuid.uuid4()))
                return None
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise self._fail(err) from err
                reasons = err.response.get("CancellationReasons") or []
                head = reasons[0] if reasons else {}
                if head.get("Code") == "ConditionalCheckFailed":
                    return _head_sequence(head.get("Item"))
                codes = {r.get("Code") for r in reasons} - {"None", None}
                if codes & _MISSING_TABLE:
                    raise _table_not_found(self.table_name) from err
                if not codes <= _TRANSIENT_REASONS:
                    raise self._fail(err) from err
                time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
            except BotoCoreError as err:
                raise self._fail(err) from err
        raise StoreUnavailableError(
            f"DynamoDB kept cancelling the commit to {commit.key!r} on table "
            f"{self.table_name!r} ({self._conflict_attempts} attempts): the head item is "
            "contended by other transactions; try again"
        )

    def _transaction(self, commit: Commit) -> list[dict[str, Any]]:
        """The commit's ``TransactItems``, or ``CommitTooLargeError`` beyond DynamoDB's limits."""
        key_bytes = _key_bytes(commit.key)
        item_base = len("k") + key_bytes + len("s") + _NUMBER_BYTES
        head_bytes = item_base + len("v") + _NUMBER_BYTES
        expected = {"N": str(commit.expected)}
        last = {"N": str(commit.last)}
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
        actions: list[dict[str, Any]] = [{"Update": update}]
        total = head_bytes
        for end, group, size in _pack(commit.records, commit.expected, item_base, commit.key):
            total += size
            item = {
                "k": {"S": commit.key},
                "s": {"N": str(end)},
                "r": {"L": [{"B": record} for record in group]},
            }
            if end != commit.last:
                item["e"] = last
            actions.append({"Put": {"TableName": self.table_name, "Item": item}})
        if len(actions) > TRANSACTION_ACTIONS or total > TRANSACTION_BYTES:
            raise CommitTooLargeError(
                f"commit of {len(commit.records)} records to {commit.key!r} needs "
                f"{len(actions)} items of {total} bytes in all (head counted at up to "
                f"{ITEM_BYTES}); one DynamoDB transaction holds at most "
                f"{TRANSACTION_ACTIONS} items and {TRANSACTION_BYTES} bytes: commit fewer "
                "or smaller events"
            )
        return actions

    def load(self, key: str, after: int, *, use_snapshot: bool = True) -> Loaded:
        """Read the head (for the snapshot) and the records after ``after``, consistently."""
        _key_bytes(key)
        start, snapshot = after, None
        if use_snapshot:
            try:
                head = self.client.get_item(
                    TableName=self.table_name,
                    Key={"k": {"S": key}, "s": _HEAD},
                    ConsistentRead=True,
                ).get("Item")
            except (ClientError, BotoCoreError) as err:
                raise self._fail(err) from err
            if head is None:
                return Loaded(None, after + 1, [])
            if "n" in head and int(head["n"]["N"]) > after:
                snapshot = Snapshot(int(head["n"]["N"]), head["b"]["B"])
                start = snapshot.sequence
            if int(head["v"]["N"]) <= start:
                return Loaded(snapshot, start + 1, [])
        return Loaded(snapshot, start + 1, self._records_after(key, start))

    def _records_after(self, key: str, start: int) -> list[bytes]:
        """The records after ``start``, re-read while the view is torn (see ``_read_after``)."""
        for attempt in range(self._conflict_attempts):
            records = self._read_after(key, start)
            if records is not None:
                return records
            time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
        raise StoreUnavailableError(
            f"the records of {key!r} in DynamoDB table {self.table_name!r} after sequence "
            f"{start} kept reading with a gap or a partly visible commit "
            f"({self._conflict_attempts} attempts); the table may have been edited by hand"
        )

    def _read_after(self, key: str, start: int) -> list[bytes] | None:
        """One paged ``Query``; ``None`` when it saw a gap or only part of a split commit.

        A ``Query`` is read-committed per item, so while a split commit is being applied it
        may see some of its items and not others: items not ending their commit carry the
        commit's end in ``e``, and sequences must follow on without a gap.
        """
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "k = :k AND s > :s",
            "ExpressionAttributeValues": {":k": {"S": key}, ":s": {"N": str(start)}},
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
                last = int(item["s"]["N"])
                skip = start + 1 + len(records) - (last - len(values) + 1)
                if skip < 0 or (records and skip):
                    return None
                records.extend(value["B"] for value in values[skip:])
                unfinished = "e" in item
            if "LastEvaluatedKey" not in page:
                return None if unfinished else records
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def close(self) -> None:
        """Close the client if this driver made it (idempotent)."""
        if self._owns_client and not self._closed:
            self._closed = True
            self.client.close()


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
