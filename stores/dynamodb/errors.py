"""What botocore's failures mean for the store: one translation, used through
``DriverBase.served()``, and the few facts the driver reads from an error.
"""

from __future__ import annotations

import random
from typing import Any, Final

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
    KvSourcingError,
    StoreUnavailableError,
    TableNotFoundError,
)

CLIENT_ERRORS: Final = (ClientError, BotoCoreError)
"""What a boto3 client raises, and ``served()`` translates."""

MISSING_TABLE: Final = frozenset({"ResourceNotFoundException", "ResourceNotFound"})
CONDITION_FAILED: Final = frozenset({"ConditionalCheckFailedException", "TransactionConflictException"})
"""A conditional write that was not applied: its condition failed, or a transaction was
writing the item at that moment (someone else is writing it: the caller reads it again)."""
_AUTH_CODES: Final = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "AccessDeniedException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "MissingAuthenticationTokenException",
    }
)
_UNREACHABLE: Final = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)


def error_code(err: BaseException) -> str:
    """The DynamoDB error code of a ``ClientError`` ("" for any other failure)."""
    if not isinstance(err, ClientError):
        return ""
    return str(err.response.get("Error", {}).get("Code", ""))


def cancellation_reasons(err: ClientError) -> list[dict[str, Any]]:
    """The per-action reasons of a ``TransactionCanceledException``."""
    return list(err.response.get("CancellationReasons") or [])


def table_not_found(table_name: str) -> TableNotFoundError:
    return TableNotFoundError(
        f"DynamoDB table {table_name!r} does not exist; create it with "
        f"`kvsourcing dynamodb create-table {table_name}` or "
        f"`kvsourcing.stores.dynamodb.create_table(client, {table_name!r})`"
    )


def translate_error(err: BaseException, table_name: str, endpoint: str | None) -> KvSourcingError:
    """The library's exception for a boto3/botocore failure, saying what to do about it."""
    where = f"DynamoDB at {endpoint}" if endpoint else "DynamoDB"
    if isinstance(err, ClientError):
        code, message = error_code(err), err.response.get("Error", {}).get("Message", "")
        if code in MISSING_TABLE:
            return table_not_found(table_name)
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
    if isinstance(err, _UNREACHABLE):
        return StoreUnavailableError(f"cannot reach {where}: {err}")
    return StoreUnavailableError(f"{where} request on table {table_name!r} failed: {err}")


def may_have_landed(err: BaseException) -> bool:
    """Whether a transaction that failed with ``err`` may still be applied: a lost
    connection, a server error (5xx) or ``TransactionInProgressException`` (botocore's
    resend of an attempt still being applied) leave it unknown; any other refusal (4xx)
    applied nothing."""
    if not isinstance(err, ClientError):
        return True
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500
    return int(status) >= 500 or error_code(err) == "TransactionInProgressException"


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1`` of something DynamoDB turned away for
    now: full jitter, doubling from 10 ms, at most half a second."""
    return random.uniform(0, min(0.5, 0.01 * 2**attempt))
