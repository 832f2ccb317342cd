"""``retry``: run a body again while it loses optimistic-concurrency races, optionally
waiting between tries (``backoff``), so that writers contending for one aggregate spread out."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar

from kvsourcing.errors import ConcurrencyFault
from kvsourcing.steps import Call, Steps, run_sync

T = TypeVar("T")

Backoff = Callable[[int], float]
"""Seconds to wait before the next try, given how many tries have failed so far (1, 2, ...)."""


def _check_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value}")
    return float(value)


def backoff(base: float = 0.01, cap: float = 1.0) -> Backoff:
    """Exponential backoff with full jitter: after the n-th failed try, wait a random time
    between 0 and ``min(cap, base * 2 ** (n - 1))`` seconds, so that writers that collided
    do not collide again in step. For ``retry(limit, body, backoff=backoff())``."""
    base = _check_seconds("base", base)
    cap = _check_seconds("cap", cap)
    if cap < base:
        raise ValueError(f"cap ({cap} s) must not be below base ({base} s)")

    def wait(failures: int) -> float:
        return random.uniform(0.0, min(cap, base * 2.0 ** min(failures - 1, 64)))

    return wait


def retry(limit: int, body: Callable[[], T], backoff: Backoff | None = None) -> T:
    """Call ``body()`` until it returns without raising ``ConcurrencyFault``, at most ``limit`` times.

    Returns what ``body`` returns. Any other exception propagates at once; after
    ``limit`` faults the last ``ConcurrencyFault`` propagates. With ``backoff``, waits
    ``backoff(n)`` seconds after the n-th fault before trying again (none by default).
    """
    result: T = run_sync(retry_steps(limit, backoff), SimpleNamespace(body=body, sleep=time.sleep))
    return result


def retry_steps(limit: int, backoff: Backoff | None) -> Steps[Any]:
    """``retry``'s logic, for sync and async callers: calls ``body`` and ``sleep``."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"retry limit must be an int, not {type(limit).__name__}")
    if limit <= 0:
        raise ValueError(f"retry limit must be at least 1, got {limit}")
    if backoff is not None and not callable(backoff):
        raise TypeError(f"backoff must be a callable taking the number of failed tries, not {backoff!r}")
    for failures in range(1, limit):
        try:
            return (yield Call("body"))
        except ConcurrencyFault:
            if backoff is not None:
                delay = backoff(failures)
                if not (isinstance(delay, int | float) and delay >= 0 and math.isfinite(delay)):
                    raise ValueError(
                        f"backoff({failures}) returned {delay!r}, not a number of seconds >= 0"
                    ) from None
                yield Call("sleep", (delay,))
    return (yield Call("body"))
