"""``AggregateTester``: Go's ``utilities/test`` aggregate tester, on the same JSON files.

A file maps test names to tests::

    {"open and deposit": {"commands": [{"type": "Open", "data": {"owner": "ann"}},
                                       {"type": "Withdraw", "data": {"amount": 5},
                                        "error": "insufficient-funds"}],
                          "inherit": "another test of the file",
                          "expect": {"owner": "ann", "balance": 0}}}

so a Go project's test files run unchanged. As in Go, data keys and ``expect`` keys match
fields by name, then case-insensitively (``"Balance"`` finds ``balance``, and
``"TotalAmount"`` finds ``total_amount``), and the state is compared as a whole: what
``expect`` leaves out must equal a new aggregate's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from kvsourcing.config import open_store
from kvsourcing.protocols import EventStore
from kvsourcing.structure import public_attributes
from kvsourcing.testing.scenario import AggregateFactory


class CommandSource(Protocol):
    """What the tester needs of a command registry (``StandardCommandRegistry`` is one)."""

    def create_command(self, command_type: str, data: Mapping[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class AggregateTestCommand:
    """One step: the command ``type`` built from ``data``; ``error``, when set, is text the
    error it raises must contain (Go's ``AggregateTestCommand``)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class AggregateTest:
    """One test: its ``commands``, the test it ``inherit``s, and the ``expect``ed state."""

    commands: list[AggregateTestCommand] = field(default_factory=list)
    inherit: str = ""
    expect: dict[str, Any] | None = None


def _fold(name: str) -> str:
    return name.replace("_", "").lower()


def _match(name: str, names: list[str]) -> str | None:
    """``name`` as one of ``names``: itself, else the one equal to it ignoring case and ``_``."""
    if name in names:
        return name
    return next((candidate for candidate in names if _fold(candidate) == _fold(name)), None)


def _plain(value: Any) -> Any:
    """``value`` as JSON would hold it, so that it compares with ``expect``."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in public_attributes(value).items()}
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _merge(base: Any, overlay: Any, where: str) -> Any:
    """``overlay`` decoded onto ``base`` as Go's mapstructure does: mappings field by field."""
    if not (isinstance(base, dict) and isinstance(overlay, dict)):
        return overlay
    merged = dict(base)
    for name, value in overlay.items():
        target = _match(name, list(base))
        if target is None:
            known = ", ".join(base) or "none"
            raise AssertionError(
                f"expect names {where}{name!r}, which the state does not have (it has {known})"
            )
        merged[target] = _merge(base[target], value, f"{where}{target}.")
    return merged


def _differences(expected: Any, actual: Any, where: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict) and set(expected) == set(actual):
        return [
            line
            for name in expected
            for line in _differences(expected[name], actual[name], f"{where}{name}.")
        ]
    if expected == actual:
        return []
    return [f"{where.rstrip('.') or 'state'}: expected {expected!r}, got {actual!r}"]


def _parameter_names(cls: type) -> list[str]:
    try:
        return list(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return []


class AggregateTester:
    """Runs Go-format aggregate test files against ``aggregate_factory(key, store)``, creating
    each command with ``commands`` (a ``CommandRegistry`` whose ``create_command`` takes the
    step's data, as ``StandardCommandRegistry``'s does)."""

    def __init__(self, commands: CommandSource, aggregate_factory: AggregateFactory) -> None:
        self._commands = commands
        self._factory = aggregate_factory

    def run_recursive(self, path: str | os.PathLike[str]) -> int:
        """Run every test of every ``.json`` file under ``path`` (a folder, or one file), in
        name order; returns how many ran. Raises ``AssertionError`` listing each failed test
        with its file, or when no file was found."""
        root = Path(path)
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".json")
        else:
            raise FileNotFoundError(f"no such file or folder of aggregate tests: {root}")
        if not files:
            raise AssertionError(f"no .json aggregate test files under {root}")
        failures: list[str] = []
        count = 0
        for file in files:
            tests = self.load_tests_from_file(file)
            for name in tests:
                count += 1
                try:
                    self.run(name, tests, source=str(file))
                except AssertionError as failure:
                    failures.append(str(failure))
        if failures:
            raise AssertionError(
                f"{len(failures)} of {count} aggregate test(s) failed:\n" + "\n".join(failures)
            )
        return count

    @staticmethod
    def load_tests_from_file(path: str | os.PathLike[str]) -> dict[str, AggregateTest]:
        """The tests of one file, by name; ``ValueError`` naming the file when it is not in
        Go's format."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON ({err})") from None
        if not isinstance(document, dict):
            raise ValueError(f"{path}: expected an object mapping test names to tests")
        return {name: _parse_test(path, name, spec) for name, spec in document.items()}

    def run(self, name: str, tests: Mapping[str, AggregateTest], source: str = "<tests>") -> None:
        """Run test ``name`` of ``tests`` on a new memory store; ``AssertionError`` naming
        ``source`` and the test when it fails."""
        key = f"aggregate-test-{uuid.uuid4()}"
        with open_store("memory://") as store:
            try:
                self._run(name, tests, key, store, ())
            except AssertionError as failure:
                raise AssertionError(f"{source}: test {name!r}: {failure}") from None

    def _run(
        self,
        name: str,
        tests: Mapping[str, AggregateTest],
        key: str,
        store: EventStore,
        chain: tuple[str, ...],
    ) -> None:
        test = tests[name]
        if test.inherit:
            if test.inherit not in tests:
                raise AssertionError(f"inherits {test.inherit!r}, which the file does not define")
            if test.inherit in chain or test.inherit == name:
                raise AssertionError(f"inherits in a cycle: {' -> '.join((*chain, name, test.inherit))}")
            self._run(test.inherit, tests, key, store, (*chain, name))
        where = f" (inherited by {chain[0]!r})" if chain else ""
        for number, step in enumerate(test.commands, start=1):
            command = self._create(step)
            try:
                self._factory(key, store).handle(command)
            except Exception as err:
                if step.error and step.error in str(err):
                    continue
                wanted = f"; expected an error containing {step.error!r}" if step.error else ""
                raise AssertionError(
                    f"{name}{where}: command {number} ({step.type}) raised "
                    f"{type(err).__name__}: {err}{wanted}"
                ) from err
            if step.error:
                raise AssertionError(
                    f"{name}{where}: command {number} ({step.type}) succeeded; expected an error "
                    f"containing {step.error!r}"
                )
        if test.expect is not None:
            self._check_state(key, store, test.expect)

    def _create(self, step: AggregateTestCommand) -> Any:
        data = dict(step.data)
        command_class = getattr(self._commands, "command_class", None)
        cls = command_class(step.type) if callable(command_class) else None
        if isinstance(cls, type):
            names = _parameter_names(cls)
            data = {(_match(k, names) or k): v for k, v in data.items()}
        try:
            return self._commands.create_command(step.type, data)
        except Exception as err:
            raise AssertionError(f"command {step.type} could not be built from {step.data!r}: {err}") from err

    def _check_state(self, key: str, store: EventStore, expect: dict[str, Any]) -> None:
        reloaded = self._factory(key, store)
        reloaded.refresh()
        actual = _plain(public_attributes(reloaded.state()))
        with open_store("memory://") as empty:
            baseline = _plain(public_attributes(self._factory(key, empty).state()))
        expected = _merge(baseline, _plain(expect), "")
        differences = _differences(expected, actual)
        if differences:
            raise AssertionError("state did not match expected: " + "; ".join(differences))


def _parse_test(path: str | os.PathLike[str], name: str, spec: Any) -> AggregateTest:
    where = f"{path}: test {name!r}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected an object with commands, inherit and expect")
    commands = spec.get("commands") or []
    inherit = spec.get("inherit") or ""
    expect = spec.get("expect")
    if not isinstance(commands, list) or not isinstance(inherit, str):
        raise ValueError(f"{where}: commands must be a list and inherit a test name")
    if expect is not None and not isinstance(expect, dict):
        raise ValueError(f"{where}: expect must be an object of the state's fields")
    steps = []
    for number, step in enumerate(commands, start=1):
        if not isinstance(step, dict) or not isinstance(step.get("type"), str):
            raise ValueError(f"{where}: command {number} must be an object with a type")
        data, error = step.get("data") or {}, step.get("error") or ""
        if not isinstance(data, dict) or not isinstance(error, str):
            raise ValueError(f"{where}: command {number}: data must be an object and error a string")
        steps.append(AggregateTestCommand(step["type"], data, error))
    return AggregateTest(steps, inherit, expect)
