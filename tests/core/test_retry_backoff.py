"""``retry(limit, body, backoff=...)``: an optional wait between tries, with a ready-made
exponential backoff with full jitter; without it, ``retry`` tries again at once, as before."""

from __future__ import annotations

import time

import pytest

import kvsourcing
from kvsourcing import ConcurrencyFault, backoff, retry


class Racing:
    """A body that loses ``faults`` races, then returns ``"done"``."""

    def __init__(self, faults: int) -> None:
        self.faults = faults
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.faults:
            raise ConcurrencyFault("k", self.calls)
        return "done"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def test_backoff_is_exported() -> None:
    assert {"backoff", "Backoff"} <= set(kvsourcing.__all__)


def test_retry_without_backoff_does_not_wait(sleeps: list[float]) -> None:
    assert retry(3, Racing(2)) == "done"
    assert sleeps == []


def test_retry_waits_what_backoff_says_after_each_fault(sleeps: list[float]) -> None:
    seen: list[int] = []

    def wait(failures: int) -> float:
        seen.append(failures)
        return failures / 10

    assert retry(4, Racing(3), backoff=wait) == "done"
    assert (seen, sleeps) == ([1, 2, 3], [0.1, 0.2, 0.3])


def test_retry_does_not_wait_after_the_last_try(sleeps: list[float]) -> None:
    with pytest.raises(ConcurrencyFault):
        retry(2, Racing(5), backoff=lambda failures: 1.0)
    assert sleeps == [1.0]


def test_a_bad_backoff_is_refused(sleeps: list[float]) -> None:
    with pytest.raises(TypeError, match="backoff must be a callable"):
        retry(2, Racing(0), backoff=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a number of seconds"):
        retry(2, Racing(1), backoff=lambda failures: -1.0)


def test_full_jitter_stays_within_the_exponential_bound() -> None:
    wait = backoff(base=0.01, cap=0.05)
    for failures, bound in ((1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (200, 0.05)):
        delays = [wait(failures) for _ in range(200)]
        assert all(0.0 <= delay <= bound for delay in delays)
        assert max(delays) > bound / 2, "jittered over the whole range, not fixed"
        assert len(set(delays)) > 100


@pytest.mark.parametrize(("base", "cap"), [(0, 1), (-1, 1), (1, 0.5), (float("inf"), 1), (0.1, float("nan"))])
def test_backoff_bounds_are_checked(base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        backoff(base=base, cap=cap)
