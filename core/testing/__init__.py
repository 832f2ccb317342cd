"""Testing helpers: the store compliance suite and aggregate scenarios."""

from kvsourcing.testing.scenario import AggregateScenario, run_json
from kvsourcing.testing.suite import StoreSuite

__all__ = ["AggregateScenario", "StoreSuite", "run_json"]
