"""Testing helpers: aggregate scenarios, and the store compliance suite (which needs pytest)."""

from typing import Any

from kvsourcing.testing.scenario import AggregateScenario, run_json

__all__ = ["AggregateScenario", "StoreSuite", "run_json"]


def __getattr__(name: str) -> Any:
    if name == "StoreSuite":
        from kvsourcing.testing.suite import StoreSuite

        return StoreSuite
    raise AttributeError(f"module 'kvsourcing.testing' has no attribute {name!r}")
