"""Type aliases and constants carried over from the Go package's names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NewType

HANDLE_METHOD_PREFIX = "handle"
REPLAY_METHOD_PREFIX = "replay"
EVENT_HANDLE_METHOD_PREFIX = "handle"

Command = Any
Event = Any
CommandType = NewType("CommandType", str)
EventType = NewType("EventType", str)
StateFetchFunc = Callable[[], Any]
NextHandler = Callable[[], None]
CommitMiddleware = Callable[[Any, NextHandler], None]
RefreshMiddleware = Callable[[Any, NextHandler], None]
CloseMiddleware = Callable[[], None]
MiddlewareFactory = Callable[
    [], tuple[CommitMiddleware | None, RefreshMiddleware | None, CloseMiddleware | None]
]
CommandHandleFunc = Callable[[Command], list[Event]]
EventDetector = Callable[[Any], bool]
EventFactory = Callable[[Any], Event]


def normalize_type_name(name: str) -> str:
    """Drop the module path from a type name: ``"pkg.mod.Foo"`` → ``"Foo"``."""
    return name.rsplit(".", 1)[-1].lstrip("*")
