"""The DynamoDB store: ``new_store``, ``create_table``, ``from_url`` and ``make_client``;
for asyncio, ``new_async_store`` and ``open_async`` (on aiobotocore: ``kvsourcing[aio]``).

Clients made here use boto3's usual credential chain and region, with botocore's
standard retry mode, which retries throttling and transient faults with backoff.

Modules, each with one job: ``layout`` (item keys, attribute names, limits), ``packing``
(item sizes), ``commits`` (an append's transaction, and what its cancellation says),
``loads``, ``feed`` and ``values`` (requests built and replies read, as data);
``steps`` and ``flows`` (each driver call as a generator of requests, with its retries,
backoff and paging: the logic a sync and an async driver share); ``errors`` (botocore's
failures translated); ``driver`` (the thin I/O class that runs the flows with a boto3
client) and ``aio`` (its twin on an aiobotocore client); ``admin`` (``create_table``);
``url`` (``dynamodb://`` URLs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kvsourcing.config import redact_url
from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.dynamodb.admin import check_table_name, create_table
from kvsourcing.stores.dynamodb.driver import DynamoDBDriver
from kvsourcing.stores.dynamodb.errors import translate_error
from kvsourcing.stores.dynamodb.layout import (
    DEFAULT_BUCKETS,
    DEFAULT_FEED_GRACE,
    ITEM_BYTES,
    TRANSACTION_ACTIONS,
    TRANSACTION_BYTES,
)
from kvsourcing.stores.dynamodb.url import CLIENT_SETTINGS, parse_url, without_userinfo
from kvsourcing.stores.keyvalue.base import check_options

if TYPE_CHECKING:
    from kvsourcing.stores.keyvalue.aio import AsyncKeyValueStore
    from kvsourcing.stores.keyvalue.store import KeyValueStore

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_FEED_GRACE",
    "ITEM_BYTES",
    "TRANSACTION_ACTIONS",
    "TRANSACTION_BYTES",
    "DynamoDBDriver",
    "create_table",
    "from_url",
    "make_client",
    "new_async_store",
    "new_store",
    "open_async",
    "parse_url",
]


def make_client(region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 DynamoDB client: the usual credential chain, standard retry mode.

    ``region`` defaults to boto3's (``AWS_DEFAULT_REGION``, the profile); ``endpoint_url``
    points at DynamoDB Local, moto or LocalStack. Each client gets its own boto3 session,
    because the shared default session is not safe to use from several threads. User info
    in ``endpoint_url`` is dropped: botocore never sends it (requests are signed with AWS
    credentials), and so no message can show its password.
    """
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise ConfigurationError(
            "the DynamoDB store needs boto3: pip install 'kvsourcing[dynamodb]'"
        ) from None
    config = Config(**CLIENT_SETTINGS)
    if endpoint_url is not None:
        endpoint_url = without_userinfo(endpoint_url)
    try:
        return boto3.session.Session().client(
            "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
        )
    except BotoCoreError as err:
        raise translate_error(err, "", endpoint_url) from None
    except ValueError as err:
        shown = redact_url(endpoint_url or "")
        raise ConfigurationError(f"invalid DynamoDB endpoint_url {shown!r}: {err}") from None


def new_store(
    table_name: str,
    *,
    client: Any = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    buckets: int = DEFAULT_BUCKETS,
    feed: bool = True,
    feed_grace: float = DEFAULT_FEED_GRACE,
    **options: Any,
) -> KeyValueStore:
    """An event store on DynamoDB table ``table_name`` (see ``create_table``).

    Without ``client``, one is made by ``make_client(region, endpoint_url)`` and closed with
    the store; a given client stays the caller's to close. ``buckets`` partitions the
    durable feed (every process using the table must pass the same count); ``feed=False``
    keeps no feed, and a commit is one ``TransactWriteItems``; ``feed_grace`` is the age in
    seconds after which a feed position reserved by a commit that never landed is
    tombstoned by readers. The other options (``snapshot_interval``, ``codec``, ...) go to
    the store.
    """
    from kvsourcing.stores import keyvalue

    check_arguments(table_name, client, region, endpoint_url, options)
    owns_client = client is None
    if owns_client:
        client = make_client(region, endpoint_url)
    try:
        driver = DynamoDBDriver(
            client, table_name, owns_client=owns_client, buckets=buckets, feed=feed, feed_grace=feed_grace
        )
        return keyvalue.new_store(driver, **options)
    except BaseException:
        if owns_client:
            client.close()
        raise


def from_url(url: str, **options: Any) -> KeyValueStore:
    """The store for ``dynamodb://TABLE?region=R&endpoint_url=U`` (as ``open_store`` uses);
    see ``kvsourcing.stores.dynamodb.url`` for the options a URL may carry."""
    table_name, query = parse_url(url, options)
    return new_store(table_name, **{**query, **options})


def check_arguments(
    table_name: str, client: Any, region: str | None, endpoint_url: str | None, options: dict[str, Any]
) -> None:
    """Refuse a bad table name, an unknown option, or a client given with its settings."""
    check_table_name(table_name)
    check_options("DynamoDB", options, ())
    if client is not None and (region is not None or endpoint_url is not None):
        raise ConfigurationError(
            "pass either client= or region=/endpoint_url= to the DynamoDB store, not both"
        )


def new_async_store(
    table_name: str,
    *,
    client: Any = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    buckets: int = DEFAULT_BUCKETS,
    feed: bool = True,
    feed_grace: float = DEFAULT_FEED_GRACE,
    **options: Any,
) -> AsyncKeyValueStore:
    """``new_store`` for asyncio, on an aiobotocore DynamoDB ``client`` (the caller's to
    close), or on one the store makes from ``region`` and ``endpoint_url`` on first use and
    closes with the store: the same data as the sync store's."""
    from kvsourcing.stores.dynamodb.aio import AsyncDynamoDBDriver
    from kvsourcing.stores.keyvalue.aio import AsyncKeyValueStore

    check_arguments(table_name, client, region, endpoint_url, options)
    driver = AsyncDynamoDBDriver(
        table_name,
        client=client,
        region=region,
        endpoint_url=endpoint_url,
        buckets=buckets,
        feed=feed,
        feed_grace=feed_grace,
    )
    return AsyncKeyValueStore(driver, **options)


async def open_async(url: str, **options: Any) -> AsyncKeyValueStore:
    """``from_url`` for ``kvsourcing.aio.open_store``: the store on an aiobotocore client."""
    table_name, query = parse_url(url, options)
    return new_async_store(table_name, **{**query, **options})
