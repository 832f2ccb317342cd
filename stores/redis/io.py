"""The thin I/O under the Redis operations (``operations``): the calls their steps name,
on a sync redis-py client or awaited on a ``redis.asyncio`` one.

``script`` runs a script by its SHA1 and, on NOSCRIPT (a new, flushed or failed-over
server), loads it and runs it again, as redis-py's ``Script.__call__`` does (which would
cost a tenth of a small commit more): each twin has its three lines of it, so that an
append, one call on every commit, runs no steps (``operations``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from kvsourcing.stores.redis.scripts import LuaScript


class RedisIO:
    """The calls on a sync ``redis.Redis`` or ``redis.cluster.RedisCluster``."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self.client = client
        self.get = client.get
        self.mget = client.mget
        self.execute_command: Callable[..., Any] = client.execute_command

    def script(self, script: LuaScript, command: Sequence[Any]) -> Any:
        """The reply of ``script`` run by ``EVALSHA`` with ``command`` (its SHA1, the number of
        KEYS, KEYS, ARGV: ``protocol``), loaded and run again on NOSCRIPT (``execute_command``
        itself: ``client.evalsha`` adds two calls)."""
        try:
            return self.execute_command("EVALSHA", *command)
        except NoScriptError:
            self.client.script_load(script.source)
            return self.execute_command("EVALSHA", *command)

    def mget_nonatomic(self, keys: Sequence[bytes]) -> Any:
        return self.client.mget_nonatomic(keys)  # type: ignore[union-attr]

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies to ``commands``: one alone as it is, several in one pipeline (on a
        Cluster too, when they share a slot, hence a node)."""
        if len(commands) == 1:
            return [self.client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute())


class AsyncRedisIO:
    """The calls, as coroutines, on a ``redis.asyncio.Redis`` or ``RedisCluster``.

    Scripts and reads that coroutines send in the same turn of the event loop go out
    together, in one pipeline on one connection (auto-pipelining, as Lettuce and ioredis
    do): each still runs on its own on the server and gets its own reply or error, but a
    hundred concurrent commits cost one write and one read instead of a hundred of each.
    """

    def __init__(self, client: AsyncRedis | AsyncRedisCluster) -> None:
        self.client = client
        self.get = client.get
        self.mget = client.mget
        self.execute_command = client.execute_command
        self._queued: list[tuple[Sequence[Any], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def script(self, script: LuaScript, command: Sequence[Any]) -> Any:
        """See ``RedisIO.script``: the ``EVALSHA`` goes out with whatever else is queued."""
        try:
            return await self._queue(("EVALSHA", *command))
        except NoScriptError:
            await self.client.script_load(script.source)
            return await self._queue(("EVALSHA", *command))

    async def mget_nonatomic(self, keys: Sequence[bytes]) -> Any:
        return await self.client.mget_nonatomic(keys)  # type: ignore[union-attr]

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """See ``RedisIO.pipeline``: the commands go out with whatever else is queued."""
        return list(await asyncio.gather(*(self._queue(command) for command in commands)))

    def _queue(self, command: Sequence[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        reply = loop.create_future()
        self._queued.append((command, reply))
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        return reply

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Sequence[Any], asyncio.Future[Any]]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for command, _ in batch:
            pipe.execute_command(*command)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, reply in batch:
                if not reply.done():
                    reply.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, reply), value in zip(batch, replies, strict=True):
            if reply.done():
                continue
            if isinstance(value, Exception):
                reply.set_exception(value)
            else:
                reply.set_result(value)
