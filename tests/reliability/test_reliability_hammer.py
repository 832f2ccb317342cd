"""Hammers: many writers on one aggregate and on 100, on every backend; nothing lost, nothing doubled.

Each backend gets 4 worker processes (fresh interpreters opening the store with
``kvsourcing.open_store(url)``) of 4 threads each; the memory store, being in-process, gets
16 threads. Every operation is ``retry(handle(Add))`` with its own commit id; afterwards
each stream must be exactly 1..N, every commit whole and present once, and the state N.
The moto server serves one request at a time and copies the table per transaction, so it
gets fewer operations than Redis.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from hammer import (
    check_streams,
    collect_workers,
    record_figure,
    run_threads,
    start_workers,
)

import kvsourcing
from kvsourcing.testing.moto import REGION
from kvsourcing.testing.servers import RedisClusterNodes, RedisServer

PROCESSES, THREADS = 4, 4
AGGREGATES = 100
# Operations per thread: (one aggregate, 100 aggregates with commits of 1..20 events).
REDIS_OPS = (25, 30)
MOTO_OPS = (3, 6)
MEMORY_OPS = (50, 60)
# The limit on a run (the workers give up on unavailability after it, and are killed 20 s
# later): the moto hammer on one aggregate took 31 s on a loaded 2-core machine.
SECONDS = 90.0


def single_keys() -> list[str]:
    return [f"hammer-{uuid.uuid4().hex[:8]}"]


def many_keys() -> list[str]:
    base = uuid.uuid4().hex[:8]
    return [f"hammer-{base}-{i}" for i in range(AGGREGATES)]


def hammer_processes(
    url: str, keys: list[str], ops: int, max_parts: int, procs: list[Any], **options: Any
) -> Any:
    started = time.monotonic()
    procs += start_workers(
        url,
        PROCESSES,
        threads=THREADS,
        keys=keys,
        ops=ops,
        max_parts=max_parts,
        seconds=SECONDS,
        seed=len(keys) * 7 + max_parts,
        options=options,
    )
    report = collect_workers(procs, timeout=SECONDS + 20)
    return report, time.monotonic() - started


def check_all_stored(store: Any, report: Any, keys: list[str], name: str, elapsed: float) -> None:
    outcomes = {outcome for *_, outcome in report.ops}
    assert outcomes == {"stored"}, outcomes
    assert report.unavailable == 0
    found = check_streams(store, report, keys)
    expected = sum(parts for _, _, parts, _ in report.ops)
    assert found.events == expected
    assert found.commits == len(report.ops)
    record_figure(
        name,
        operations=len(report.ops),
        events=found.events,
        aggregates=len(keys),
        concurrency_faults=report.faults,
        lost=0,
        duplicated=0,
        seconds=round(elapsed, 2),
    )


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return f"{redis_server.url}?prefix=hammer-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterNodes) -> str:
    return f"{redis_cluster.url}?prefix=hammer-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def moto_url(server_table: str, moto_server_url: str) -> str:
    return f"dynamodb://{server_table}?region={REGION}&endpoint_url={moto_server_url}"


BACKENDS = ["redis_url", "cluster_url", "moto_url"]


def ops_for(backend: str) -> tuple[int, int]:
    return MOTO_OPS if backend == "moto_url" else REDIS_OPS


@pytest.mark.parametrize("backend", BACKENDS)
def test_16_writers_in_4_processes_on_one_aggregate(
    backend: str, request: pytest.FixtureRequest, worker_processes: list[Any]
) -> None:
    url = request.getfixturevalue(backend)
    keys = single_keys()
    ops = ops_for(backend)[0]
    report, elapsed = hammer_processes(url, keys, ops, 1, worker_processes)
    assert len(report.ops) == PROCESSES * THREADS * ops
    assert len({op.split(".")[0] for _, op, _, _ in report.ops}) == PROCESSES
    with kvsourcing.open_store(url) as store:
        check_all_stored(store, report, keys, f"one aggregate, {backend}", elapsed)
        assert len(store.read_events(keys[0])) == PROCESSES * THREADS * ops


@pytest.mark.parametrize("backend", BACKENDS)
def test_16_writers_in_4_processes_on_100_aggregates_with_commits_of_1_to_20(
    backend: str, request: pytest.FixtureRequest, worker_processes: list[Any]
) -> None:
    url = request.getfixturevalue(backend)
    keys = many_keys()
    ops = ops_for(backend)[1]
    report, elapsed = hammer_processes(url, keys, ops, 20, worker_processes, snapshot_interval=7)
    assert len(report.ops) == PROCESSES * THREADS * ops
    assert max(parts for _, _, parts, _ in report.ops) > 1
    with kvsourcing.open_store(url) as store:
        check_all_stored(store, report, keys, f"100 aggregates, {backend}", elapsed)


@pytest.mark.parametrize("snapshot_interval", [0, 7])
def test_16_threads_on_the_memory_store(snapshot_interval: int) -> None:
    with kvsourcing.open_store("memory://", snapshot_interval=snapshot_interval) as store:
        for keys, ops, max_parts in (
            (single_keys(), MEMORY_OPS[0], 1),
            (many_keys(), MEMORY_OPS[1], 20),
        ):
            started = time.monotonic()
            report = run_threads(
                store,
                name="m",
                threads=PROCESSES * THREADS,
                keys=keys,
                ops=ops,
                max_parts=max_parts,
                seed=snapshot_interval,
                deadline=time.monotonic() + SECONDS,
            )
            assert len(report.ops) == PROCESSES * THREADS * ops
            check_all_stored(
                store,
                report,
                keys,
                f"{len(keys)} aggregate(s), memory, snapshots every {snapshot_interval}",
                time.monotonic() - started,
            )
