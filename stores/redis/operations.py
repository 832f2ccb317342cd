"""The Redis driver's operations as steps (``kvsourcing.steps``): which commands to send,
in which order, and how to read what comes back, with no I/O.

``RedisDriver`` runs them on a sync client (``io.RedisIO``), ``AsyncRedisDriver`` awaits
them on a ``redis.asyncio`` client (``io.AsyncRedisIO``): one copy of the logic serves both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from kvsourcing.steps import Call, Steps
from kvsourcing.stores.keyvalue import Commit, Loaded, Refusal, Snapshot
from kvsourcing.stores.redis.keys import Layout
from kvsourcing.stores.redis.protocol import (
    ScriptCall,
    append_call,
    load_call,
    load_reads,
    parse_load,
    parse_reads,
    parse_refusal,
    rewrite_call,
    swap_call,
)


class Settings(Protocol):
    """What the operations read of a driver (``RedisBase``)."""

    layout: Layout
    feed: bool
    cluster: bool
    max_argument_bytes: int
    expect_snapshots: bool


def run_script(call: ScriptCall) -> Steps[Any]:
    """``EVALSHA`` the call's script; on NOSCRIPT (a new, flushed or failed-over server) load
    it and run it again. ``Script.__call__`` does the same at a tenth of a small commit's cost."""
    command = (call.script.sha, len(call.keys), *call.keys, *call.args)
    try:
        return (yield Call("evalsha", command))
    except NoScriptError:
        yield Call("script_load", (call.script.source,))
        return (yield Call("evalsha", command))


def append_steps(driver: Settings, commits: Sequence[Commit]) -> Steps[Refusal | None]:
    """Write ``commits`` atomically in one script call (see ``protocol.append_call``)."""
    if not commits:
        return None
    call = append_call(
        driver.layout,
        commits,
        feed=driver.feed,
        cluster=driver.cluster,
        max_argument_bytes=driver.max_argument_bytes,
    )
    return parse_refusal((yield from run_script(call)))


def load_steps(
    driver: Settings, key: str, after: int, *, use_snapshot: bool, commit_id: str | None, metadata: bool
) -> Steps[Loaded]:
    """One round trip: plain reads in a pipeline (``protocol.load_reads``), or the load
    script where snapshots are expected; two when the reads find a snapshot, after which
    the driver expects snapshots."""
    reads = load_reads(
        driver.layout, key, after, use_snapshot=use_snapshot, commit_id=commit_id, metadata=metadata,
        expect_snapshots=driver.expect_snapshots,
    )  # fmt: skip
    if reads is not None:
        loaded = parse_reads(key, after, reads, (yield Call("pipeline", (reads.commands,))))
        if loaded is not None:
            return loaded
        driver.expect_snapshots = True
    call = load_call(
        driver.layout, key, after, use_snapshot=use_snapshot, commit_id=commit_id, metadata=metadata
    )
    return parse_load(key, after, (yield from run_script(call)))


def rewrite_steps(
    driver: Settings, key: str, expected_head: int, records: Sequence[bytes], snapshot: Snapshot | None
) -> Steps[int | None]:
    """The rewrite script (``scripts.REWRITE``): ``None`` when written, else the head found."""
    call = rewrite_call(driver.layout, key, expected_head, records, snapshot, driver.max_argument_bytes)
    reply = yield from run_script(call)
    return None if reply is None else int(reply)


def read_values_steps(driver: Settings, names: Sequence[str]) -> Steps[list[bytes | None]]:
    """One ``MGET`` on a node; on a Cluster, where each name has a slot of its own, one
    ``MGET`` per slot, sent together."""
    keys = [driver.layout.value_key(name) for name in names]
    values = yield Call("mget_nonatomic" if driver.cluster else "mget", (keys,))
    return list(values)


def swap_value_steps(
    driver: Settings, name: str, expected: bytes | None, new: bytes | None, ttl: float | None
) -> Steps[bool]:
    """The swap script: ``name``'s value becomes ``new`` if it is ``expected``."""
    reply = yield from run_script(swap_call(driver.layout, name, expected, new, ttl))
    return bool(reply == 1)
