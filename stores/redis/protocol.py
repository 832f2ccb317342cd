"""What the Redis driver sends and how it reads the replies, as functions of data (sans-IO):
script calls (``ScriptCall``; an append's as ``EVALSHA``'s arguments), a load's plain reads
(``LoadReads``, one pipeline), and the records replies give (``Refusal``, ``Loaded``,
``CommitInfo``). The sync and async drivers send the same requests and read the same way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any, Final, NamedTuple, Protocol

from msgpack import Packer, unpackb
from redis.crc import key_slot

from kvsourcing.errors import CommitTooLargeError, CrossPartitionError, EncodingError
from kvsourcing.stores.keyvalue import Commit, CommitInfo, Loaded, Refusal, Snapshot
from kvsourcing.stores.keyvalue.records import check_rewrite, require_distinct_keys
from kvsourcing.stores.redis.keys import Layout
from kvsourcing.stores.redis.scripts import APPEND, LOAD, REWRITE, SWAP, LuaScript

MAX_ARGUMENT_BYTES: Final = 512 * 1024 * 1024
"""Redis's default ``proto-max-bulk-len``: the longest string one command argument may be."""

ANONYMOUS: Final = b"\x00"
"""How a commit without an id is named in its aggregate's commits hash: this byte and its
last sequence (an id never holds a control character, so the two cannot collide)."""


class ScriptCall(NamedTuple):
    """One ``EVALSHA``: the script, its KEYS (all in one slot) and its ARGV."""

    script: LuaScript
    keys: tuple[bytes, ...]
    args: tuple[Any, ...]


_PACKERS = threading.local()


def pack_records(records: Sequence[bytes]) -> bytes:
    """Records as the append script takes them and the feed keeps them: one msgpack array
    of raw strings (the pre-2013 ``raw`` family, the one Lua's cmsgpack decodes). Each
    thread keeps a ``Packer`` (not thread-safe), as ``packb`` makes one per call, which
    costs more than packing a small commit."""
    try:
        pack = _PACKERS.pack
    except AttributeError:
        pack = _PACKERS.pack = Packer(use_bin_type=False).pack
    packed: bytes = pack(records)
    return packed


def unpack_records(packed: bytes) -> list[bytes]:
    """The records of a feed entry's ``r`` field (what ``pack_records`` made); raises
    ``ValueError`` (msgpack's errors are ``ValueError``s) unless it is an array of strings."""
    records = unpackb(packed, raw=True, use_list=True)
    if not isinstance(records, list) or not all(isinstance(record, bytes) for record in records):
        raise ValueError(f"not an array of raw strings: {type(records).__name__}")
    return records


_CARRIES = (b"-", b"i", b"s", b"b")
"""The append script's flag of a commit, by 1 if it has an id + 2 if it has a snapshot."""


class Settings(Protocol):
    """What the requests read of a driver (``RedisBase``)."""

    layout: Layout
    feed: bool
    cluster: bool
    max_argument_bytes: int
    expect_snapshots: bool


def append_command(driver: Settings, commits: Sequence[Commit]) -> tuple[Any, ...]:
    """``EVALSHA``'s arguments (the SHA1 of ``scripts.APPEND``, the number of KEYS, KEYS,
    ARGV) writing ``commits`` atomically, timed by the writer's clock: in one pass, as
    every commit builds them.

    Raises, before anything is sent: ``ValueError`` for an aggregate named twice,
    ``CommitTooLargeError`` for records or a snapshot longer than one argument may be, and
    on a Cluster ``CrossPartitionError`` for aggregates in different slots.
    """
    layout, feed, max_argument_bytes = driver.layout, driver.feed, driver.max_argument_bytes
    if len(commits) > 1:
        require_distinct_keys(commits)
        if driver.cluster:
            check_one_slot(layout, commits)
    stamp = b"%.6f" % time.time()
    flags = b"1" if feed else b"0"
    keys: list[bytes] = []
    args: list[Any] = []
    for commit in commits:
        events, snapshots, metadata, stream = layout.commit_keys(commit.key)
        records = pack_records(commit.records)
        if len(records) > max_argument_bytes:
            raise too_large(commit, "records", len(records), max_argument_bytes)
        keys.append(events)
        keys.append(metadata)
        args.append(commit.expected)
        args.append(records)
        carries = 0
        if commit.commit_id is not None:
            args.append(commit.commit_id)
            carries = 1
        snapshot = commit.snapshot
        if snapshot is not None:
            if len(snapshot) > max_argument_bytes:
                raise too_large(commit, "snapshot", len(snapshot), max_argument_bytes)
            keys.append(snapshots)
            args.append(snapshot)
            carries += 2
        if feed:
            keys.append(stream)
        flags += _CARRIES[carries]
    return (APPEND.sha, len(keys), *keys, flags, stamp, *args)


