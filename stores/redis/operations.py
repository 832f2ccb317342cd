"""The Redis driver's operations as steps (``kvsourcing.steps``): which commands to send,
in which order, and how to read what comes back, with no I/O.

``RedisDriver`` runs them on a sync client (``io.RedisIO``), ``AsyncRedisDriver`` awaits
them on a ``redis.asyncio`` client (``io.AsyncRedisIO``): one copy of the logic serves both.
An append, one script call on every commit, is no steps: each driver sends
``protocol.append_command`` through its I/O's ``script`` and reads the reply with
``protocol.parse_refusal`` (steps and their runner would add a twentieth to its client time).
"""

from __future__ import annotations

from collections.abc import Sequence

from kvsourcing.steps import Call, Steps
from kvsourcing.stores.keyvalue import Loaded, Snapshot
from kvsourcing.stores.redis.protocol import (
    ScriptCall,
    Settings,
    load_call,
    load_reads,
    parse_load,
    parse_reads,
    rewrite_call,
    swap_call,
)


def script(call: ScriptCall) -> Call:
    """The I/O call running ``call``'s script: ``EVALSHA`` of its SHA1, the number of KEYS,
    KEYS and ARGV (the I/O loads the script on NOSCRIPT)."""
    command = (call.script.sha, len(call.keys), *call.keys, *call.args)
    return Call("script", (call.script, command))


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
    return parse_load(key, after, (yield script(call)))


def rewrite_steps(
    driver: Settings, key: str, expected_head: int, records: Sequence[bytes], snapshot: Snapshot | None
) -> Steps[int | None]:
    """The rewrite script (``scripts.REWRITE``): ``None`` when written, else the head found."""
    call = rewrite_call(driver.layout, key, expected_head, records, snapshot, driver.max_argument_bytes)
    reply = yield script(call)
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
    reply = yield script(swap_call(driver.layout, name, expected, new, ttl))
    return bool(reply == 1)
