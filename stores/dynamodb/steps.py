"""Requests as steps: what lets one piece of logic serve a sync and an async driver.

A *flow* is a generator that yields the requests it wants sent (``Call``) or a ``Pause``,
and is sent each reply back (or has the client's error thrown into it); it never touches
a client or a clock's sleep. Its steps are ``kvsourcing.steps`` calls (a ``Call`` is the
client's method, a ``Pause`` the runner's ``sleep``): ``run`` drives a flow with a boto3
client, ``run_async`` the same flows with ``await`` on an aiobotocore client and
``asyncio.sleep``, so retries, backoff and paging are written once. The general flows (conditional writes,
batches sent again for what DynamoDB left unprocessed, records read again while torn)
are here; the driver's own are in ``flows``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from botocore.exceptions import ClientError

from kvsourcing import steps
from kvsourcing.errors import StoreUnavailableError
from kvsourcing.stores.dynamodb.errors import CONDITION_FAILED, backoff, error_code
from kvsourcing.stores.dynamodb.layout import BATCH_GET_KEYS, BATCH_WRITE_ITEMS
from kvsourcing.stores.dynamodb.loads import RecordsReading, records_query

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """Send ``request`` with the client's method ``operation`` (``"get_item"``, ...)."""

    operation: str
    request: dict[str, Any]

    @property
    def name(self) -> str:
        """What ``kvsourcing.steps`` calls: the client's method."""
        return self.operation

    @property
    def args(self) -> tuple[Any, ...]:
        return ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.request


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``seconds`` before the next step."""

    seconds: float

    name = "sleep"
    """What ``kvsourcing.steps`` calls: the runner's sleep, with ``args``."""

    @property
    def args(self) -> tuple[Any, ...]:
        return (self.seconds,)

    @property
    def kwargs(self) -> dict[str, Any]:
        return {}


Flow = Generator[Call | Pause, Any, T]


def as_steps(flow: Flow[T]) -> steps.Steps[T]:
    """``flow`` as ``kvsourcing.steps`` runs it: ``Call`` and ``Pause`` have the same
    ``name``, ``args`` and ``kwargs`` as its ``Call``."""
    return cast("steps.Steps[T]", flow)


class _ClientIO:
    """A client as ``kvsourcing.steps`` runs a flow on it: its methods, and ``sleep``."""

    def __init__(self, client: Any, sleep: Callable[[float], Any]) -> None:
        self.client, self.sleep = client, sleep

    def __getattr__(self, operation: str) -> Any:
        return getattr(self.client, operation)


def run(flow: Flow[T], client: Any) -> T:
    """Drive ``flow`` to its result with a boto3 ``client``; the client's errors the flow
    does not handle come out of here as they are (``served()`` translates them)."""
    return steps.run_sync(as_steps(flow), _ClientIO(client, time.sleep))


async def run_async(flow: Flow[T], client: Any) -> T:
    """``run`` for asyncio: each request awaited on an aiobotocore ``client``, each ``Pause``
    an ``asyncio.sleep``. A cancellation leaves what the flow had sent whole or absent, as
    DynamoDB applies each request (a transaction too) entirely or not."""
    return await steps.run_async(as_steps(flow), _ClientIO(client, asyncio.sleep))


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