def too_large(commit: Commit, what: str, size: int, limit: int) -> CommitTooLargeError:
    """The error for a commit whose records or snapshot one argument cannot hold."""
    return CommitTooLargeError(
        f"cannot commit {commit.key!r}: {size} bytes of {what}, more than the {limit} bytes one "
        "Redis argument may hold (proto-max-bulk-len); commit fewer or smaller events, or keep "
        "large states out of snapshots"
    )


def check_one_slot(layout: Layout, commits: Sequence[Commit]) -> None:
    """Refuse (``CrossPartitionError``) commits whose keys are not all in one Cluster slot."""
    first = commits[0]
    slot = key_slot(layout.tag(layout.bucket(first.key)))
    for commit in commits[1:]:
        other = key_slot(layout.tag(layout.bucket(commit.key)))
        if other != slot:
            raise CrossPartitionError(
                f"cannot commit {first.key!r} and {commit.key!r} together on a Redis Cluster: their "
                f"keys are in hash slots {slot} and {other}, and one atomic write touches one slot; "
                "nothing was written. Give aggregates that must commit together keys sharing a "
                "hash tag, as 'account-1{bank}' and 'account-2{bank}': keys sharing a {tag} share "
                "a bucket, hence a slot"
            )


def parse_refusal(reply: Any) -> Refusal | None:
    """The append script's reply: ``None`` when written, else the ``Refusal``."""
    if reply is None:
        return None
    index, head = reply
    return Refusal(int(index), int(head))


def load_call(
    layout: Layout, key: str, after: int, *, use_snapshot: bool, commit_id: str | None, metadata: bool
) -> ScriptCall:
    """The load script's call: every part of a ``Loaded``, read atomically."""
    args = (after, b"1" if use_snapshot else b"0", commit_id or "", b"1" if metadata else b"0")
    return ScriptCall(LOAD, layout.keys(key), args)


class LoadReads(NamedTuple):
    """A load as plain read commands, sent together (one pipeline, one round trip) and read
    by ``parse_reads``: ``HMGET <snapshots> s`` if ``snapshot``, ``HEXISTS <commits> <id>``
    if ``commit_id``, then ``LRANGE <events> after -1``, in that order."""

    commands: tuple[tuple[Any, ...], ...]
    snapshot: bool
    commit_id: bool


def load_reads(
    layout: Layout, key: str, after: int, *, use_snapshot: bool, commit_id: str | None, metadata: bool,
    expect_snapshots: bool,
) -> LoadReads | None:  # fmt: skip
    """The plain reads that load ``key`` after ``after``, or ``None`` when the script must:
    for the commits' metadata, or for a snapshot where one is expected (a store that
    writes them), as the reads would fetch the whole tail a snapshot saves.

    The reads are not atomic, other clients' commits may run between them, and still give
    a state the aggregate had, because its keys only grow: each commit is one script that
    appends its records, adds its id to the commits hash and, with a snapshot at its last
    sequence S, sets the snapshot's ``s`` to S (the list then holds at least S records).
    ``HMGET`` comes first: when it finds no snapshot newer than ``after``, the records the
    later ``LRANGE`` returns are the aggregate's records after ``after`` up to its head at
    that moment, and a snapshot written in between only stands for records the load
    returns anyway. A rewrite (``kvsourcing reencrypt``) in between replaces records by the
    same events re-encoded and keeps the snapshot's ``s``, so it changes none of this.
    ``HEXISTS`` comes before ``LRANGE``: a commit it finds is in the records returned. One
    it misses may land before the ``LRANGE``: its records are then returned without
    ``stored``, and a command re-sent with its id is refused by the append script (ids are
    checked first), as after a load that came before that commit.
    ``HMGET`` (not ``HGET``), as the load script reads the snapshot: an ACL user allowed
    the commands the driver and its scripts run (SECURITY.md) needs no other.
    """
    if metadata or (use_snapshot and expect_snapshots):
        return None
    events, snapshots, commits = layout.keys(key)
    commands: list[tuple[Any, ...]] = []
    if use_snapshot:
        commands.append(("HMGET", snapshots, "s"))
    if commit_id is not None:
        commands.append(("HEXISTS", commits, commit_id))
    commands.append(("LRANGE", events, after, -1))
    return LoadReads(tuple(commands), use_snapshot, commit_id is not None)


