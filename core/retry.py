"""``retry``: run a body again while it loses optimistic-concurrency races."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from kvsourcing.errors import ConcurrencyFault

T = TypeVar("T")


def retry(limit: int, body: Callable[[], T]) -> T:
    """Call ``body()`` until it returns without raising ``ConcurrencyFault``, at most ``limit`` times.

    Returns what ``body`` returns. Any other exception propagates at once; after
    ``limit`` faults the last ``ConcurrencyFault`` propagates.
    """
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"retry limit must be an int, not {type(limit).__name__}")
    if limit <= 0:
        raise ValueError(f"retry limit must be at least 1, got {limit}")
    for _ in range(limit - 1):
        try:
            return body()
        except ConcurrencyFault:
            continue
    return body()
