"""kvsourcing for asyncio: the same stores, URLs, options and data, awaited.

An aggregate bound to a store from here uses ``await agg.ahandle(command)``,
``await agg.arefresh()`` and ``await agg.acommit()``; its domain methods (``replay_*``,
``handle_*``) stay plain functions. The logic is the sync API's, shared (see
``kvsourcing.steps``): only the I/O is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

from kvsourcing.aggregate import AggregateBase
from kvsourcing.config import store_module, with_environment_cipher
from kvsourcing.retry import Backoff, retry_steps
from kvsourcing.steps import run_async
from kvsourcing.together import together_steps

if TYPE_CHECKING:
    from kvsourcing.stores.keyvalue.aio import AsyncKeyValueStore

__all__ = ["commit_together", "open_store", "retry"]

T = TypeVar("T")


@contextlib.asynccontextmanager
async def open_store(url: str | None = None, **options: Any) -> AsyncIterator[AsyncKeyValueStore]:
    """``async with open_store(url, **options) as store``: the async store of ``url``
    (``KVSOURCING_STORE`` when ``None``), on the same URLs and options as
    ``kvsourcing.open_store``; closed on the way out."""
    module, url = store_module(url)
    store = await module.open_async(url, **with_environment_cipher(options))
    async with store:
        yield store


async def commit_together(*aggregates: AggregateBase, commit_id: str | None = None) -> None:
    """``kvsourcing.commit_together`` for aggregates bound to one async store."""
    steps, store = together_steps(aggregates, commit_id)
    if steps is not None:
        await run_async(steps, store)


async def retry(limit: int, body: Callable[[], Awaitable[T]], backoff: Backoff | None = None) -> T:
    """``kvsourcing.retry`` for coroutines: awaits ``body()`` until it returns without raising
    ``ConcurrencyFault``, at most ``limit`` times, sleeping ``backoff(n)`` between tries."""
    target = SimpleNamespace(body=body, sleep=asyncio.sleep)
    result: T = await run_async(retry_steps(limit, backoff), target)
    return result


def __getattr__(name: str) -> Any:
    if name == "FeedConsumer":
        return importlib.import_module("kvsourcing.stores.keyvalue.aio_consumer").AsyncFeedConsumer
    raise AttributeError(f"module 'kvsourcing.aio' has no attribute {name!r}")
