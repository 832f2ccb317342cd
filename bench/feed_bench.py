"""Feed throughput and delivery latency on every store (a script, not a test).

For each store (memory; Redis on one node; a 3-node Redis Cluster; DynamoDB on moto in
process) it prints:

* catch-up: events/s for one ``FeedConsumer`` (``run_once`` in a loop, batch 100)
  draining a backlog of ``--events`` one-event commits over 200 aggregates;
* latency: commit-to-handler p50/p99 (ms, from just before the commit is sent to the
  handler's call) of a background consumer (``start()``, default ``poll_interval`` 0.2 s)
  while one thread commits at ``--rate`` commits/s for ``--seconds``; on a store that
  pushes, side by side with the same consumer made to poll, and the consumer process's
  CPU (and the Redis server's) per second while nothing arrives;
* on Redis (node and Cluster): catch-up with 1, 2 and 4 consumer processes sharing one
  consumer name (lease 1 s), timed from the moment they all start until every bucket's
  checkpoint is at the end of its feed.

The machine has 2 cores shared with the servers (and other work): catch-up with 4
processes cannot scale past them. Run: ``python bench/feed_bench.py [--events N]
[--rate R] [--seconds S] [--stores memory,redis,cluster,dynamodb]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from redis_fixtures import start_cluster, start_server, stop_cluster  # noqa: E402

from kvsourcing.handlers import PublishedEvent  # noqa: E402
from kvsourcing.stores.keyvalue import FeedConsumer  # noqa: E402
from kvsourcing.testing.domain import Counter, Incremented, registry  # noqa: E402

AGGREGATES = 200


class Clock:
    """A handler noting when each event of ``prefix`` arrived, and how many did."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.arrived: dict[tuple[str, int], float] = {}
        self.count = 0

    def handle(self, published: PublishedEvent) -> None:
        if published.key.startswith(self.prefix):
            self.arrived.setdefault((published.key, published.sequence), time.perf_counter())
            self.count += 1


def write_backlog(store: Any, prefix: str, events: int) -> None:
    """``events`` one-event commits, round-robin over ``AGGREGATES`` aggregates."""
    counters = [Counter(f"{prefix}{n}", store) for n in range(min(events, AGGREGATES))]
    for n in range(events):
        counter = counters[n % len(counters)]
        counter.apply_event(Incremented())
        counter.commit()


def catch_up(store: Any, events: int) -> float:
    """Events/s of one consumer draining ``events`` one-event commits."""
    prefix = f"catchup-{uuid.uuid4().hex[:8]}-"
    write_backlog(store, prefix, events)
    clock = Clock(prefix)
    consumer = FeedConsumer(store, f"catchup-{uuid.uuid4().hex[:8]}", registry())
    consumer.add_handler(clock)
    started = time.perf_counter()
    while clock.count < events:
        consumer.run_once()
    elapsed = time.perf_counter() - started
    consumer.stop()
    return events / elapsed


def live(consumer: FeedConsumer, store: Any, clock: Clock, timeout: float = 120) -> None:
    """Wait until the started ``consumer`` has caught up (a marker commit reached it)."""
    marker = f"{clock.prefix}marker"
    counter = Counter(marker, store)
    counter.apply_event(Incremented())
    counter.commit()
    deadline = time.monotonic() + timeout
    while (marker, 1) not in clock.arrived:
        if time.monotonic() > deadline:
            raise RuntimeError("the consumer did not catch up with the feed")
        time.sleep(0.01)


def latency(store: Any, rate: float, seconds: float, push: bool) -> dict[str, float]:
    """Commit-to-handler p50/p99 (ms) at ``rate`` commits/s, and idle CPU per second."""
    prefix = f"live-{uuid.uuid4().hex[:8]}-"
    clock = Clock(prefix)
    consumer = FeedConsumer(store, f"live-{uuid.uuid4().hex[:8]}", registry())
    if not push:
        consumer._pushes = False  # the same consumer, polling: the baseline side by side
    consumer.add_handler(clock)
    consumer.start()
    try:
        live(consumer, store, clock)
        counters = [Counter(f"{prefix}{n}", store) for n in range(AGGREGATES)]
        sent: dict[tuple[str, int], float] = {}
        total = int(rate * seconds)
        start = time.perf_counter()
        for n in range(total):
            pause = start + n / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            counter = counters[n % AGGREGATES]
            counter.apply_event(Incremented())
            sent[(counter.get_key(), counter.sequence_number())] = time.perf_counter()
            counter.commit()
        deadline = time.monotonic() + 60
        while not all(key in clock.arrived for key in sent) and time.monotonic() < deadline:
            time.sleep(0.01)
        delays = sorted((clock.arrived[key] - at) * 1000 for key, at in sent.items() if key in clock.arrived)
        idle = idle_cpu(store)
    finally:
        consumer.stop()
    return {
        "p50": statistics.median(delays),
        "p99": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
        "lost": float(len(sent) - len(delays)),
        **idle,
    }


def idle_cpu(store: Any, seconds: float = 2.0) -> dict[str, float]:
    """CPU ms per second of this process (and of the Redis server, when there is one)
    while the started consumer has nothing to deliver."""
    time.sleep(0.5)
    server = redis_cpu(store)
    process = time.process_time()
    time.sleep(seconds)
    result = {"cpu": (time.process_time() - process) / seconds * 1000}
    if server is not None:
        later = redis_cpu(store)
        result["server_cpu"] = ((later or 0.0) - server) / seconds * 1000
    return result


