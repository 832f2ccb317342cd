"""How commit and load cost grow with the stream, with and without snapshots (a script, not a test).

For each store (memory, and Redis on a ``redis-server`` spawned on a free port) and each
stream length, it writes an aggregate of that many events (commits of 100), then times
50 commits of one event on the aggregate held in memory, then reloads by a fresh
instance. With snapshots every 100 events the reload reads the snapshot and the 50
events after it, so its cost should not depend on the stream's length: the script says
whether it stays flat (largest over smallest within 1.5x).

Run: ``python bench/scaling.py [--quick] [--plot out.png]`` (the plot needs matplotlib:
``pip install 'kvsourcing[bench]'``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvsourcing.protocols import EventStore
from kvsourcing.testing.domain import Account, Deposited
from kvsourcing.testing.servers import running_server

SIZES = (100, 1_000, 10_000, 100_000)
QUICK_SIZES = (100, 1_000, 5_000)
SNAPSHOT_INTERVAL = 100
FILL_BATCH = 100
COMMITS = 50
LOAD_ROUNDS = 7
FLAT = 1.5
"""Snapshot loads count as flat when the largest stream's is within this factor of the smallest's."""


@dataclass
class Point:
    """One measurement: a store, a snapshot setting and a stream length."""

    store: str
    snapshots: int
    events: int
    commit_us: float
    load_ms: float
    replayed: int

    @property
    def series(self) -> str:
        return f"{self.store}, " + (f"snapshots/{self.snapshots}" if self.snapshots else "no snapshots")


class CountingAccount(Account):
    """Counts the events a refresh replays (after the snapshot, if any)."""

    def __init__(self, key: str, store: EventStore) -> None:
        super().__init__(key, store)
        self.replayed = 0

    def replay_event(self, event: object) -> None:
        self.replayed += 1
        super().replay_event(event)


def median_seconds(body: Callable[[], object], minimum: int, budget: float) -> float:
    """Median duration of ``body``: at least ``minimum`` runs, more while within ``budget`` seconds."""
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < minimum or time.perf_counter() - start < budget:
        before = time.perf_counter()
        body()
        samples.append(time.perf_counter() - before)
    return statistics.median(samples)


def deposit(account: Account, events: int) -> None:
    """Apply ``events`` deposits of 1 (uncommitted)."""
    for _ in range(events):
        account.apply_event(Deposited(1))


def write(store: EventStore, events: int) -> tuple[str, float]:
    """A new aggregate of ``events`` events plus ``COMMITS`` timed 1-event commits;
    returns its key and the commits' median seconds."""
    key = f"scaling-{uuid.uuid4().hex[:8]}"
    writer = Account(key, store)
    for start in range(0, events, FILL_BATCH):
        deposit(writer, min(FILL_BATCH, events - start))
        writer.commit()
    commits: list[float] = []
    for _ in range(COMMITS):
        deposit(writer, 1)
        before = time.perf_counter()
        writer.commit()
        commits.append(time.perf_counter() - before)
    return key, statistics.median(commits)


def loader(store: EventStore, key: str, total: int) -> Callable[[], int]:
    """Reload ``key`` by a fresh aggregate; returns how many events the refresh replayed."""

    def load() -> int:
        reader = CountingAccount(key, store)
        reader.refresh()
        if reader.balance != total:
            raise AssertionError(f"reloaded a balance of {reader.balance}, expected {total}")
        return reader.replayed

    return load


def measure_series(name: str, store: EventStore, snapshots: int, sizes: tuple[int, ...]) -> list[Point]:
    """All lengths of one series; the loads interleaved round by round, so that a burst of
    load from another process on the machine spreads over every length instead of one."""
    written = {}
    for events in sizes:
        print(f"  {name}, snapshots {snapshots or 'off'}: {events} events ...", file=sys.stderr)
        written[events] = write(store, events)
    loads = {events: loader(store, key, events + COMMITS) for events, (key, _) in written.items()}
    replayed = {events: load() for events, load in loads.items()}
    samples: dict[int, list[float]] = {events: [] for events in sizes}
    for _ in range(LOAD_ROUNDS):
        for events, load in loads.items():
            samples[events].append(median_seconds(load, 1, 0.05))
    return [
        Point(
            name,
            snapshots,
            events,
            written[events][1] * 1e6,
            statistics.median(samples[events]) * 1e3,
            replayed[events],
        )
        for events in sizes
    ]


