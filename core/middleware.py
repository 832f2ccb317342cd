"""A store wrapper that runs commit and refresh through a chain of middleware."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kvsourcing.closing import ClosesOnExit
from kvsourcing.protocols import EventStore, StoreLoaderAdapter, StoreWriterAdapter
from kvsourcing.types import CloseMiddleware, CommitMiddleware, RefreshMiddleware


def _chain(
    middleware: list[Callable[[Any, Callable[[], None]], None]],
    adapter: Any,
    innermost: Callable[[], None],
) -> None:
    """Run ``middleware`` (the last added outermost) around ``innermost``."""
    call = innermost
    for mw in middleware:
        call = functools.partial(mw, adapter, call)
    call()


class EventStoreWithMiddleware(ClosesOnExit):
    """An ``EventStore`` whose commits and refreshes pass through middleware first."""

    def __init__(self, inner: EventStore) -> None:
        self._inner = inner
        self._commit: list[CommitMiddleware] = []
        self._refresh: list[RefreshMiddleware] = []
        self._cleanup: list[CloseMiddleware] = []

    @property
    def inner(self) -> EventStore:
        """The wrapped store."""
        return self._inner

    def use(
        self,
        commit: CommitMiddleware | None = None,
        refresh: RefreshMiddleware | None = None,
        cleanup: CloseMiddleware | None = None,
    ) -> None:
        """Add any of a commit middleware, a refresh middleware and a cleanup; ``None`` is skipped."""
        self.handle_cleanup(cleanup)
        self.handle_commit(commit)
        self.handle_refresh(refresh)

    def handle_commit(self, middleware: CommitMiddleware | None) -> None:
        """Add ``middleware(writer, next)``; the one added last runs first; ``None`` is skipped, as in Go."""
        if middleware is not None:
            self._commit.append(middleware)

    def handle_refresh(self, middleware: RefreshMiddleware | None) -> None:
        """Add ``middleware(reader, next)``; the one added last runs first; ``None`` is skipped."""
        if middleware is not None:
            self._refresh.append(middleware)

    def handle_cleanup(self, cleanup: CloseMiddleware | None) -> None:
        """Run ``cleanup()`` on ``close()``, in the order added, before the inner store closes;
        ``None`` is skipped."""
        if cleanup is not None:
            self._cleanup.append(cleanup)

    def commit_events(self, writer: StoreWriterAdapter) -> None:
        _chain(self._commit, writer, lambda: self._inner.commit_events(writer))

    def refresh(self, reader: StoreLoaderAdapter) -> None:
        _chain(self._refresh, reader, lambda: self._inner.refresh(reader))

    def close(self) -> None:
        """Run the cleanups in order, then close the inner store (even if a cleanup raised)."""
        try:
            for cleanup in self._cleanup:
                cleanup()
        finally:
            self._inner.close()


def new_middleware_wrapper(inner: EventStore) -> EventStoreWithMiddleware:
    """Wrap ``inner`` so that middleware can be added with ``use``/``handle_*``."""
    return EventStoreWithMiddleware(inner)
