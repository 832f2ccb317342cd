"""Requests as steps: what lets one piece of logic serve a sync and an async driver.

A *flow* is a generator that yields the requests it wants sent (``Call``) or a ``Pause``,
and is sent each reply back (or has the client's error thrown into it); it never touches
a client or a clock's sleep. ``run`` drives a flow with a boto3 client; ``run_async`` drives
the same flows with ``await`` on an aiobotocore client and ``asyncio.sleep``, so retries,
backoff and paging are written once. The general flows (conditional writes,
batches sent again for what DynamoDB left unprocessed, records read again while torn)
are here; the driver's own are in ``flows``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from kvsourcing.errors import StoreUnavailableError
from kvsourcing.stores.dynamodb.errors import CLIENT_ERRORS, CONDITION_FAILED, backoff, error_code
from kvsourcing.stores.dynamodb.layout import BATCH_GET_KEYS, BATCH_WRITE_ITEMS
from kvsourcing.stores.dynamodb.loads import RecordsReading, records_query

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """Send ``request`` with the client's method ``operation`` (``"get_item"``, ...)."""

    operation: str
    request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``seconds`` before the next step."""

    seconds: float


Flow = Generator[Call | Pause, Any, T]


def run(flow: Flow[T], client: Any) -> T:
    """Drive ``flow`` to its result with a boto3 ``client``; the client's errors the flow
    does not handle come out of here as they are (``served()`` translates them)."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        reply, error = None, None
        if isinstance(step, Pause):
            time.sleep(step.seconds)
            continue
        try:
            reply = getattr(client, step.operation)(**step.request)
        except CLIENT_ERRORS as err:
            error = err


async def run_async(flow: Flow[T], client: Any) -> T:
    """``run`` for asyncio: each request awaited on an aiobotocore ``client``, each ``Pause``
    an ``asyncio.sleep``. A cancellation leaves the flow where it was: what it had sent is
    whole or absent, as DynamoDB applies each request (a transaction too) entirely or not."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        reply, error = None, None
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            continue
        try:
            reply = await getattr(client, step.operation)(**step.request)
        except CLIENT_ERRORS as err:
            error = err


def conditionally(operation: str, request: dict[str, Any]) -> Flow[bool]:
    """One conditional write; whether its condition held (and so it was applied)."""
    try:
        yield Call(operation, request)
    except ClientError as err:
        if error_code(err) in CONDITION_FAILED:
            return False
        raise
    return True


def until_processed(operation: str, request: dict[str, Any], unprocessed: str, what: str) -> Flow[list[Any]]:
    """Send a batch request, then again what DynamoDB left ``unprocessed``, with backoff;
    the replies."""
    replies = []
    for attempt in range(100):
        reply = yield Call(operation, {"RequestItems": request})
        replies.append(reply)
        request = reply.get(unprocessed) or {}
        if not request:
            return replies
        yield Pause(backoff(attempt))
    raise StoreUnavailableError(f"DynamoDB kept leaving {what} unprocessed")


def batch_get(
    table: str, keys: list[dict[str, Any]], what: str, projection: str | None = None
) -> Flow[list[Any]]:
    """The items of ``keys`` that exist, by consistent ``BatchGetItem``s of up to 100 keys."""
    items: list[Any] = []
    for offset in range(0, len(keys), BATCH_GET_KEYS):
        wanted: dict[str, Any] = {"Keys": keys[offset : offset + BATCH_GET_KEYS], "ConsistentRead": True}
        if projection is not None:
            wanted["ProjectionExpression"] = projection
        replies = yield from until_processed(
            "batch_get_item", {table: wanted}, "UnprocessedKeys", f"{what} of table {table!r}"
        )
        for reply in replies:
            items.extend(reply.get("Responses", {}).get(table, []))
    return items


def batch_delete(table: str, keys: list[dict[str, Any]]) -> Flow[None]:
    """Delete the items of ``keys`` by ``BatchWriteItem``s of 25."""
    for offset in range(0, len(keys), BATCH_WRITE_ITEMS):
        deletes = [{"DeleteRequest": {"Key": key}} for key in keys[offset : offset + BATCH_WRITE_ITEMS]]
        yield from until_processed(
            "batch_write_item", {table: deletes}, "UnprocessedItems", f"deletes of table {table!r}"
        )


def query_all(request: dict[str, Any]) -> Flow[list[Any]]:
    """Every item a ``Query`` matches, following ``LastEvaluatedKey``."""
    items: list[Any] = []
    while True:
        page = yield Call("query", request)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def records_after(
    table: str, key: str, start: int, attempts: int, last: int | None = None
) -> Flow[RecordsReading]:
    """The records after ``start`` (up to ``last``: then exactly those) and their commits'
    metadata, read again while the view is torn (``loads``)."""
    for attempt in range(attempts):
        reading = RecordsReading(start, last)
        items = yield from query_all(records_query(table, key, start, last))
        if reading.add(items) and reading.records() is not None:
            return reading
        yield Pause(backoff(attempt))
    raise StoreUnavailableError(
        f"the records of {key!r} in DynamoDB table {table!r} after sequence {start} kept "
        f"reading with a gap or a partly visible commit ({attempts} attempts); the table may "
        "have been edited by hand"
    )
