"""The thin I/O under the Redis operations (``operations``): the calls their steps name,
on a sync redis-py client or awaited on a ``redis.asyncio`` one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster


class RedisIO:
    """The calls on a sync ``redis.Redis`` or ``redis.cluster.RedisCluster``."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self.client = client
        self.evalsha = client.evalsha
        self.script_load = client.script_load
        self.get = client.get
        self.mget = client.mget
        self.execute_command = client.execute_command

    def mget_nonatomic(self, keys: Sequence[bytes]) -> Any:
        return self.client.mget_nonatomic(keys)  # type: ignore[union-attr]

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies to ``commands``: one alone as it is, several in one pipeline (on a
        Cluster too, when they share a slot, hence a node)."""
        if len(commands) == 1:
            return [self.client.execute_command(*commands[0])]
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute())


class AsyncRedisIO:
    """The calls, as coroutines, on a ``redis.asyncio.Redis`` or ``RedisCluster``."""

    def __init__(self, client: AsyncRedis | AsyncRedisCluster) -> None:
        self.client = client
        self.evalsha = client.evalsha
        self.script_load = client.script_load
        self.get = client.get
        self.mget = client.mget
        self.execute_command = client.execute_command

    async def mget_nonatomic(self, keys: Sequence[bytes]) -> Any:
        return await self.client.mget_nonatomic(keys)  # type: ignore[union-attr]

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """See ``RedisIO.pipeline``."""
        if len(commands) == 1:
            return [await self.client.execute_command(*commands[0])]
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())
