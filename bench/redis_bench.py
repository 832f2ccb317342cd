"""Redis store against a raw redis-py floor, side by side in one run (a script, not a test).

Spawns its own ``redis-server`` on a free loopback port, and prints ops/s (medians of
interleaved rounds) and the ratio ours/floor for:

* commits of 1 and of 10 events: the kvsourcing store (encode + one script call that
  also appends the commit to its bucket's feed stream) against EVALSHA of a minimal
  check-and-RPUSH script on ``msgpack.packb`` records (the target's floor), and, for
  information, against a floor that keeps a feed too (the same script plus an ``XADD``
  of the key, first sequence and records packed by the client); the driver's ``append``
  of a pre-encoded record alone is shown against the floor too;
* loads of a 1 000-event aggregate: ``store.refresh`` of a store without snapshots (one
  pipeline of ``HMGET`` + ``LRANGE``, then decode into event objects) against ``LRANGE`` +
  ``msgpack.unpackb`` per element, and, for information, against that floor building the
  same dataclass events; the driver's ``load`` alone is shown against ``LRANGE`` alone;
* loads with snapshots on (every 100 events) of a 100- and a 10 000-event aggregate
  (the "floor" column is the 100-event load there).

Ratios are medians of per-round ratios, the two sides run back to back each round. On
loopback a commit's ratio depends on where the scheduler puts this process and the
server: on one core a round trip is the two sides' CPU time, on two it also waits for the
other core to wake; ``--cpus same`` or ``--cpus split`` (Linux) pins them, for figures
that can be compared from run to run. ``--profile`` prints cProfile's view of our
one-event commits and 1 000-event loads.

Targets: commit >= 0.8x floor, load >= 0.8x floor, snapshot load of 10 000 events
<= 1.5x the time of 100. Run:
``python bench/redis_bench.py [--rounds N] [--cpus same|split] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import redis

from kvsourcing.registry import StandardEventRegistry
from kvsourcing.stores import redis as redis_store
from kvsourcing.stores.keyvalue import Commit
from kvsourcing.stores.keyvalue.store import KeyValueStore
from kvsourcing.testing.servers import running_server

FLOOR_APPEND = """
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
return 1
"""

# The floor with a feed: KEYS events list, feed stream; ARGV head, key, packed records,
# records.
FLOOR_APPEND_FEED = """
local head = redis.call('LLEN', KEYS[1])
if head ~= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], unpack(ARGV, 4))
redis.call('XADD', KEYS[2], '*', 'k', ARGV[2], 's', head + 1, 'r', ARGV[3])
return 1
"""


@dataclass
class ItemAdded:
    """A typical small event: a few scalar fields."""

    sku: str
    quantity: int
    price: float


REGISTRY = StandardEventRegistry("bench")
REGISTRY.register_event(ItemAdded)


def event(n: int) -> ItemAdded:
    return ItemAdded(sku=f"sku-{n:06d}", quantity=n % 7 + 1, price=9.99)


def floor_record(n: int) -> bytes:
    """What the floor stores: the same type name, fields and domain, packed plainly."""
    return msgpack.packb(
        ["ItemAdded", {"sku": f"sku-{n:06d}", "quantity": n % 7 + 1, "price": 9.99}, "bench"]
    )


class Writer:
    """A minimal ``StoreWriterAdapter``: hands the store a batch of events at a sequence."""

    def __init__(self, key: str) -> None:
        self.key, self.committed, self.events = key, 0, []

    def get_key(self) -> str:
        return self.key

    def get_event_registry(self) -> StandardEventRegistry:
        return REGISTRY

    def get_uncommitted_events(self) -> tuple[int, list[Any]]:
        return self.committed, self.events

    def get_state(self) -> dict[str, int]:
        return {"items": self.committed + len(self.events), "total": 42}

    def commit(self, store: KeyValueStore, events: list[Any]) -> None:
        self.events = events
        store.commit_events(self)
        self.committed += len(events)
        self.events = []


class Reader:
    """A minimal ``StoreLoaderAdapter`` that keeps what it replays."""

    def __init__(self, key: str) -> None:
        self.key, self.sequence, self.events, self.state = key, 0, [], None

    def get_key(self) -> str:
        return self.key

    def sequence_number(self) -> int:
        return self.sequence

    def get_event_registry(self) -> StandardEventRegistry:
        return REGISTRY

    def is_dirty(self) -> bool:
        return False

    def replay_event(self, event: Any) -> None:
        self.events.append(event)
        self.sequence += 1

    def restore_snapshot(self, sequence: int, state: Any) -> None:
        self.sequence, self.state = sequence, state


def ops_per_second(body: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        body()
    return repeat / (time.perf_counter() - start)


def compare(
    rounds: int, repeat: int, pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]]
) -> dict[str, tuple[float, float, float]]:
    """Per pair: median ops/s of each side and the median of the per-round ratios.

    Both sides of a pair run back to back in every round (in alternating order), so a
    burst of load from elsewhere on the machine hits both and cancels in the ratio.
    """
    for first, second in pairs.values():
        first()
        second()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pairs}
    for index in range(rounds):
        for name, (first, second) in pairs.items():
            if index % 2:
                b = ops_per_second(second, repeat)
                a = ops_per_second(first, repeat)
            else:
                a = ops_per_second(first, repeat)
                b = ops_per_second(second, repeat)
            samples[name].append((a, b))
    return {
        name: (
            statistics.median(a for a, _ in values),
            statistics.median(b for _, b in values),
            statistics.median(a / b for a, b in values),
        )
        for name, values in samples.items()
    }


def run(port: int, rounds: int, profile: bool) -> None:
    client = redis.Redis(port=port)
    store = redis_store.new_store(client)
    snap_store = redis_store.new_store(client, snapshot_interval=100)
    floor_append = client.register_script(FLOOR_APPEND)
    floor_append_feed = client.register_script(FLOOR_APPEND_FEED)
    unpack = msgpack.unpackb

    def floor_committer(size: int) -> Callable[[], object]:
        key, head = f"floor:{uuid.uuid4()}", [0]

        def commit() -> None:
            records = [floor_record(head[0] + n) for n in range(size)]
            assert floor_append([key], [head[0], *records]) == 1
            head[0] += size

        return commit

    def floor_feed_committer(size: int) -> Callable[[], object]:
        key, head = f"floor:{uuid.uuid4()}", [0]
        keys = [f"{{floor:b1}}:e:{key}", "{floor:b1}:f"]

        def commit() -> None:
            records = [floor_record(head[0] + n) for n in range(size)]
            packed = msgpack.packb(records)
            assert floor_append_feed(keys, [head[0], key, packed, *records]) == 1
            head[0] += size

        return commit

    def our_committer(size: int) -> Callable[[], object]:
        writer = Writer(f"ours-{uuid.uuid4()}")

        def commit() -> None:
            writer.commit(store, [event(writer.committed + n) for n in range(size)])

        return commit

    def driver_committer() -> Callable[[], object]:
        """The driver alone: one pre-encoded record per commit, no id, through ``append``."""
        key, head, record = f"driver-{uuid.uuid4()}", [0], floor_record(0)

        def commit() -> None:
            assert store.driver.append(Commit(key, head[0], [record])) is None
            head[0] += 1

        return commit

    def filled(target: KeyValueStore, events: int) -> str:
        writer = Writer(f"ours-{uuid.uuid4()}")
        for start in range(0, events, 100):
            writer.commit(target, [event(n) for n in range(start, min(start + 100, events))])
        return writer.key

    floor_key = f"floor:{uuid.uuid4()}"
    client.rpush(floor_key, *[floor_record(n) for n in range(1000)])
    our_key = filled(store, 1000)
    driver = store.driver

    def our_load() -> None:
        reader = Reader(our_key)
        store.refresh(reader)
        assert reader.sequence == 1000

    def floor_load() -> None:
        assert len([unpack(record) for record in client.lrange(floor_key, 0, -1)]) == 1000

    def floor_build_load() -> None:
        """The floor, then what a load must also do: build each event and keep it."""
        events = [ItemAdded(**unpack(record)[1]) for record in client.lrange(floor_key, 0, -1)]
        assert len(events) == 1000

    def snapshot_load(key: str, events: int) -> Callable[[], object]:
        def load() -> None:
            reader = Reader(key)
            snap_store.refresh(reader)
            assert reader.sequence == events

        return load

    small, large = filled(snap_store, 105), filled(snap_store, 10_005)
    results = compare(
        rounds,
        200,
        {
            "commit 1 event": (our_committer(1), floor_committer(1)),
            "commit 10 events": (our_committer(10), floor_committer(10)),
            "commit 1 event, floor with feed": (our_committer(1), floor_feed_committer(1)),
            "commit 10 events, floor with feed": (our_committer(10), floor_feed_committer(10)),
            "driver commit 1 event (bytes only)": (driver_committer(), floor_committer(1)),
        },
    )
    results |= compare(
        rounds,
        20,
        {
            "load 1 000 events (decoded)": (our_load, floor_load),
            "load 1 000, floor builds events": (our_load, floor_build_load),
            "driver load 1 000 (bytes only)": (
                lambda: driver.load(our_key, 0),
                lambda: client.lrange(floor_key, 0, -1),
            ),
        },
    )
    results |= compare(
        rounds,
        200,
        {"snapshot load 10 000 vs 100": (snapshot_load(large, 10_005), snapshot_load(small, 105))},
    )
    targets = {
        "commit 1 event": ">= 0.8",
        "commit 10 events": ">= 0.8",
        "commit 1 event, floor with feed": "",
        "commit 10 events, floor with feed": "",
        "driver commit 1 event (bytes only)": "",
        "load 1 000 events (decoded)": ">= 0.8",
        "load 1 000, floor builds events": "",
        "driver load 1 000 (bytes only)": "",
        "snapshot load 10 000 vs 100": ">= 0.67 (time <= 1.5x)",
    }
    print(f"{'case':<36}{'ours ops/s':>12}{'floor ops/s':>13}{'ratio':>8}  target")
    for name, (ours, floor, ratio) in results.items():
        print(f"{name:<36}{ours:>12.0f}{floor:>13.0f}{ratio:>8.2f}  {targets[name]}")
    if profile:
        commit = our_committer(1)
        for what, body, times in (("one-event commits", commit, 2000), ("1 000-event loads", our_load, 50)):
            print(f"\n{times} {what}, by own time:")
            profiler = cProfile.Profile()
            profiler.runcall(lambda body=body, times=times: [body() for _ in range(times)])
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per case (default 15)")
    parser.add_argument("--profile", action="store_true", help="profile our commits and loads")
    parser.add_argument(
        "--cpus",
        choices=("same", "split"),
        help="pin this process and the server to core 0 (same) or to cores 0 and 1 (split); Linux",
    )
    options = parser.parse_args()
    with running_server() as server:
        if options.cpus:
            os.sched_setaffinity(0, {0})
            os.sched_setaffinity(server.process.pid, {0} if options.cpus == "same" else {1})
        run(server.port, options.rounds, options.profile)


if __name__ == "__main__":
    main()
