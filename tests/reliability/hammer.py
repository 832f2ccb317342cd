"""The hammer of the reliability suite: a small ``Tally`` domain whose every event names the
operation that wrote it, the writer loop that threads (in-process) and worker processes
run, and the check that a stream is exactly the operations that succeeded, each once,
whole and in one piece. Worker processes are fresh interpreters started with
``subprocess`` (``python -c "... hammer.worker_main()"``) that open their store with
``kvsourcing.open_store(url)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kvsourcing
from kvsourcing import AggregateBase, ConcurrencyFault, StandardEventRegistry, StoreUnavailableError, retry

HERE = Path(__file__).resolve().parent
RETRY_LIMIT = 100_000

# --------------------------------------------------------------------------- the domain

tally_events = StandardEventRegistry("reliability")


@tally_events.register_event
@dataclass
class Ticked:
    """Part ``part`` (of ``parts``) of the commit that operation ``op`` wrote."""

    op: str
    part: int
    parts: int


@dataclass
class Add:
    op: str
    parts: int


class Tally(AggregateBase):
    """Counts its events; every event names its operation, so losses and duplicates show."""

    def __init__(self, key: str, store: Any) -> None:
        super().__init__()
        self.count = 0
        self.initialize(key, tally_events, store)
        self.automatic_wireup()

    def replay_ticked(self, event: Ticked) -> None:
        self.count += 1

    def handle_add(self, command: Add) -> list[Ticked]:
        return [Ticked(command.op, part, command.parts) for part in range(command.parts)]


# --------------------------------------------------------------------------- the writer loop


@dataclass
class WriterReport:
    """What one writer did: ``ops`` is ``[key, op, parts, outcome]`` per operation."""

    ops: list[list[Any]] = field(default_factory=list)
    faults: int = 0
    unavailable: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: WriterReport) -> None:
        self.ops += other.ops
        self.faults += other.faults
        self.unavailable += other.unavailable
        self.errors += other.errors


def write_ops(
    store: Any,
    *,
    writer: str,
    keys: list[str],
    ops: int,
    max_parts: int,
    seed: int,
    deadline: float,
) -> WriterReport:
    """Run ``ops`` operations, each ``handle(Add)`` under ``retry`` with the op as commit id.

    A ``StoreUnavailableError`` is retried (same commit id, so a commit that landed is not
    written twice) until ``deadline``; outcomes: ``stored``, ``already`` (the re-send found
    it stored) or ``unknown`` (gave up).
    """
    rng = random.Random(seed)
    report = WriterReport()
    aggregates: dict[str, Tally] = {}
    for number in range(ops):
        key = rng.choice(keys)
        parts = rng.randint(1, max_parts)
        op = f"{writer}/{number}"
        aggregate = aggregates.setdefault(key, Tally(key, store))

        def attempt(aggregate: Tally = aggregate, op: str = op, parts: int = parts) -> list[Any]:
            try:
                return aggregate.handle(Add(op, parts), commit_id=op)
            except ConcurrencyFault:
                report.faults += 1
                raise

        outcome = "unknown"
        while True:
            try:
                outcome = "stored" if retry(RETRY_LIMIT, attempt) else "already"
                break
            except StoreUnavailableError:
                report.unavailable += 1
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            except Exception as exc:  # reported, so the test fails with the cause
                report.errors.append(f"{op}: {type(exc).__name__}: {exc}")
                break
        report.ops.append([key, op, parts, outcome])
    return report


def run_threads(
    store: Any,
    *,
    name: str,
    threads: int,
    keys: list[str],
    ops: int,
    max_parts: int,
    seed: int,
    deadline: float,
) -> WriterReport:
    """``threads`` writers on one store, started together; their merged report."""
    reports = [WriterReport() for _ in range(threads)]
    gate = threading.Barrier(threads)

    def body(index: int) -> None:
        try:
            gate.wait(timeout=30)
            reports[index] = write_ops(
                store,
                writer=f"{name}.t{index}",
                keys=keys,
                ops=ops,
                max_parts=max_parts,
                seed=seed * 1000 + index,
                deadline=deadline,
            )
        except Exception as exc:
            reports[index].errors.append(f"thread {index}: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, deadline + 30 - time.monotonic()))
    total = WriterReport()
    for worker, report in zip(workers, reports, strict=True):
        if worker.is_alive():
            report.errors.append(f"{worker.name} did not finish")
        total.merge(report)
    return total


def worker_main() -> None:
    """Entry point of a worker process: the JSON job in ``argv[1]``, the report on stdout."""
    job = json.loads(sys.argv[1])
    deadline = time.monotonic() + job["seconds"]
    store = kvsourcing.open_store(job["url"], **job.get("options", {}))
    try:
        report = run_threads(
            store,
            name=job["name"],
            threads=job["threads"],
            keys=job["keys"],
            ops=job["ops"],
            max_parts=job["max_parts"],
            seed=job["seed"],
            deadline=deadline,
        )
    finally:
        store.close()
    print(json.dumps(report.__dict__), flush=True)


def start_workers(url: str, processes: int, **job: Any) -> list[subprocess.Popen[str]]:
    """Start ``processes`` worker interpreters, each running ``job``'s threads on ``url``."""
    command = f"import sys; sys.path.insert(0, {str(HERE)!r}); import hammer; hammer.worker_main()"
    started = []
    try:
        for index in range(processes):
            spec = {**job, "url": url, "name": f"p{index}", "seed": job.get("seed", 0) * 100 + index}
            started.append(
                subprocess.Popen(
                    [sys.executable, "-c", command, json.dumps(spec)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
    except BaseException:
        kill_all(started)
        raise
    return started


def collect_workers(procs: list[subprocess.Popen[str]], timeout: float) -> WriterReport:
    """Wait for the workers (killing all of them if one fails or runs late); merged report."""
    total = WriterReport()
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            if proc.returncode != 0:
                raise AssertionError(f"worker exited {proc.returncode}: {err[-3000:]}")
            total.merge(WriterReport(**json.loads(out.strip().splitlines()[-1])))
    finally:
        kill_all(procs)
    return total


def kill_all(procs: list[subprocess.Popen[str]]) -> None:
    """Kill (by their own pids) the processes that are still running, and reap them."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
            proc.communicate(timeout=10)


# --------------------------------------------------------------------------- the check


@dataclass
class StreamCheck:
    """What ``check_streams`` found: events and commits stored, aggregates checked."""

    events: int = 0
    commits: int = 0
    aggregates: int = 0


def check_streams(store: Any, report: WriterReport, keys: list[str]) -> StreamCheck:
    """Assert that each aggregate's stream is exactly its successful operations.

    Sequences run 1..N with no gap; each commit's events are consecutive and whole
    (parts 0..k-1 of one op); no op appears twice or was never attempted; every op
    reported ``stored`` or ``already`` is there; a fresh aggregate's state equals N.
    """
    assert not report.errors, report.errors[:5]
    attempted: dict[str, dict[str, tuple[int, str]]] = defaultdict(dict)
    for key, op, parts, outcome in report.ops:
        assert op not in attempted[key], f"op {op} reported twice"
        attempted[key][op] = (parts, outcome)
    result = StreamCheck()
    for key in keys:
        events = store.read_events(key)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1)), f"gap in {key!r}"
        seen: set[str] = set()
        index = 0
        while index < len(events):
            first = events[index].data
            op, parts = first["op"], first["parts"]
            assert op not in seen, f"op {op} stored twice in {key!r}"
            assert op in attempted[key], f"op {op} in {key!r} was never attempted there"
            assert attempted[key][op][0] == parts
            chunk = [(e.event_type, e.data) for e in events[index : index + parts]]
            assert chunk == [("Ticked", {"op": op, "part": p, "parts": parts}) for p in range(parts)], (
                f"commit {op} of {key!r} is not whole at sequence {index + 1}"
            )
            seen.add(op)
            index += parts
            result.commits += 1
        for op, (_, outcome) in attempted[key].items():
            if outcome in ("stored", "already"):
                assert op in seen, f"op {op} reported {outcome} but is missing from {key!r}"
        fresh = Tally(key, store)
        fresh.refresh()
        assert (fresh.count, fresh.sequence_number()) == (len(events), len(events))
        result.events += len(events)
        result.aggregates += 1
    return result


# --------------------------------------------------------------------------- figures

FIGURES_PATH = (
    Path(os.environ.get("KVSOURCING_RELIABILITY_FIGURES", ""))
    if os.environ.get("KVSOURCING_RELIABILITY_FIGURES")
    else None
)


def record_figure(name: str, **values: Any) -> None:
    """Append a line of figures (for the README) when ``KVSOURCING_RELIABILITY_FIGURES`` names a file."""
    if FIGURES_PATH is None:
        return
    with FIGURES_PATH.open("a") as out:
        out.write(json.dumps({"test": name, **values}) + "\n")
