"""``TableIO``: the driver's requests to its table, sent and their replies gathered.

The thin I/O layer under ``DynamoDBDriver``: every call goes through ``served()``, which
translates botocore's failures (``errors.translate_error``); batches are sent again for
what DynamoDB left unprocessed, and torn reads read again, with one backoff. What to send
and how to read the replies is decided by the sans-IO modules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from kvsourcing.errors import KvSourcingError, StoreUnavailableError
from kvsourcing.stores.dynamodb.errors import (
    CLIENT_ERRORS,
    CONDITION_FAILED,
    backoff,
    error_code,
    translate_error,
)
from kvsourcing.stores.dynamodb.feed import tombstone
from kvsourcing.stores.dynamodb.layout import BATCH_GET_KEYS, BATCH_WRITE_ITEMS
from kvsourcing.stores.dynamodb.loads import RecordsReading, records_query
from kvsourcing.stores.keyvalue.base import DriverBase


class TableIO(DriverBase):
    """Requests to one table through one boto3 client (see the module docstring)."""

    system_name = "aws.dynamodb"
    client_errors: ClassVar[tuple[type[BaseException], ...]] = CLIENT_ERRORS

    client: Any
    table_name: str
    attempts: int

    def translate(self, err: BaseException) -> KvSourcingError:
        return translate_error(err, self.table_name, self.client.meta.endpoint_url)

    def close_client(self) -> None:
        self.client.close()

    def call(self, operation: str, **request: Any) -> dict[str, Any]:
        """One request, its failure translated."""
        with self.served():
            reply: dict[str, Any] = getattr(self.client, operation)(**request)
        return reply

    def conditionally(self, operation: str, **request: Any) -> bool:
        """One conditional write; whether its condition held (and so it was applied)."""
        with self.served():
            try:
                getattr(self.client, operation)(**request)
            except ClientError as err:
                if error_code(err) in CONDITION_FAILED:
                    return False
                raise
        return True

    def tombstone(self, bucket: int, position: int, *, gap: bool) -> bool:
        """Fill ``position`` of ``bucket``'s feed unless something is there; whether we did."""
        return self.conditionally(
            "put_item", **tombstone(self.table_name, bucket, position, time.time(), gap=gap)
        )

    def _until_processed(
        self, send: Callable[..., dict[str, Any]], request: dict[str, Any], unprocessed: str, what: str
    ) -> list[dict[str, Any]]:
        """Send a batch request, then again what DynamoDB left ``unprocessed``, with backoff."""
        replies = []
        for attempt in range(100):
            with self.served():
                reply = send(RequestItems=request)
            replies.append(reply)
            request = reply.get(unprocessed) or {}
            if not request:
                return replies
            time.sleep(backoff(attempt))
        raise StoreUnavailableError(f"DynamoDB kept leaving {what} of table {self.table_name!r} unprocessed")

    def batch_get(
        self, keys: list[dict[str, Any]], what: str, projection: str | None = None
    ) -> list[dict[str, Any]]:
        """The items of ``keys`` that exist, by consistent ``BatchGetItem``s of up to 100 keys."""
        items: list[dict[str, Any]] = []
        for offset in range(0, len(keys), BATCH_GET_KEYS):
            wanted: dict[str, Any] = {"Keys": keys[offset : offset + BATCH_GET_KEYS], "ConsistentRead": True}
            if projection is not None:
                wanted["ProjectionExpression"] = projection
            request = {self.table_name: wanted}
            for reply in self._until_processed(self.client.batch_get_item, request, "UnprocessedKeys", what):
                items.extend(reply.get("Responses", {}).get(self.table_name, []))
        return items

    def batch_delete(self, keys: list[dict[str, Any]]) -> None:
        """Delete the items of ``keys`` by ``BatchWriteItem``s of 25."""
        for offset in range(0, len(keys), BATCH_WRITE_ITEMS):
            deletes = [{"DeleteRequest": {"Key": key}} for key in keys[offset : offset + BATCH_WRITE_ITEMS]]
            self._until_processed(
                self.client.batch_write_item, {self.table_name: deletes}, "UnprocessedItems", "deletes"
            )

    def query_pages(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The pages of a ``Query``, following ``LastEvaluatedKey``."""
        while True:
            with self.served():
                page = self.client.query(**request)
            yield page
            if "LastEvaluatedKey" not in page:
                return
            request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}

    def records_after(self, key: str, start: int, last: int | None = None) -> RecordsReading:
        """The records after ``start`` (up to ``last``: then exactly those) and their commits'
        metadata, read again while the view is torn (``loads``)."""
        for attempt in range(self.attempts):
            reading = RecordsReading(start, last)
            pages = self.query_pages(records_query(self.table_name, key, start, last))
            if all(reading.add(page["Items"]) for page in pages) and reading.records() is not None:
                return reading
            time.sleep(backoff(attempt))
        raise StoreUnavailableError(
            f"the records of {key!r} in DynamoDB table {self.table_name!r} after sequence "
            f"{start} kept reading with a gap or a partly visible commit "
            f"({self.attempts} attempts); the table may have been edited by hand"
        )
