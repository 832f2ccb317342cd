"""The durable feed on Redis: the FeedSuite on a node and a Cluster, the driver's feed and
value primitives, and consumers in real processes killed with SIGKILL."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kvsourcing.protocols import EventStore
from kvsourcing.stores import redis as redis_store
from kvsourcing.testing import FeedSuite
from kvsourcing.testing.domain import Counter, Increment
from kvsourcing.testing.servers import RedisClusterNodes, RedisServer, stop_process


class TestRedisFeed(FeedSuite):
    """Default bucket count (1024): a consumer reads every bucket's stream each poll."""

    redis_prefix = f"feed-{uuid.uuid4().hex[:8]}"

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.url = redis_server.url

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return redis_store.from_url(self.url, prefix=self.redis_prefix, snapshot_interval=snapshot_interval)


class TestRedisClusterFeed(FeedSuite):
    redis_prefix = f"feed-{uuid.uuid4().hex[:8]}"

    @pytest.fixture(autouse=True)
    def _cluster(self, redis_cluster: RedisClusterNodes) -> None:
        self.url = redis_cluster.url

    def new_store(self, *, snapshot_interval: int = 0) -> EventStore:
        return redis_store.from_url(self.url, prefix=self.redis_prefix, snapshot_interval=snapshot_interval)


# --- consumers in real processes -------------------------------------------------------

HELPER = Path(__file__).with_name("feed_consumer_process.py")
LEASE = 1.0
SLICES = 8
BUCKETS = 64


class ConsumerProcess:
    """``feed_consumer_process.py`` in a child process, and the log it writes."""

    def __init__(self, url: str, prefix: str, name: str, workdir: Path, label: str) -> None:
        self.label = label
        self.log_path = workdir / f"{label}.jsonl"
        self.stderr_path = workdir / f"{label}.stderr"
        self.killed_at: float | None = None
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(HELPER),
                    url,
                    prefix,
                    str(BUCKETS),
                    name,
                    str(SLICES),
                    str(LEASE),
                    str(self.log_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def lines(self) -> list[list[Any]]:
        if not self.log_path.exists():
            return []
        text = self.log_path.read_text()
        return [json.loads(line) for line in text.splitlines() if line.endswith("]")]

    def events(self) -> list[list[Any]]:
        return [line for line in self.lines() if line[0] == "event"]

    def kill(self) -> None:
        self.killed_at = time.time()
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL if it does not exit in time."""
        stop_process(self.process)

    def held_intervals(self) -> dict[int, list[tuple[float, float]]]:
        """Per slice, the times this process surely believed it held it: from the end of
        the heartbeat that took the lease to the start of the one that gave it up (or the
        process's last line when it was killed, or its ``stopping`` line)."""
        intervals: dict[int, list[tuple[float, float]]] = defaultdict(list)
        since: dict[int, float] = {}
        end = 0.0
        for line in self.lines():
            end = max(end, line[1])
            if line[0] == "held":
                before, after, held = line[1], line[2], set(line[3])
                for slice_ in held - set(since):
                    since[slice_] = after
                for slice_ in set(since) - held:
                    intervals[slice_].append((since.pop(slice_), before))
            elif line[0] == "stopping":
                break
        for slice_, start in since.items():
            intervals[slice_].append((start, end))
        return intervals

    def describe(self) -> str:
        return f"{self.label}: exit {self.process.poll()}, stderr: {self.stderr_path.read_text()[-2000:]}"


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, processes: list[ConsumerProcess]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting until {what}; " + "; ".join(p.describe() for p in processes)
            )
        time.sleep(0.02)


def test_consumer_processes_split_the_buckets_and_survive_a_sigkill(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix, name = f"procs-{uuid.uuid4().hex[:8]}", "projection"
    store = redis_store.from_url(redis_server.url, prefix=prefix, buckets=BUCKETS)
    written: dict[str, int] = defaultdict(int)
    stop_writing = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            n = 0
            while not stop_writing.is_set():
                key = f"order-{n % 40}"
                Counter(key, store).handle(Increment())
                written[key] += 1
                n += 1
                time.sleep(0.002)
        except BaseException as exc:
            errors.append(exc)

    def start(label: str) -> ConsumerProcess:
        process = ConsumerProcess(redis_server.url, prefix, name, tmp_path, label)
        processes.append(process)
        return process

    processes: list[ConsumerProcess] = []
    writer = threading.Thread(target=write)
    try:
        a, b = start("a"), start("b")
        writer.start()
        wait_until(
            lambda: min(len(a.events()), len(b.events())) >= 50, 10, "both processes deliver", processes
        )
        b.kill()
        wait_until(
            lambda: any(
                line[0] == "held" and line[1] > b.killed_at and len(line[3]) == SLICES for line in a.lines()
            ),
            10,
            "the survivor holds every slice",
            processes,
        )
        restarted = start("b-restarted")
        wait_until(lambda: len(restarted.events()) >= 50, 10, "the restarted process delivers", processes)
        stop_writing.set()
        writer.join(timeout=10)
        assert not errors, errors
        expected = {(key, sequence) for key, count in written.items() for sequence in range(1, count + 1)}

        def delivered() -> set[tuple[str, int]]:
            return {(line[3], line[4]) for process in processes for line in process.events()}

        wait_until(lambda: delivered() >= expected, 10, "every event is delivered", processes)
    finally:
        stop_writing.set()
        writer.join(timeout=10)
        for process in processes:
            process.terminate()
        store.close()

    assert all(process.process.returncode == 0 for process in (a, restarted)), [
        p.describe() for p in processes
    ]
    events = sorted((line for process in processes for line in process.events()), key=lambda line: line[1])
    assert {(key, sequence) for _, _, _, key, sequence in events} == expected
    first_seen: dict[str, list[int]] = defaultdict(list)
    for key, sequence in dict.fromkeys((key, sequence) for _, _, _, key, sequence in events):
        first_seen[key].append(sequence)
    assert all(sequences == sorted(sequences) for sequences in first_seen.values())
    for process in processes:
        per_key: dict[str, list[int]] = defaultdict(list)
        for _, _, _, key, sequence in process.events():
            per_key[key].append(sequence)
        for key, sequences in per_key.items():
            assert all(x < y for x, y in itertools.pairwise(sequences)), (process.label, key, sequences)
    held_while_both_ran = [
        (set(la[3]), set(lb[3]))
        for la in a.lines()
        for lb in b.lines()
        if la[0] == lb[0] == "held" and la[3] and lb[3] and abs(la[2] - lb[2]) < LEASE / 3
    ]
    assert any(not left & right for left, right in held_while_both_ran), "a and b never split the slices"
    spans = [
        (slice_, start, end, process.label)
        for process in processes
        for slice_, held in process.held_intervals().items()
        for start, end in held
    ]
    for (slice_, start, end, label), (other_slice, other_start, other_end, other) in itertools.combinations(
        spans, 2
    ):
        if slice_ == other_slice and label != other:
            assert end <= other_start or other_end <= start, f"{label} and {other} both held slice {slice_}"
    for process in processes:
        held = process.held_intervals()
        for _, when, bucket, key, sequence in process.events():
            assert any(start <= when <= end for start, end in held.get(bucket % SLICES, [])), (
                f"{process.label} delivered {key} {sequence} without the lease of slice {bucket % SLICES}"
            )
