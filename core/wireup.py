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
            hints = typing.get_type_hints(method)
        except (TypeError, ValueError, NameError):
            continue
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) != arity or len(params) != arity:
            continue
        target = hints.get(positional[-1].name)
        if isinstance(target, type) and target is not typing.Any:
            yield target, method
