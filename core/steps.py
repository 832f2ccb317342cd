"""Logic written once for sync and async callers, as generators of I/O calls (sans-IO).

A piece of logic that needs I/O is written as a generator: it yields ``Call``s (a method
name and its arguments), receives each call's result (or has its exception thrown in,
so its ``try``/``except`` rolls back as plain code would), and returns its result.
``run_sync`` performs the calls on a sync target, ``run_async`` awaits them on an async
one whose methods have the same names: the decisions exist in one copy only.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Call:
    """One I/O call a generator asks for: ``target.<name>(*args, **kwargs)``.

    Made on every store operation, so it is cheap to build: not frozen, and no keyword
    arguments is ``None`` rather than a new ``dict`` (a call without them is faster too).
    """

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None


Steps = Generator[Call, Any, T]
"""Logic that yields ``Call``s and returns a ``T``."""


def run_sync(steps: Steps[T], target: Any) -> T:
    """Run ``steps``, performing each call on ``target``; returns what ``steps`` returns."""
    try:
        call = next(steps)
        while True:
            try:
                method, kwargs = getattr(target, call.name), call.kwargs
                result = method(*call.args, **kwargs) if kwargs else method(*call.args)
            except BaseException as exc:
                call = steps.throw(exc)
            else:
                call = steps.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


async def run_async(steps: Steps[T], target: Any) -> T:
    """Run ``steps``, awaiting each call on ``target`` (whose methods are coroutines)."""
    try:
        call = next(steps)
        while True:
            try:
                method, kwargs = getattr(target, call.name), call.kwargs
                result = await (method(*call.args, **kwargs) if kwargs else method(*call.args))
            except BaseException as exc:
                call = steps.throw(exc)
            else:
                call = steps.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value
