"""``backend``: one fixture over every store, over fresh data (see ``backends.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from backends import Backend, dynamodb_backend, memory_backend, redis_backend


@pytest.fixture(params=["memory", "redis", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each store in turn, over fresh data."""
    if request.param == "memory":
        yield memory_backend()
    elif request.param == "redis":
        yield redis_backend(request.getfixturevalue("redis_server"))
    else:
        yield dynamodb_backend(request.getfixturevalue("moto_client"), request.getfixturevalue("moto_table"))
