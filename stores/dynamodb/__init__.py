"""The DynamoDB store: ``new_store``, ``create_table``, ``from_url`` and ``make_client``.

The storage design (head item, one feed-position reservation and one transaction per
commit, the durable feed in per-bucket partitions) is described in
``kvsourcing.stores.dynamodb.driver``. Clients made here use boto3's usual credential chain
and region, with botocore's standard retry mode, which retries throttling and transient
faults with backoff.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from kvsourcing.config import redact_url
from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.dynamodb.driver import (
    DEFAULT_BUCKETS,
    DEFAULT_FEED_GRACE,
    ITEM_BYTES,
    KEY_SCHEMA,
    TRANSACTION_ACTIONS,
    TRANSACTION_BYTES,
    DynamoDBDriver,
    translate_error,
)
from kvsourcing.stores.keyvalue.driver import DEFAULT_COMMIT_ID_TTL

if TYPE_CHECKING:
    from kvsourcing.codecs import Codec
    from kvsourcing.mapper import Cipher
    from kvsourcing.protocols import EventStore

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
    "new_store",
    "parse_url",
]

_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_URL_EXAMPLE = "dynamodb://my-events?region=eu-west-1&endpoint_url=http://localhost:8000"
_URL_PARAMETERS = ("region", "endpoint_url", "compression")
_URL_OPTIONS = frozenset(
    {
        "snapshot_interval",
        "codec",
        "client",
        "buckets",
        "feed_grace",
        "commit_id_ttl",
        "compression",
        "cipher",
    }
)


def _check_table_name(table_name: object) -> str:
    if not isinstance(table_name, str) or not _TABLE_NAME.fullmatch(table_name):
        raise ConfigurationError(
            f"invalid DynamoDB table name {table_name!r}: use 3 to 255 letters, digits, '_', '-' or '.'"
        )
    return table_name


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
    config = Config(retries={"mode": "standard"}, connect_timeout=10)
    if endpoint_url is not None:
        endpoint_url = _without_userinfo(endpoint_url)
    try:
        return boto3.session.Session().client(
            "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
        )
    except BotoCoreError as err:
        raise translate_error(err, "", endpoint_url) from None
    except ValueError as err:
        raise ConfigurationError(
            f"invalid DynamoDB endpoint_url {redact_url(endpoint_url)!r}: {err}"
        ) from None


def _without_userinfo(endpoint_url: str) -> str:
    try:
        parts = urlsplit(endpoint_url)
    except ValueError:
        return endpoint_url  # boto3 refuses it, and the message is redacted
    if "@" not in parts.netloc:
        return endpoint_url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def new_store(
    table_name: str,
    *,
    client: Any = None,
    snapshot_interval: int = 0,
    codec: Codec | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    buckets: int = DEFAULT_BUCKETS,
    feed_grace: float = DEFAULT_FEED_GRACE,
    commit_id_ttl: float | None = DEFAULT_COMMIT_ID_TTL,
    compression: str | None = None,
    cipher: Cipher | None = None,
) -> EventStore:
    """An event store on DynamoDB table ``table_name`` (see ``create_table``).

    Without ``client``, one is made by ``make_client(region, endpoint_url)`` and closed with
    the store; a given client stays the caller's to close. ``buckets`` partitions the
    durable feed (every process using the table must pass the same count); ``feed_grace``
    is the age in seconds after which a feed position reserved by a commit that never
    landed is tombstoned by readers; commit ids are kept ``commit_id_ttl`` seconds
    (``None``: for ever); ``compression`` and ``cipher`` apply to stored records and snapshots.
    """
    from kvsourcing.stores import keyvalue

    _check_table_name(table_name)
    if client is not None and (region is not None or endpoint_url is not None):
        raise ConfigurationError(
            "pass either client= or region=/endpoint_url= to the DynamoDB store, not both"
        )
    owns_client = client is None
    if owns_client:
        client = make_client(region, endpoint_url)
    try:
        driver = DynamoDBDriver(
            client,
            table_name,
            owns_client=owns_client,
            buckets=buckets,
            feed_grace=feed_grace,
            commit_id_ttl=commit_id_ttl,
        )
    except BaseException:
        if owns_client:
            client.close()
        raise
    return keyvalue.new_store(
        driver, codec=codec, snapshot_interval=snapshot_interval, compression=compression, cipher=cipher
    )


def _describe_schema(schema: tuple[tuple[str, str, str], ...]) -> str:
    return ", ".join(f"{name} ({kind}, {role})" for name, kind, role in schema) or "none"


def create_table(client: Any, table_name: str) -> bool:
    """Create the store's table (on-demand billing) and wait until it is ACTIVE.

    Returns ``True`` when created, ``False`` when it existed with the right key schema (so
    deployment scripts can run it every time); a table of that name with another key schema
    raises ``ConfigurationError`` naming both schemas. Either way the table's TTL is set on
    attribute ``x``, so that DynamoDB deletes expired commit-id markers and values.
    """
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError

    _check_table_name(table_name)
    endpoint = client.meta.endpoint_url
    created = True
    try:
        try:
            client.create_table(
                TableName=table_name,
                KeySchema=[{"AttributeName": n, "KeyType": r} for n, _, r in KEY_SCHEMA],
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t, _ in KEY_SCHEMA],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
            created = False
            _check_existing_schema(client.describe_table(TableName=table_name)["Table"])
        client.get_waiter("table_exists").wait(
            TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        _enable_expiry(client, table_name)
    except WaiterError as err:
        raise ConfigurationError(f"DynamoDB table {table_name!r} did not become ACTIVE: {err}") from None
    except (ClientError, BotoCoreError) as err:
        raise translate_error(err, table_name, endpoint) from err
    return created


def _enable_expiry(client: Any, table_name: str) -> None:
    """Let DynamoDB delete expired commit-id markers and consumer values: TTL on ``x``."""
    from botocore.exceptions import ClientError

    description = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    if description.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    try:
        client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "x"}
        )
    except ClientError as err:
        if "already enabled" not in str(err).lower():
            raise


def _check_existing_schema(table: dict[str, Any]) -> None:
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    theirs = tuple(
        (k["AttributeName"], types.get(k["AttributeName"], "?"), k["KeyType"])
        for k in sorted(table["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    )
    if theirs != KEY_SCHEMA:
        raise ConfigurationError(
            f"DynamoDB table {table['TableName']!r} exists with key schema "
            f"{_describe_schema(theirs)}, but kvsourcing needs {_describe_schema(KEY_SCHEMA)}; "
            "pick another table name"
        )


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """The table name and the query parameters of a ``dynamodb://TABLE?region=R&endpoint_url=U``
    URL; ``ConfigurationError`` when it is malformed."""
    parts = urlsplit(url)
    shown = redact_url(url)
    if parts.scheme != "dynamodb":
        raise ConfigurationError(f"not a DynamoDB store URL: {shown!r}; expected e.g. {_URL_EXAMPLE}")
    if not parts.netloc:
        raise ConfigurationError(f"DynamoDB store URL {shown!r} names no table; expected e.g. {_URL_EXAMPLE}")
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigurationError(
            f"DynamoDB store URL {shown!r} has a path or fragment after the table name; "
            f"expected e.g. {_URL_EXAMPLE}"
        )
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigurationError(
            f"malformed query in DynamoDB store URL {shown!r}; expected e.g. {_URL_EXAMPLE}"
        ) from None
    unknown = sorted(set(query) - set(_URL_PARAMETERS))
    if unknown:
        raise ConfigurationError(
            f"unknown parameter(s) {', '.join(unknown)} in DynamoDB store URL {shown!r}; "
            f"known: {', '.join(_URL_PARAMETERS)}, e.g. {_URL_EXAMPLE}"
        )
    params: dict[str, str] = {}
    for name, values in query.items():
        if len(values) != 1 or not values[0]:
            raise ConfigurationError(
                f"parameter {name} must be given once, with a value, in DynamoDB store URL "
                f"{shown!r}; e.g. {_URL_EXAMPLE}"
            )
        params[name] = values[0]
    return _check_table_name(parts.netloc), params


def from_url(url: str, **options: Any) -> EventStore:
    """The store for ``dynamodb://TABLE?region=R&endpoint_url=U`` (as ``open_store`` uses).

    ``options`` are ``snapshot_interval``, ``codec``, ``client``, ``buckets``, ``feed_grace``
    and ``commit_id_ttl``.
    """
    table_name, params = parse_url(url)
    shown = redact_url(url)
    bad_options = sorted(set(options) - _URL_OPTIONS)
    if bad_options:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(bad_options)} for the DynamoDB store; "
            f"known: {', '.join(sorted(_URL_OPTIONS))}"
        )
    if "compression" in params:
        options = {"compression": params.pop("compression"), **options}
    if options.get("client") is not None and params:
        raise ConfigurationError(
            f"DynamoDB store URL {shown!r} sets {', '.join(params)}, but client= was given too; "
            "configure one or the other"
        )
    if options.get("client") is not None:
        return new_store(table_name, **options)
    options.pop("client", None)
    return new_store(
        table_name, region=params.get("region"), endpoint_url=params.get("endpoint_url"), **options
    )
