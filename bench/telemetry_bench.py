"""What OpenTelemetry costs a memory commit, side by side in one run (a script, not a test).

Each round times a block of one-event commits through the undecorated
``KeyValueStore.commit_events`` (the floor) and through the store as shipped, back to
back, and the ratio of the two is taken per round; the median ratio is printed:

1. with ``opentelemetry-api`` installed and no SDK configured (target: <= 1.03);
2. then with the SDK configured: a ``TracerProvider`` with a ``SimpleSpanProcessor``
   handing every span to an exporter that drops it (the export's I/O is left out; a
   ``BatchSpanProcessor`` would drop spans itself once its queue fills at this rate), and
   a ``MeterProvider`` with an ``InMemoryMetricReader``.

Run: ``python bench/telemetry_bench.py [--rounds N] [--commits N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from kvsourcing.stores import memory
from kvsourcing.stores.keyvalue.store import KeyValueStore
from kvsourcing.testing.domain import Counter, Incremented


class _Floor(KeyValueStore):
    """The store without the telemetry decorator: what a commit costs with no hook at all."""

    commit_events = KeyValueStore.commit_events.__wrapped__  # type: ignore[attr-defined]


class _Drop(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _committer(store: KeyValueStore) -> Callable[[int], float]:
    counter = Counter("bench", store)

    def run(commits: int) -> float:
        start = time.perf_counter()
        for _ in range(commits):
            counter.apply_event(Incremented(1))
            counter.commit()
        return time.perf_counter() - start

    return run


def _ratio(rounds: int, commits: int, control: bool = False) -> tuple[float, float]:
    """Median (shipped / floor) time ratio, and the floor's microseconds per commit;
    ``control`` times the floor against a second floor (the noise of the measurement)."""
    floor = _committer(_Floor(memory.MemoryDriver()))
    shipped = _committer(_Floor(memory.MemoryDriver()) if control else memory.new_store())
    floor(commits)
    shipped(commits)
    ratios, floors = [], []
    for index in range(rounds):
        if index % 2:
            base, ours = floor(commits), shipped(commits)
        else:
            ours, base = shipped(commits), floor(commits)
        ratios.append(ours / base)
        floors.append(base / commits * 1e6)
    return statistics.median(ratios), statistics.median(floors)


def _hook_ns() -> float:
    """The hook's own cost with no provider set: a decorated no-op against the bare one,
    best of several timings (nanoseconds per call)."""
    from kvsourcing.telemetry import traced_commit

    def bare(store: object, writer: object) -> None:
        return None

    hooked = traced_commit(bare)
    best = {}
    for name, fn in (("bare", bare), ("hooked", hooked)):
        best[name] = min(timeit.repeat(lambda fn=fn: fn(None, None), number=200_000, repeat=7)) / 200_000
    return (best["hooked"] - best["bare"]) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--commits", type=int, default=2000)
    args = parser.parse_args()
    hook_ns = _hook_ns()
    control, _ = _ratio(args.rounds, args.commits, control=True)
    ratio, floor_us = _ratio(args.rounds, args.commits)
    print(f"memory commit, floor (no hook)        {floor_us:7.2f} us")
    print(f"control: the floor against itself:     {control:6.3f}x (the measurement's noise)")
    print(f"API installed, no SDK configured:      {ratio:6.3f}x the floor (target <= 1.03)")
    share = hook_ns / (floor_us * 1000)
    print(f"  the hook alone: {hook_ns:.0f} ns a call ({share:.2%} of the floor's commit)")
    trace.set_tracer_provider(provider := TracerProvider())
    provider.add_span_processor(SimpleSpanProcessor(_Drop()))
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    ratio, floor_us = _ratio(args.rounds, args.commits)
    print(f"SDK configured, spans exported:       {ratio:6.3f}x the floor ({floor_us * ratio:.2f} us/commit)")
    provider.shutdown()


if __name__ == "__main__":
    main()
