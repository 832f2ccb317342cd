"""Finding ``<prefix>_*`` methods by name and by the type annotation of their last parameter.

Shared by aggregates (``replay_*``, ``handle_*``) and event handlers (``handle_*``).
A prefixed method of another shape is skipped, as the Go package does.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any


def prefixed_methods(
    subject: Any, prefix: str, arity: int, skip: frozenset[str] = frozenset()
) -> Iterator[tuple[type, Callable[..., Any]]]:
    """Yield ``(annotated class, bound method)`` for each method of ``subject`` named
    ``<prefix>_*`` taking exactly ``arity`` positional parameters, the last annotated
    with a class (string annotations included)."""
    for name in dir(type(subject)):
        if not name.startswith(prefix + "_") or name in skip:
            continue
        method = getattr(subject, name, None)
        if not callable(method):
            continue
        try:
            params = list(inspect.signature(method).parameters.values())
        except (TypeError, ValueError):
            continue
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) != arity or len(params) != arity:
            continue
        target = _parameter_hint(method, positional[-1].name)
        if isinstance(target, type) and target is not typing.Any:
            yield target, method


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
