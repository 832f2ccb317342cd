"""redis-py's failures as the library's errors: the one translation every Redis call goes
through (``RedisDriver.translate``, behind ``DriverBase.served``), and the URL parser's."""

from __future__ import annotations

import re
from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kvsourcing.errors import ConfigurationError, KvSourcingError, StoreUnavailableError

CLIENT_ERRORS = (RedisError, RedisClusterException)
"""Every exception redis-py raises (``DriverBase.client_errors``)."""

# Failures that mean "the server cannot serve us now", as opposed to a bug or bad data:
# OOM, a server at its maxmemory that refuses writes; READONLY, a primary demoted to
# replica by a failover, until the client reconnects; ClusterError, redis-py's cluster
# client gave up following redirections, as while slots migrate; RedisClusterException,
# it reached no node that could serve, as when every node is down or the slot maps it
# read do not cover or agree (SlotNotCoveredError included). Its other uses, keys of
# several slots in one call, cannot arise from the driver's calls: ``protocol`` refuses
# them first (``CrossPartitionError``).
UNAVAILABLE = (
    OutOfMemoryError,
    ClusterError,
    RedisConnectionError,
    RedisTimeoutError,
    NoPermissionError,
    ReadOnlyError,
    ClusterDownError,
    RedisClusterException,
)

UNAVAILABLE_REPLY = re.compile(r"(?:^|: )(?:NOREPLICAS|MISCONF|BUSY) ")
"""Error replies that redis-py raises as a plain ``ResponseError`` but that mean the server
refuses for now, having written nothing: NOREPLICAS, a primary with ``min-replicas-to-write``
that has too few replicas in sync (as once its replica was promoted away); MISCONF, a
server that cannot persist; BUSY, a server running a long script. Matched at the start,
or after the ``: `` with which Redis before 7 wraps an error raised inside a script."""

WRONGTYPE_REPLY = re.compile(r"(?:^|: )WRONGTYPE ")
"""The reply to a command on a key holding another type of value (in a script too)."""


def describe_client(client: Any) -> str:
    """``host:port`` (or the socket path, or every startup node) the client (sync or
    asyncio) talks to."""
    if isinstance(client, RedisCluster | AsyncRedisCluster):
        return ",".join(node.name for node in client.nodes_manager.startup_nodes.values())
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def client_password(client: Any) -> str | None:
    """The password the client sends, so that messages can be scrubbed of it."""
    if isinstance(client, RedisCluster | AsyncRedisCluster):
        password: str | None = client.nodes_manager.connection_kwargs.get("password")
    else:
        password = client.connection_pool.connection_kwargs.get("password")
    return password


def unavailable(where: str, err: BaseException, password: str | None) -> StoreUnavailableError:
    """A ``StoreUnavailableError`` naming the server and the cause, never the password."""
    cause = f"{type(err).__name__}: {err}"
    if password:
        cause = cause.replace(password, "***")
    return StoreUnavailableError(f"Redis at {where} is unavailable: {cause}")


def translate_error(
    err: BaseException, *, where: str, password: str | None, prefix: str
) -> KvSourcingError | None:
    """The library's error for a redis-py failure: ``StoreUnavailableError`` when the server
    cannot serve now, ``ConfigurationError`` when the store is pointed at the wrong place (a
    database the server lacks, keys of another application under the prefix); ``None`` for
    any other error reply (a bug), to be raised as redis-py gives it."""
    if isinstance(err, UNAVAILABLE):
        return unavailable(where, err, password)
    if not isinstance(err, ResponseError):
        return None
    message = str(err)
    if UNAVAILABLE_REPLY.search(message):
        return unavailable(where, err, password)
    if WRONGTYPE_REPLY.search(message):
        return ConfigurationError(
            f"Redis at {where}: a key under the prefix {prefix!r} holds a value of another type "
            f"({message}); another application writes there: give the store a prefix of its own"
        )
    if "DB index is out of range" in message:
        return ConfigurationError(
            f"Redis at {where} has no such database ({message}): use one it has "
            "(0-15 unless its 'databases' setting says otherwise)"
        )
    return None