def parse_reads(key: str, after: int, reads: LoadReads, replies: Sequence[Any]) -> Loaded | None:
    """The ``Loaded`` of the replies to ``reads`` (see ``load_reads``), or ``None`` when a
    snapshot newer than ``after`` is stored: then the script loads it (and only the records
    after it), so that a load still starts from the newest snapshot."""
    index = 0
    if reads.snapshot:
        index = 1
        (sequence,) = replies[0]
        if sequence is not None:
            try:
                newer = int(sequence) > after
            except ValueError as err:
                raise EncodingError(
                    f"cannot read the snapshot of {key!r}: its sequence is {sequence!r}, not an "
                    "integer; it was not written by kvsourcing, or is corrupt"
                ) from err
            if newer:
                return None
    stored = False
    if reads.commit_id:
        stored = bool(replies[index])
        index += 1
    return Loaded(None, after + 1, replies[index], stored)


def parse_load(key: str, after: int, reply: Any) -> Loaded:
    """The ``Loaded`` of the load script's reply (see ``load_call``)."""
    sequence, state, records, stored, commits = reply
    start = after if state is None else int(sequence)
    infos = parse_commits(key, commits, start) if commits else ()
    snapshot = None if state is None else Snapshot(start, state)
    return Loaded(snapshot, start + 1, records, bool(stored), infos)


def parse_commits(key: str, pairs: Sequence[bytes], start: int) -> list[CommitInfo]:
    """The commits hash's fields and values (as ``HGETALL`` lists them) as the
    ``CommitInfo`` of the commits with records after ``start``, in sequence order."""
    infos = []
    for index in range(0, len(pairs), 2):
        name, value = pairs[index], pairs[index + 1]
        try:
            first, last, seconds = value.split(b" ")
            info = CommitInfo(
                int(first),
                int(last),
                None if name.startswith(ANONYMOUS) else name.decode("utf-8", "surrogatepass"),
                float(seconds),
            )
        except ValueError as err:
            raise EncodingError(
                f"cannot read the commits of {key!r}: entry {name!r} is {value!r}, not "
                "'first last time'; it was not written by kvsourcing, or is corrupt"
            ) from err
        if info.last > start:
            infos.append(info)
    infos.sort(key=lambda info: info.last)
    return infos


def rewrite_call(
    layout: Layout, key: str, expected_head: int, records: Sequence[bytes], snapshot: Snapshot | None,
    max_argument_bytes: int,
) -> ScriptCall:  # fmt: skip
    """The rewrite script's call: one argument per record, so no argument holds more than
    a record (``CommitTooLargeError``, before anything is sent, for one past the limit)."""
    check_rewrite(expected_head, records)
    for size in (len(record) for record in (*records, snapshot.state if snapshot else b"")):
        if size > max_argument_bytes:
            raise CommitTooLargeError(
                f"cannot rewrite {key!r}: a record or snapshot of {size} bytes is more than the "
                f"{max_argument_bytes} bytes one Redis argument may hold (proto-max-bulk-len)"
            )
    state = (b"", b"") if snapshot is None else (snapshot.sequence, snapshot.state)
    return ScriptCall(REWRITE, layout.keys(key)[:2], (expected_head, *state, *records))


def swap_call(
    layout: Layout, name: str, expected: bytes | None, new: bytes | None, ttl: float | None
) -> ScriptCall:
    """The swap script's call: ``name``'s value becomes ``new`` if it is ``expected``;
    ``ttl`` becomes ``SET ... PX``, rounded up to a millisecond."""
    milliseconds = "" if ttl is None or new is None else max(1, math.ceil(ttl * 1000))
    args = (
        b"0" if expected is None else b"1",
        b"" if expected is None else expected,
        b"0" if new is None else b"1",
        b"" if new is None else new,
        milliseconds,
    )
    return ScriptCall(SWAP, (layout.value_key(name),), args)
