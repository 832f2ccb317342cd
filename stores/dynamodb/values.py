"""Small values with compare-and-swap (sans-IO): consumers' checkpoints, leases, members.

Each value is an item of its own; a swap is a ``PutItem`` or ``DeleteItem`` conditioned on
the current value (``d = :e``, or its absence) and on the expiry ``x`` compared with the
writer's clock: an expired value counts as absent. Expired values stay in the table until
overwritten, or until DynamoDB's TTL on ``x`` deletes them.
"""

from __future__ import annotations

from typing import Any

from kvsourcing.errors import InvalidKeyError
from kvsourcing.stores.dynamodb.layout import HEAD, PARTITION_KEY_BYTES, VALUE_PREFIX, number


def value_key(name: str) -> dict[str, Any]:
    """The key of value ``name``'s item; ``InvalidKeyError`` when DynamoDB cannot keep it."""
    partition = VALUE_PREFIX + name
    try:
        size = len(partition.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKeyError(f"value name {name!r} is not valid UTF-8 text") from None
    if size > PARTITION_KEY_BYTES:
        raise InvalidKeyError(
            f"value name of {size - len(VALUE_PREFIX)} bytes exceeds DynamoDB's partition "
            f"key limit ({PARTITION_KEY_BYTES} bytes with the driver's 3-byte prefix)"
        )
    return {"k": {"S": partition}, "s": HEAD}


def live_value(item: dict[str, Any] | None, now: float) -> bytes | None:
    """A value item's bytes, or ``None`` when it is absent or expired."""
    if item is None or "d" not in item:
        return None
    if "x" in item and float(item["x"]["N"]) <= now:
        return None
    value: bytes = item["d"]["B"]
    return value


def swap(
    table: str, name: str, expected: bytes | None, new: bytes | None, ttl: float | None, now: float
) -> tuple[str, dict[str, Any]]:
    """``(operation, parameters)`` of the conditional write that swaps ``name``'s value."""
    key = value_key(name)
    values: dict[str, Any] = {":now": number(now)}
    if expected is None:
        condition = "attribute_not_exists(d) OR x <= :now"
    else:
        condition = "d = :e AND (attribute_not_exists(x) OR x > :now)"
        values[":e"] = {"B": expected}
    request: dict[str, Any] = {
        "TableName": table,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": values,
    }
    if new is None:
        return "delete_item", {**request, "Key": key}
    item = {**key, "d": {"B": new}}
    if ttl is not None:
        item["x"] = number(now + ttl)
    return "put_item", {**request, "Item": item}
