"""Counting what a store sends: DynamoDB API calls by operation, Redis packets as sent.

Tests assert request counts (a commit is one round trip); benchmarks print them beside
the rates. Both count at the client library's last step before the network.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock


def count_requests(client: Any) -> Counter[str]:
    """A live count of a boto3 DynamoDB client's API calls by operation name (botocore's
    ``before-call`` event, so retries of one call count once)."""
    counts: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counts[model.name] += 1

    client.meta.events.register("before-call.dynamodb", count)
    return counts


@contextmanager
def count_round_trips() -> Iterator[list[bytes]]:
    """Every packet this process's redis-py connections send while the context is open, as
    it is sent (a pipeline is one packet)."""
    from redis.connection import AbstractConnection

    sent: list[bytes] = []
    original: Callable[..., None] = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        sent.append(command if isinstance(command, bytes) else b"".join(command))  # type: ignore[arg-type]
        original(self, command, check_health)

    with mock.patch.object(AbstractConnection, "send_packed_command", counting):
        yield sent


def lose_next_reply(client: Any) -> list[bool]:
    """Make the client's next successful ``TransactWriteItems`` lose its reply: DynamoDB
    applies the transaction, then the client sees the connection drop. Returns a list that
    holds ``True`` once the reply was lost."""
    from botocore.exceptions import ConnectionClosedError

    lost: list[bool] = []

    def lose_reply(http_response: Any, **_: Any) -> None:
        if not lost and http_response.status_code == 200:
            lost.append(True)
            raise ConnectionClosedError(endpoint_url="http://dynamodb.injected")

    client.meta.events.register("after-call.dynamodb.TransactWriteItems", lose_reply)
    return lost
