"""Table administration: ``create_table`` and the table-name check, apart from the driver."""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.dynamodb.errors import CLIENT_ERRORS, error_code, translate_error
from kvsourcing.stores.dynamodb.layout import KEY_SCHEMA

_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


def check_table_name(table_name: object) -> str:
    """``table_name`` if DynamoDB takes it as a table name, else ``ConfigurationError``."""
    if not isinstance(table_name, str) or not _TABLE_NAME.fullmatch(table_name):
        raise ConfigurationError(
            f"invalid DynamoDB table name {table_name!r}: use 3 to 255 letters, digits, '_', '-' or '.'"
        )
    return table_name


def create_table(client: Any, table_name: str) -> bool:
    """Create the store's table (on-demand billing) and wait until it is ACTIVE.

    Returns ``True`` when created, ``False`` when it existed with the right key schema (so
    deployment scripts can run it every time); a table of that name with another key schema
    raises ``ConfigurationError`` naming both schemas. Either way the table's TTL is set on
    attribute ``x``, so that DynamoDB deletes expired consumer values (and the commit-id
    markers of earlier releases).
    """
    check_table_name(table_name)
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
            if error_code(err) != "ResourceInUseException":
                raise
            created = False
            _check_existing_schema(client.describe_table(TableName=table_name)["Table"])
        client.get_waiter("table_exists").wait(
            TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        _enable_expiry(client, table_name)
    except WaiterError as err:
        raise ConfigurationError(f"DynamoDB table {table_name!r} did not become ACTIVE: {err}") from None
    except CLIENT_ERRORS as err:
        raise translate_error(err, table_name, client.meta.endpoint_url) from err
    return created


def _enable_expiry(client: Any, table_name: str) -> None:
    """Let DynamoDB delete expired values: TTL on ``x``."""
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


def _describe_schema(schema: tuple[tuple[str, str, str], ...]) -> str:
    return ", ".join(f"{name} ({kind}, {role})" for name, kind, role in schema) or "none"


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
