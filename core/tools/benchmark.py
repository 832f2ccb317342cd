"""A short commit/load benchmark of any store: what ``kvsourcing bench`` runs.

It answers "how fast is *this* store, from *this* machine?" before an application
commits to a backend or a deployment: commits of 1 and of 10 events on an aggregate
held in memory (no reload between commits, so a commit is what is timed), then reloads
of an aggregate with N events by a fresh aggregate. Each phase runs for a time budget,
and every operation is timed on its own, so the latency percentiles show the tail
that a mean hides. The aggregates are written for real and kept (their keys are in
the result), so ``kvsourcing events KEY`` can look at them afterwards.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from kvsourcing.aggregate import AggregateBase
from kvsourcing.protocols import EventStore
from kvsourcing.registry import StandardEventRegistry

events = StandardEventRegistry("kvsourcing-bench")

FILL_BATCH = 100
"""Events per commit when writing the aggregate that the load phase reads."""


@events.register_event
@dataclass(frozen=True)
class Counted:
    """The benchmark's one event type: small, like most real events."""

    amount: int
    note: str


class Tally(AggregateBase):
    """An aggregate whose state is the sum of its events."""

    total: int
    transient_attributes = frozenset({"_replayed"})

    def __init__(self, key: str, store: EventStore) -> None:
        super().__init__()
        self.total = 0
        self._replayed = 0
        self.initialize(key, events, store)
        self.automatic_wireup()

    def replay_counted(self, event: Counted) -> None:
        self.total += event.amount
        self._replayed += 1

    @property
    def replayed(self) -> int:
        """Events replayed (read from the store or applied) since this aggregate was made."""
        return self._replayed

    def add(self, count: int) -> None:
        """Apply ``count`` events (uncommitted)."""
        for _ in range(count):
            self.apply_event(Counted(1, "kvsourcing bench"))


@dataclass
class PhaseResult:
    """One phase: its operations' latencies in seconds, and the events they moved: written,
    or read from the store (those a snapshot stood for are not counted)."""

    name: str
    key: str
    events_per_op: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)
    events: int | None = None
    """Events moved in all; ``None``: ``events_per_op`` for each operation."""

    @property
    def ops(self) -> int:
        return len(self.latencies)

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.elapsed if self.elapsed else 0.0

    @property
    def events_per_second(self) -> float:
        moved = self.ops * self.events_per_op if self.events is None else self.events
        return moved / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        """The latency below which ``p`` percent of operations fall (nearest rank)."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        rank = max(1, -(-len(ordered) * p // 100))
        return ordered[int(rank) - 1]


class Progress:
    """A text bar on a terminal, one line per phase otherwise (logs stay readable)."""

    WIDTH = 30

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._tty = self._stream.isatty()
        self._label = ""
        self._shown = -1

    def start(self, label: str) -> None:
        self._label, self._shown = label, -1
        if self._tty:
            self.update(0.0)
        else:
            print(f"bench: {label} ...", file=self._stream, flush=True)

    def update(self, fraction: float) -> None:
        if not self._tty:
            return
        filled = int(min(max(fraction, 0.0), 1.0) * self.WIDTH)
        if filled != self._shown:
            self._shown = filled
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self._stream.write(f"\r[{bar}] {self._label:<24}")
            self._stream.flush()

    def finish(self) -> None:
        if self._tty:
            self.update(1.0)
            self._stream.write("\n")
            self._stream.flush()


def _timed(
    name: str,
    key: str,
    events_per_op: int,
    seconds: float,
    body: Callable[[], Any],
    progress: Progress,
    min_ops: int,
) -> PhaseResult:
    """Run ``body`` until ``seconds`` have passed (and at least ``min_ops`` times)."""
    progress.start(name)
    result = PhaseResult(name, key, events_per_op, 0.0)
    clock = time.perf_counter
    start = clock()
    while True:
        before = clock()
        body()
        after = clock()
        result.latencies.append(after - before)
        elapsed = after - start
        progress.update(elapsed / seconds if seconds else 1.0)
        if elapsed >= seconds and result.ops >= min_ops:
            break
    result.elapsed = clock() - start
    progress.finish()
    return result


def run(
    store: EventStore,
    *,
    seconds: float = 1.0,
    load_events: int = 1000,
    progress: Progress | None = None,
    key_prefix: str = "kvsourcing-bench",
) -> list[PhaseResult]:
    """Benchmark ``store``: ``seconds`` per phase, reloads of a ``load_events``-event aggregate.

    Snapshots are the store's own (``snapshot_interval`` when it was opened).
    """
    if seconds < 0:
        raise ValueError(f"seconds must not be negative, got {seconds}")
    if load_events < 1:
        raise ValueError(f"load_events must be at least 1, got {load_events}")
    progress = progress or Progress()
    run_id = uuid.uuid4().hex[:8]
    results = []
    for count in (1, 10):
        counter = Tally(f"{key_prefix}-{run_id}-commit{count}", store)

        def commit(counter: Tally = counter, count: int = count) -> None:
            counter.add(count)
            counter.commit()

        label = f"commit {count} event" + ("s" if count > 1 else "")
        results.append(_timed(label, counter.get_key(), count, seconds, commit, progress, 1))

    loaded_key = f"{key_prefix}-{run_id}-load{load_events}"
    writer = Tally(loaded_key, store)
    progress.start(f"write {load_events} events")
    for start in range(0, load_events, FILL_BATCH):
        writer.add(min(FILL_BATCH, load_events - start))
        writer.commit()
        progress.update(writer.sequence_number() / load_events)
    progress.finish()

    replayed = 0

    def load() -> None:
        nonlocal replayed
        reader = Tally(loaded_key, store)
        reader.refresh()
        if reader.total != load_events:
            raise AssertionError(f"reloaded {reader.total} of {load_events} events from {loaded_key!r}")
        replayed += reader.replayed

    loaded = _timed(f"load {load_events} events", loaded_key, load_events, seconds, load, progress, 1)
    loaded.events = replayed
    results.append(loaded)
    return results


def format_table(results: list[PhaseResult]) -> str:
    """The results as an aligned text table (latencies in milliseconds)."""
    header = f"{'phase':<22}{'ops':>8}{'ops/s':>11}{'events/s':>12}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}"
    lines = [header]
    for r in results:
        p50, p90, p99 = (r.percentile(p) * 1000 for p in (50, 90, 99))
        lines.append(
            f"{r.name:<22}{r.ops:>8}{r.ops_per_second:>11.1f}{r.events_per_second:>12.0f}"
            f"{p50:>10.3f}{p90:>10.3f}{p99:>10.3f}"
        )
    return "\n".join(lines)
