"""Testing helpers: aggregate scenarios, and the store and feed compliance suites (which need pytest)."""

from typing import Any

from kvsourcing.testing.aggregate_tester import AggregateTest, AggregateTestCommand, AggregateTester
from kvsourcing.testing.scenario import AggregateScenario, run_json

__all__ = [
    "AggregateScenario",
    "AggregateTest",
    "AggregateTestCommand",
    "AggregateTester",
    "AsyncStoreSuite",
    "FeedSuite",
    "StoreSuite",
    "run_json",
]


def __getattr__(name: str) -> Any:
    if name == "StoreSuite":
        from kvsourcing.testing.suite import StoreSuite

        return StoreSuite
    if name == "FeedSuite":
        from kvsourcing.testing.feed_suite import FeedSuite

        return FeedSuite
    if name == "AsyncStoreSuite":
        from kvsourcing.testing.async_suite import AsyncStoreSuite

        return AsyncStoreSuite
    raise AttributeError(f"module 'kvsourcing.testing' has no attribute {name!r}")
