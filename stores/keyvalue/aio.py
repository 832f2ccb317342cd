"""``AsyncKeyValueStore``: the key-value store for asyncio, on the same logic as the sync one.

Every decision (encoding, the snapshot policy, checks, how a refusal becomes a fault) is
``StoreLogic``'s, shared with ``KeyValueStore``; this class only awaits the driver calls
that logic asks for, on an async driver whose coroutine methods have the sync names.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

from kvsourcing.protocols import StoreLoaderAdapter, StoreWriterAdapter
from kvsourcing.steps import run_async
from kvsourcing.stores.keyvalue.driver import AsyncEventDriver
from kvsourcing.stores.keyvalue.store import KeyedEvent, StoreLogic
from kvsourcing.telemetry import traced_commit, traced_refresh


class AsyncKeyValueStore(StoreLogic[AsyncEventDriver]):
    """An async event store over an async key-value driver; ``async with`` closes it."""

    is_async: ClassVar[bool] = True

    @traced_commit
    async def commit_events(self, writer: StoreWriterAdapter) -> None:
        """See ``KeyValueStore.commit_events``."""
        commit = self._commit_of(writer)
        if commit is not None:
            refusal = await self._driver.append_many((commit,))
            if refusal is not None:
                self._refused((writer,), (commit,), refusal)

    @traced_commit
    async def commit_together(self, writers: Sequence[StoreWriterAdapter]) -> None:
        """See ``KeyValueStore.commit_together``."""
        prepared, commits = self._commits_of(writers)
        if commits:
            refusal = await self._driver.append_many(commits)
            if refusal is not None:
                self._refused(prepared, commits, refusal)

    @traced_refresh
    async def refresh(self, reader: StoreLoaderAdapter) -> None:
        """See ``StoreLogic.refresh_steps``."""
        await run_async(self.refresh_steps(reader), self._driver)

    async def read_events(self, key: str, after: int = 0) -> list[KeyedEvent]:
        """See ``StoreLogic.read_events_steps``."""
        return await run_async(self.read_events_steps(key, after), self._driver)

    async def read_snapshot(self, key: str) -> tuple[int, Any] | None:
        """See ``StoreLogic.read_snapshot_steps``."""
        return await run_async(self.read_snapshot_steps(key), self._driver)

    async def close(self) -> None:
        """Close the driver."""
        await self._driver.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
