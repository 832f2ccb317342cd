"""Waiting on Redis for new feed entries, so that a consumer hears of a commit at once:
the decisions, written once for the sync driver and the asyncio one.

On a single node, ``XREAD ... BLOCK`` waits server-side on every bucket's stream at once
(``blocking``). A Cluster refuses a command whose keys span hash slots, even on one node,
and each bucket has a slot of its own, so there a waker keeps one connection per primary
that asks for client-side-caching invalidations in broadcast mode (``CLIENT TRACKING ON
BCAST PREFIX {<prefix>:b``, Redis 6 and later, no server setting needed): the node then
names every key under that prefix that a write changed, the waker notes whose bucket
feeds they are, and a reader waits until one of its buckets changed, then reads again.
As it hears of every change, it also knows which buckets a read found at their end and
nothing has written to since: the next read skips them, so a read costs what the active
buckets cost, not one ``XRANGE`` for each of the (by default 1 024) buckets. Compared in
``bench/feed_bench.py`` with polling.

A waker runs ``listen_steps`` for each primary and ``waiting_read_steps`` for each read
(``kvsourcing.steps``) over the ``BucketChanges`` they share: ``waker.FeedWaker`` on
threads, ``aio_waker.AsyncFeedWaker`` as tasks on the event loop.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from kvsourcing.steps import Call, Steps

log = logging.getLogger("kvsourcing.redis")

INVALIDATE = b"__redis__:invalidate"
"""The channel on which a RESP2 connection receives the invalidations redirected to it."""

RETRY_SECONDS = 1.0
"""How long a listener waits before connecting again to a node it lost, and at most for
a message before it looks whether its waker was closed."""

POLL_SECONDS = 0.2
"""How often a waiting reader reads again while some node is not heard: its listener lost
it, or the server refuses the listener's commands (an ACL user without ``+client|id
+client|tracking +subscribe &__redis__:invalidate``)."""

READY_SECONDS = 2.0
"""How long a waker's ``mark`` waits for new listeners to subscribe (a wait that starts
before they have just wakes at its timeout, as a poll would)."""


def block_milliseconds(client: Any, wait: float) -> int:
    """``wait`` seconds as ``XREAD BLOCK`` milliseconds: at least 1 (``BLOCK 0`` waits for
    ever), and at most half the client's socket timeout, which would end a longer wait
    as a failure."""
    timeout = socket_timeout(client)
    if timeout:
        wait = min(wait, timeout / 2)
    return max(1, math.ceil(wait * 1000))


def socket_timeout(client: Any) -> float | None:
    """The client's ``socket_timeout``: the one it was given, else its connections' default
    (none before redis-py 8, 5 seconds since)."""
    pool = client.connection_pool
    if "socket_timeout" in pool.connection_kwargs:
        given: float | None = pool.connection_kwargs["socket_timeout"]
        return given
    for cls in pool.connection_class.__mro__:
        init = cls.__dict__.get("__init__")
        parameter = inspect.signature(init).parameters.get("socket_timeout") if init else None
        if parameter is not None:
            default: float | None = parameter.default
            return default
    return None


def blocking(xread: list[Any], milliseconds: int) -> list[Any]:
    """``XREAD COUNT <n> STREAMS ...`` made to block ``milliseconds`` when nothing is new."""
    if xread[:2] != ["XREAD", "COUNT"]:
        raise ValueError(f"not an XREAD COUNT command: {xread[:3]!r}")
    return [*xread[:3], "BLOCK", milliseconds, *xread[3:]]


Replies = list[tuple[int, Any]]
"""``(bucket, stream entries)`` of every bucket a read asked for."""

Read = Callable[[dict[int, str | None], int], Replies]
"""A read of ``(after, limit)``."""


class BucketChanges:
    """What a waker knows of its Cluster's feeds, with no I/O (the sync waker holds its lock
    around every call): ``feeds`` maps each feed stream's key to its bucket.

    Every change heard moves ``generation``; each bucket keeps the generation of its last
    change, and ``everything_changed`` that of the last change of all of them (a listener
    subscribing or losing its node: what was written meanwhile is unknown; a flush). A
    read notes the buckets it found at their end, with the generation it began after.
    """

    def __init__(self, feeds: Mapping[bytes, int]) -> None:
        self.feeds = feeds
        self.generation = 0
        self.everything_changed = 0
        self.changed: dict[int, int] = {}
        self.quiet: dict[int, tuple[str | None, int]] = {}
        self.listening: set[str] = set()
        self.heard: set[str] = set()

    def to_listen(self, primaries: Iterable[str]) -> list[str]:
        """The primaries not listened to yet, counted as listened to from now (the caller
        starts their listeners)."""
        new = [name for name in primaries if name not in self.listening]
        self.listening.update(new)
        return new

    def hears(self, names: Collection[str]) -> bool:
        return self.heard.issuperset(names)

    def to_read(self, after: dict[int, str | None]) -> dict[int, str | None]:
        """The buckets of ``after`` but those that a read found at their end at the same
        position and that nothing has changed since (trusted only while every node is heard)."""
        if self.heard != self.listening:
            return after
        return {b: position for b, position in after.items() if not self._quiet_at(b, position)}

    def _quiet_at(self, bucket: int, position: str | None) -> bool:
        quiet = self.quiet.get(bucket)
        return (
            quiet is not None
            and quiet[0] == position
            and self.everything_changed <= quiet[1]
            and self.changed.get(bucket, 0) <= quiet[1]
        )

    def note_read(self, asked: dict[int, str | None], replies: Replies, limit: int, since: int) -> None:
        """Note the buckets that a read begun after generation ``since`` found at their end."""
        for bucket, entries in replies:
            if len(entries) < limit:
                end = entries[-1][0] if entries else asked[bucket]
                self.quiet[bucket] = (end.decode() if isinstance(end, bytes) else end, since)

    def changed_since(self, buckets: Collection[int], since: int) -> bool:
        return self.everything_changed > since or any(self.changed.get(b, 0) > since for b in buckets)

    def wait_seconds(self, timeout: float) -> float:
        """How long a reader may wait for a change: ``timeout``, or ``POLL_SECONDS`` at most
        while some node is not heard."""
        return timeout if self.heard == self.listening else min(timeout, POLL_SECONDS)

    def subscribed(self, name: str) -> None:
        self.heard.add(name)
        self._everything()

    def lost(self, name: str) -> None:
        self.heard.discard(name)
        self._everything()

    def forget(self, name: str) -> None:
        """``name`` is no longer a primary: its listener ends (a new one starts if it is again)."""
        self.listening.discard(name)

    def _everything(self) -> None:
        self.generation += 1
        self.everything_changed = self.generation

    def note(self, message: Any) -> bool:
        """Note the buckets whose feed an invalidation message names (``None``: all, a flush);
        whether it named any."""
        if not isinstance(message, list) or len(message) != 3 or message[0] != b"message":
            return False
        keys = message[2]
        if keys is None:
            self._everything()
            return True
        buckets = [bucket for bucket in map(self.feeds.get, keys) if bucket is not None]
        if not buckets:
            return False
        self.generation += 1
        for bucket in buckets:
            self.changed[bucket] = self.generation
        return True


def waiting_read_steps(after: dict[int, str | None], limit: int, wait: float) -> Steps[Replies]:
    """``read_buckets(after, limit)``, skipping buckets known to hold nothing new, and if it
    finds nothing, waiting up to ``wait`` seconds for a change and reading again. Each round
    first marks the generation of changes heard (``mark``, which also listens to new
    primaries), so that a commit between the read and the wait ends the wait."""
    deadline = time.monotonic() + wait
    while True:
        since, asked = yield Call("mark", (after,))
        replies = (yield Call("read_buckets", (asked, limit))) if asked else []
        yield Call("note_read", (asked, replies, limit, since))
        remaining = deadline - time.monotonic()
        if remaining <= 0 or any(entries for _, entries in replies):
            return replies
        yield Call("wait", (after, since, remaining))


def listen_steps(name: str, prefix: bytes) -> Steps[None]:
    """Primary ``name``'s listener: on a connection of its own (RESP2, where invalidations
    come as messages), track the keys under ``prefix`` and note every invalidation, until
    the waker is closed. On any failure it warns once (readers poll meanwhile) and connects
    again after ``RETRY_SECONDS``; it ends when ``name`` is no longer a primary."""
    warned = False
    while not (yield Call("closed")):
        try:
            yield Call("connect", (name,))
            own_id = yield Call("command", (name, "CLIENT", "ID"))
            tracking = ("CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST", "PREFIX", prefix)
            yield Call("command", (name, *tracking))
            yield Call("command", (name, "SUBSCRIBE", INVALIDATE))
            yield Call("subscribed", (name,))
            warned = False
            while not (yield Call("closed")):
                message = yield Call("receive", (name, RETRY_SECONDS))
                if message is not None:
                    yield Call("note", (message,))
        except Exception as err:
            if not warned and not (yield Call("closed")):
                warned = True
                log.warning(
                    "feed consumers cannot hear Redis node %s (%s): they read every %s s until they do",
                    name,
                    err,
                    POLL_SECONDS,
                )
        yield Call("disconnect", (name,))
        yield Call("lost", (name,))
        if not (yield Call("is_primary", (name,))):
            yield Call("forget", (name,))
            return
        yield Call("pause", (RETRY_SECONDS,))
