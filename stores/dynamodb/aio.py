"""``AsyncDynamoDBDriver``: ``DynamoDBDriver`` for asyncio, on an aiobotocore client.

It awaits the same flows (``steps.run_async``), on the same data. An aiobotocore client is
an async context manager, so a client the driver makes is entered on its first call (a
store is made by a plain function, outside any event loop) and exited by ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, TypeVar

from kvsourcing.config import redact_url
from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.dynamodb import flows
from kvsourcing.stores.dynamodb.driver import DynamoDBBase
from kvsourcing.stores.dynamodb.steps import Flow, run_async
from kvsourcing.stores.dynamodb.url import CLIENT_SETTINGS, without_userinfo
from kvsourcing.stores.keyvalue.base import AsyncDriverBase
from kvsourcing.stores.keyvalue.records import Commit, FeedEntry, Loaded, Refusal

T = TypeVar("T")


def check_aiobotocore() -> None:
    """``ConfigurationError`` unless aiobotocore is installed."""
    try:
        import aiobotocore  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "the async DynamoDB store needs aiobotocore: pip install 'kvsourcing[aio]'"
        ) from None


def make_async_client(region: str | None = None, endpoint_url: str | None = None) -> Any:
    """``make_client`` for asyncio: an aiobotocore client context (``async with`` it), with
    the usual credential chain and standard retry mode, on a session of its own."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    if endpoint_url is not None:
        endpoint_url = without_userinfo(endpoint_url)
    return get_session().create_client(
        "dynamodb", region_name=region, endpoint_url=endpoint_url, config=AioConfig(**CLIENT_SETTINGS)
    )


class AsyncDynamoDBDriver(DynamoDBBase, AsyncDriverBase):
    """The driver on ``client``, an aiobotocore DynamoDB client; without one, it makes its
    own (``make_async_client(region, endpoint_url)``) on first use and closes it on
    ``close``. The other arguments are ``DynamoDBBase``'s. ``read_feed`` polls: ``wait`` is
    ignored."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        **settings: Any,
    ) -> None:
        check_aiobotocore()
        super().__init__(table_name, owns_client=client is None, **settings)
        self.client = client
        self.region = region
        self.given_endpoint = None if endpoint_url is None else without_userinfo(endpoint_url)
        self._exits = contextlib.AsyncExitStack()
        self._opening = asyncio.Lock()

    def endpoint_url(self) -> str | None:
        if self.client is None:
            return self.given_endpoint
        endpoint: str | None = self.client.meta.endpoint_url
        return endpoint

    async def _connected(self) -> Any:
        """The client, made and entered first if the driver owns it."""
        async with self._opening:
            if self.client is None:
                try:
                    made = make_async_client(self.region, self.given_endpoint)
                    self.client = await self._exits.enter_async_context(made)
                except ValueError as err:
                    shown = redact_url(self.given_endpoint or "")
                    raise ConfigurationError(f"invalid DynamoDB endpoint_url {shown!r}: {err}") from None
        return self.client

    async def close_client(self) -> None:
        await self._exits.aclose()

    async def _run(self, flow: Flow[T]) -> T:
        with self.served():
            client = self.client if self.client is not None else await self._connected()
            return await run_async(flow, client)

    async def append_many(self, commits: Sequence[Commit]) -> Refusal | None:
        return await self._run(self.append_flow(commits))

    async def load(
        self, key: str, after: int, *, use_snapshot: bool = True, commit_id: str | None = None,
        metadata: bool = False,
    ) -> Loaded:  # fmt: skip
        flow = self.load_flow(key, after, use_snapshot=use_snapshot, commit_id=commit_id, metadata=metadata)
        return await self._run(flow)

    async def read_feed(
        self, after: dict[int, str | None], limit: int, *, wait: float = 0.0
    ) -> list[FeedEntry]:
        """See ``DynamoDBBase.read_feed_flow``."""
        return await self._run(self.read_feed_flow(after, limit))

    async def trim_feed(self, bucket: int, checkpoints: Sequence[str]) -> int:
        """See ``DynamoDBBase.trim_feed_flow``."""
        return await self._run(self.trim_feed_flow(bucket, checkpoints))

    async def read_value(self, name: str) -> bytes | None:
        return await self._run(flows.read_value(self.table_name, name))

    async def read_values(self, names: Sequence[str]) -> list[bytes | None]:
        return await self._run(flows.read_values(self.table_name, names))

    async def swap_value(
        self, name: str, expected: bytes | None, new: bytes | None, ttl: float | None = None
    ) -> bool:
        return await self._run(self.swap_value_flow(name, expected, new, ttl))
