"""Finding ``<prefix>_*`` methods by name and by the type annotation of their last parameter.

Shared by aggregates (``replay_*``, ``handle_*``) and event handlers (``handle_*``).
A prefixed method of another shape is skipped, as the Go package does; one of the wired
shape whose parameter has no annotation raises ``WireupError``, since Python (unlike Go)
cannot otherwise tell which class it takes, and skipping it would lose its events silently.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any

from kvsourcing.errors import WireupError


def prefixed_methods(
    subject: Any, prefix: str, arity: int, skip: frozenset[str] = frozenset()
) -> Iterator[tuple[type, Callable[..., Any]]]:
    """Yield ``(annotated class, bound method)`` for each method of ``subject`` named
    ``<prefix>_*`` taking exactly ``arity`` positional parameters, the last annotated
    with a class (string annotations included). The search is made once per class.

    Raises ``WireupError`` for a method of that shape whose last parameter has no annotation."""
    for target, name in _wired_names(subject.__class__, prefix, arity, skip):
        yield target, getattr(subject, name)


@functools.cache
def _wired_names(cls: type, prefix: str, arity: int, skip: frozenset[str]) -> tuple[tuple[type, str], ...]:
    found: list[tuple[type, str]] = []
    for name in dir(cls):
        if not name.startswith(prefix + "_") or name in skip:
            continue
        attribute = inspect.getattr_static(cls, name, None)
        expected = arity if isinstance(attribute, staticmethod) else arity + 1  # self or cls first
        if isinstance(attribute, (staticmethod, classmethod)):
            attribute = attribute.__func__
        if not inspect.isfunction(attribute):
            continue
        try:
            params = list(inspect.signature(attribute).parameters.values())
        except (TypeError, ValueError):
            continue
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) != expected or len(params) != expected:
            continue
        if positional[-1].annotation is inspect.Parameter.empty:
            raise WireupError(
                f"{cls.__qualname__}.{name} is named and shaped like a wired {prefix}_* method, but its "
                f"parameter {positional[-1].name!r} has no type annotation, so kvsourcing cannot tell "
                f"which class it takes: annotate it with that class (for example "
                f"'{positional[-1].name}: SomeEvent'), or rename the method"
            )
        target = _parameter_hint(attribute, positional[-1].name)
        if isinstance(target, type) and target is not typing.Any:
            found.append((target, name))
    return tuple(found)


def _parameter_hint(method: Callable[..., Any], name: str) -> Any:
    """The evaluated annotation of parameter ``name``, or ``None``; only that one need resolve,
    so a return annotation naming a ``TYPE_CHECKING``-only import does not hide the method."""
    try:
        return typing.get_type_hints(method).get(name)
    except (TypeError, ValueError, NameError):
        pass
    func = getattr(method, "__func__", method)
    hint = getattr(func, "__annotations__", {}).get(name)
    if isinstance(hint, str):
        try:
            hint = eval(hint, getattr(func, "__globals__", {}))
        except Exception:
            return None
    return hint
