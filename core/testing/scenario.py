"""Given/when/then tests of an aggregate's command handling, in Python or from JSON files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kvsourcing.aggregate import AggregateBase
from kvsourcing.errors import DomainFault
from kvsourcing.protocols import EventStore
from kvsourcing.structure import build
from kvsourcing.teststore import TestStore

AggregateFactory = Callable[[str, EventStore], AggregateBase]


@dataclass(frozen=True)
class AggregateScenario:
    """``AggregateScenario(factory).given(*events).when(command).then(*events)``.

    ``factory(key, store)`` builds the aggregate under test; the scenario runs it on a
    ``TestStore`` holding the given events, and compares what the command produced.
    """

    aggregate_factory: AggregateFactory
    key: str = "scenario"
    history: tuple[Any, ...] = ()
    command: Any = None
    name: str = "scenario"
    _has_command: bool = field(default=False, repr=False)

    def given(self, *events: Any) -> AggregateScenario:
        """The events already stored before the command."""
        return replace(self, history=self.history + events)

    def when(self, command: Any) -> AggregateScenario:
        """The command under test."""
        return replace(self, command=command, _has_command=True)

    @staticmethod
    def _produced(store: TestStore) -> list[Any]:
        return [e for item in store.history for e in item.events]

    def _prepare(self) -> tuple[AggregateBase, TestStore]:
        if not self._has_command:
            raise ValueError(f"{self.name}: call .when(command) before .then()")
        store = TestStore().when(self.key, 0, list(self.history))
        return self.aggregate_factory(self.key, store), store

    def _run(self) -> tuple[list[Any], DomainFault | None]:
        aggregate, store = self._prepare()
        try:
            aggregate.handle(self.command)
        except DomainFault as fault:
            return [], fault
        return self._produced(store), None

    def then_raises(self, exc_type: type[BaseException], match: str | None = None) -> BaseException:
        """Assert that the command raised ``exc_type`` (any exception, not only a
        ``DomainFault``), whose text ``re.search``es ``match`` when given; returns it."""
        aggregate, store = self._prepare()
        try:
            aggregate.handle(self.command)
        except exc_type as raised:
            if match is not None and not re.search(match, str(raised)):
                raise AssertionError(
                    f"{self.name}: expected {exc_type.__name__} matching {match!r}, got {raised}"
                ) from raised
            return raised
        except Exception as other:
            raise AssertionError(
                f"{self.name}: expected {exc_type.__name__}, got {type(other).__name__}: {other}"
            ) from other
        raise AssertionError(
            f"{self.name}: expected {exc_type.__name__}, got events {self._produced(store)!r}"
        )

    def then(self, *events: Any) -> None:
        """Assert that the command produced exactly ``events``."""
        produced, fault = self._run()
        if fault is not None:
            raise AssertionError(f"{self.name}: expected events {list(events)!r}, got {fault}")
        if produced != list(events):
            raise AssertionError(f"{self.name}: expected events {list(events)!r}, got {produced!r}")

    def then_fault(self, code: str) -> None:
        """Assert that the command failed with a ``DomainFault`` of ``code``."""
        produced, fault = self._run()
        if fault is None:
            raise AssertionError(f"{self.name}: expected fault {code!r}, got events {produced!r}")
        if fault.fault_code != code:
            raise AssertionError(f"{self.name}: expected fault {code!r}, got {fault.fault_code!r}")


def run_json(path: str | Path, aggregate_factory: AggregateFactory) -> int:
    """Run every scenario in a JSON file; returns how many ran, raises listing the failures.

    The file holds ``{"scenarios": [...]}`` (or the list itself); each scenario is
    ``{"name", "given": [{"type", "data"}], "when": {"type", "data"}, "then": [...]}``
    with ``"then_fault": "<code>"`` in place of ``"then"`` for a command that must fail with
    that ``DomainFault``, or ``"error": "<text>"`` for one that must raise any error whose
    text contains it.
    """
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    scenarios: Sequence[dict[str, Any]] = document["scenarios"] if isinstance(document, dict) else document
    probe = aggregate_factory("scenario", TestStore())
    registry = probe.get_event_registry()
    commands = probe.handled_commands()

    def event(spec: dict[str, Any], where: str) -> Any:
        created = registry.create_event(spec["type"], spec.get("data", {}))
        if isinstance(created, dict):
            raise ValueError(f"{where}: event type {spec['type']!r} is not registered")
        return created

    failures = []
    for index, spec in enumerate(scenarios):
        name = spec.get("name", f"scenario {index}")
        command_cls = commands.get(spec["when"]["type"])
        if command_cls is None:
            raise ValueError(f"{path}: {name}: no handler for command {spec['when']['type']!r}")
        scenario = (
            AggregateScenario(aggregate_factory, name=name)
            .given(*(event(e, f"{path}: {name}") for e in spec.get("given", [])))
            .when(build(command_cls, spec["when"].get("data", {})))
        )
        try:
            if "then_fault" in spec:
                scenario.then_fault(spec["then_fault"])
            elif "error" in spec:
                scenario.then_raises(Exception, match=re.escape(spec["error"]))
            else:
                scenario.then(*(event(e, f"{path}: {name}") for e in spec.get("then", [])))
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        raise AssertionError(
            f"{len(failures)} of {len(scenarios)} scenario(s) in {path} failed:\n" + "\n".join(failures)
        )
    return len(scenarios)