def stores(stack: ExitStack) -> Iterator[tuple[str, Callable[[int], EventStore]]]:
    from kvsourcing.stores import memory

    yield "memory", lambda interval: memory.new_store(snapshot_interval=interval)

    from kvsourcing.stores import redis as redis_store

    client = stack.enter_context(running_server()).client()
    stack.callback(client.close)
    yield "Redis", lambda interval: redis_store.new_store(client, snapshot_interval=interval)


def run(sizes: tuple[int, ...]) -> list[Point]:
    points = []
    with ExitStack() as stack:
        for name, make in stores(stack):
            for snapshots in (0, SNAPSHOT_INTERVAL):
                points.extend(measure_series(name, make(snapshots), snapshots, sizes))
    return points


def print_table(points: list[Point]) -> None:
    print(
        f"events = the stream before {COMMITS} timed 1-event commits (commit us: their median); "
        f"load ms = median reload of the stream by a fresh aggregate\n"
    )
    print(f"{'series':<28}{'events':>9}{'commit us':>11}{'load ms':>11}{'replayed':>10}")
    for p in points:
        print(f"{p.series:<28}{p.events:>9}{p.commit_us:>11.1f}{p.load_ms:>11.3f}{p.replayed:>10}")
    print()
    series = {p.series: [q for q in points if q.series == p.series] for p in points}
    for name, line in series.items():
        first, last = line[0], line[-1]
        growth = last.load_ms / first.load_ms
        commit_growth = last.commit_us / first.commit_us
        verdict = ""
        if first.snapshots:
            verdict = "  flat" if growth <= FLAT else f"  NOT flat (> {FLAT}x)"
        print(
            f"{name:<28} {first.events} -> {last.events} events: load x{growth:.2f}, "
            f"commit x{commit_growth:.2f}{verdict}"
        )


def load_pyplot() -> Any:
    """matplotlib's pyplot (headless), or exit with how to install it."""
    try:
        import matplotlib
    except ImportError:
        sys.exit("scaling.py: --plot needs matplotlib: pip install matplotlib (or 'kvsourcing[bench]')")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(plt: Any, points: list[Point], path: Path) -> None:
    """Draw commit and load cost against stream length, log-log, one line per series."""
    figure, (commit_axes, load_axes) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    styles = {"memory": "tab:blue", "Redis": "tab:red"}
    from matplotlib import ticker

    sizes = sorted({p.events for p in points})
    for name in dict.fromkeys(p.series for p in points):
        line = [p for p in points if p.series == name]
        style = {
            "color": styles.get(line[0].store, "black"),
            "linestyle": "-" if line[0].snapshots else "--",
            "marker": "o",
            "label": name,
        }
        lengths = [p.events for p in line]
        commit_axes.plot(lengths, [p.commit_us for p in line], **style)
        load_axes.plot(lengths, [p.load_ms for p in line], **style)
    for axes, title, unit in (
        (commit_axes, "Commit of 1 event", "median microseconds"),
        (load_axes, "Reload by a fresh aggregate", "median milliseconds"),
    ):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(sizes, [f"{n:,}".replace(",", " ") for n in sizes])
        axes.xaxis.set_minor_locator(ticker.NullLocator())
        axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(ticker.NullFormatter())
        axes.set_title(title)
        axes.set_xlabel("events in the stream")
        axes.set_ylabel(unit)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.suptitle("kvsourcing: cost as the stream grows (snapshots every 100 events: solid lines)")
    figure.savefig(path, dpi=110)
    print(f"\nplot written: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help=f"lengths {QUICK_SIZES} instead of {SIZES}")
    parser.add_argument("--plot", metavar="PNG", type=Path, help="draw the table with matplotlib")
    args = parser.parse_args()
    plt = load_pyplot() if args.plot else None
    points = run(QUICK_SIZES if args.quick else SIZES)
    print_table(points)
    if args.plot:
        plot(plt, points, args.plot)


if __name__ == "__main__":
    main()