def redis_cpu(store: Any) -> float | None:
    """The Redis servers' CPU seconds so far (summed over a Cluster's nodes), else None."""
    client = getattr(store.driver, "client", None)
    if client is None or not hasattr(client, "info"):
        return None
    reply = client.info("cpu")
    infos = reply.values() if isinstance(next(iter(reply.values())), dict) else [reply]
    return sum(info["used_cpu_sys"] + info["used_cpu_user"] for info in infos)


def processes_catch_up(url: str, events: int, counts: tuple[int, ...]) -> dict[int, float]:
    """Events/s of ``n`` consumer processes of one name draining ``events`` commits."""
    from kvsourcing.stores import redis as redis_store

    rates = {}
    for count in counts:
        prefix = f"procs-{uuid.uuid4().hex[:8]}"
        store = redis_store.from_url(url, prefix=prefix)
        write_backlog(store, "order-", events)
        driver = store.driver
        ends = {}
        for bucket in range(driver.buckets):
            last = driver.client.xrevrange(driver.feed_key(bucket), count=1)
            if last:
                ends[bucket] = last[0][0].decode()
        name = f"procs-{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory() as workdir:
            go = Path(workdir) / "go"
            workers = [
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        url,
                        prefix,
                        name,
                        str(go),
                        str(Path(workdir) / str(n)),
                    ],
                    stdin=subprocess.DEVNULL,
                )
                for n in range(count)
            ]
            try:
                while sum((Path(workdir) / str(n)).exists() for n in range(count)) < count:
                    time.sleep(0.01)
                go.touch()
                started = time.perf_counter()
                checkpoints = [f"consumer/{name}/checkpoint/{bucket}" for bucket in ends]
                while True:
                    stored = driver.read_values(checkpoints)
                    if all(
                        raw is not None and raw.decode() == end
                        for raw, end in zip(stored, ends.values(), strict=True)
                    ):
                        break
                    time.sleep(0.005)
                rates[count] = events / (time.perf_counter() - started)
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.wait(timeout=30)
        store.close()
    return rates


def worker(url: str, prefix: str, name: str, go: str, ready: str) -> None:
    """One consumer process of ``processes_catch_up``: consume from ``go`` until killed."""
    from kvsourcing.stores import redis as redis_store

    store = redis_store.from_url(url, prefix=prefix)
    consumer = FeedConsumer(store, name, registry(), lease_seconds=1.0)
    consumer.add_handler(Clock("order-"))
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.001)
    while True:
        if not consumer.run_once():
            time.sleep(0.01)


@contextmanager
def stores(names: list[str], workdir: Path) -> Iterator[Iterator[tuple[str, Any, str | None]]]:
    """``(name, store, url)`` of each store asked for, each started when its turn comes."""
    with ExitStack() as stack:

        def each() -> Iterator[tuple[str, Any, str | None]]:
            from kvsourcing.stores import memory
            from kvsourcing.stores import redis as redis_store

            if "memory" in names:
                yield "memory", memory.new_store(), None
            if "redis" in names:
                server = start_server(workdir / "redis")
                stack.callback(server.stop)
                yield "Redis", redis_store.from_url(server.url, prefix="bench"), server.url
            if "cluster" in names:
                cluster = start_cluster(workdir / "cluster")
                stack.callback(stop_cluster, cluster)
                yield "Redis Cluster", redis_store.from_url(cluster.url, prefix="bench"), cluster.url
            if "dynamodb" in names:
                store = guarded("DynamoDB (moto)", dynamodb_store, stack)
                if store is not None:
                    yield "DynamoDB (moto)", store, None

        yield each()


def dynamodb_store(stack: ExitStack) -> Any:
    """A store on a table of moto in process (which lives as long as ``stack``)."""
    from dynamodb_bench import moto_dynamodb

    from kvsourcing.stores.dynamodb import create_table, new_store

    client = stack.enter_context(moto_dynamodb())
    create_table(client, "feed-bench")
    return new_store("feed-bench", client=client)


def guarded(what: str, body: Callable[..., Any], *args: Any) -> Any:
    """``body(*args)``, or ``None`` with the failure printed (a store whose driver is not ready)."""
    try:
        return body(*args)
    except Exception as exc:  # a benchmark reports and goes on
        print(f"  {what}: failed: {type(exc).__name__}: {exc}", flush=True)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--dynamodb-events", type=int, default=2_000, help="moto writes ~200 commits/s")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stores", default="memory,redis,cluster,dynamodb")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    counts = tuple(int(n) for n in args.processes.split(","))
    with tempfile.TemporaryDirectory() as workdir, stores(args.stores.split(","), Path(workdir)) as each:
        for name, store, url in each:
            print(f"{name} (pushes: {store.driver.pushes})", flush=True)
            events = args.dynamodb_events if name.startswith("DynamoDB") else args.events
            rate = guarded("catch-up", catch_up, store, events)
            if rate is not None:
                print(f"  catch-up, 1 consumer: {rate:,.0f} events/s ({events} events)")
            modes = (True, False) if store.driver.pushes else (False,)
            for push in modes:
                figures = guarded("latency", latency, store, args.rate, args.seconds, push)
                if figures is not None:
                    server = f", server {figures['server_cpu']:.1f}" if "server_cpu" in figures else ""
                    print(
                        f"  {'push' if push else 'poll'} at {args.rate:.0f} commits/s: "
                        f"p50 {figures['p50']:.2f} ms, "
                        f"p99 {figures['p99']:.2f} ms, lost {figures['lost']:.0f}; idle CPU ms/s: "
                        f"consumer process {figures['cpu']:.1f}{server}"
                    )
            if url is not None:
                rates = guarded("processes", processes_catch_up, url, args.events, counts)
                for count, rate in (rates or {}).items():
                    print(f"  catch-up, {count} consumer process(es): {rate:,.0f} events/s")
            store.close()


if __name__ == "__main__":
    main()
