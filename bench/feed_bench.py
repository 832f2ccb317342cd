"""Feed throughput and delivery latency on every store (a script, not a test).

For each store (memory; Redis on one node; a 3-node Redis Cluster; DynamoDB on moto in
process) it prints:

* catch-up: events/s for one ``FeedConsumer`` (``run_once`` in a loop, batch 100)
  draining a backlog of ``--events`` one-event commits over 200 aggregates;
* latency: commit-to-handler p50/p99 (ms, from just before the commit is sent to the
  handler's call) of a started consumer (``start()``, default ``poll_interval`` 0.2 s, in
  a process of its own on Redis; in memory it shares the committing process's GIL) while
  one thread commits at ``--rate`` commits/s for ``--seconds``; on a store that pushes,
  side by side with the same consumer made to poll; and the consumer process's CPU (and
  the Redis server's) per second while nothing arrives;
* on Redis (node and Cluster): catch-up with 1, 2 and 4 consumer processes sharing one
  consumer name (lease 1 s), timed from the moment they all start until every bucket's
  checkpoint is at the end of its feed; with a handler that does nothing, then with one
  that waits ``--work-ms`` per event (as one writing to another system would).

With ``--aio`` the started consumer of the latency rows is ``kvsourcing.aio.FeedConsumer``
instead, on an event loop (in the worker process on Redis, on a thread of this one over
the same ``MemoryDriver`` in memory), and only those rows are measured (not on DynamoDB,
whose store here is moto in process, sync).

The machine has 2 cores shared with the servers (and other work): catch-up with 4
processes cannot scale past them. Run: ``python bench/feed_bench.py [--events N]
[--rate R] [--seconds S] [--stores memory,redis,cluster,dynamodb] [--aio]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from kvsourcing.handlers import PublishedEvent
from kvsourcing.stores.keyvalue import FeedConsumer, partition_bucket
from kvsourcing.testing.domain import Counter, Incremented, registry
from kvsourcing.testing.servers import start_cluster, start_server, stop_cluster

AGGREGATES = 200
STORE_PREFIX = "bench"


class Clock:
    """A handler noting when each event of ``prefix`` arrived (``time.monotonic``, one clock
    for every process on Linux), and how many did; ``out`` also gets a line per event."""

    def __init__(self, prefix: str, out: Any = None) -> None:
        self.prefix = prefix
        self.out = out
        self.arrived: dict[tuple[str, int], float] = {}
        self.count = 0

    def handle(self, published: PublishedEvent) -> None:
        if published.key.startswith(self.prefix):
            now = time.monotonic()
            self.arrived.setdefault((published.key, published.sequence), now)
            self.count += 1
            if self.out is not None:
                self.out.write(f"{published.key} {published.sequence} {now}\n")


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


def commit_markers(store: Any, prefix: str) -> list[tuple[str, int]]:
    """Commit one event in every bucket: once they all arrive, a consumer that started at
    the beginning of the feed has caught up (each bucket is read on its own)."""
    buckets = store.driver.buckets
    keys: dict[int, str] = {}
    for n in itertools.count():
        keys.setdefault(partition_bucket(f"{prefix}marker-{n}", buckets), f"{prefix}marker-{n}")
        if len(keys) == buckets:
            break
    for key in keys.values():
        counter = Counter(key, store)
        counter.apply_event(Incremented())
        counter.commit()
    return [(key, 1) for key in keys.values()]


def wait_for(arrived: Callable[[], dict[tuple[str, int], float]], keys: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(key in arrived() for key in keys):
        if time.monotonic() > deadline:
            raise RuntimeError("the consumer did not deliver every event in time")
        time.sleep(0.005)


def commit_steadily(store: Any, prefix: str, rate: float, seconds: float) -> dict[tuple[str, int], float]:
    """``rate`` one-event commits a second for ``seconds``; when each was sent."""
    counters = [Counter(f"{prefix}{n}", store) for n in range(AGGREGATES)]
    sent: dict[tuple[str, int], float] = {}
    start = time.monotonic()
    for n in range(int(rate * seconds)):
        pause = start + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        counter = counters[n % AGGREGATES]
        counter.apply_event(Incremented())
        sent[(counter.get_key(), counter.sequence_number())] = time.monotonic()
        counter.commit()
    return sent


def delays(sent: dict[tuple[str, int], float], arrived: dict[tuple[str, int], float]) -> dict[str, float]:
    """p50 and p99 commit-to-handler delay in ms."""
    ms = sorted((arrived[key] - at) * 1000 for key, at in sent.items())
    return {"p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))]}


def latency(
    store: Any, rate: float, seconds: float, push: bool, url: str | None, use_aio: bool = False
) -> dict[str, float]:
    """Commit-to-handler p50/p99 (ms) at ``rate`` commits/s, and CPU ms/s while idle, of a
    started consumer (the asyncio one with ``use_aio``): in a process of its own when the
    store has a ``url``, else in this one (where the committing thread and the consumer's
    share the GIL)."""
    prefix = f"live-{uuid.uuid4().hex[:8]}-"
    name = f"live-{uuid.uuid4().hex[:8]}"
    if url is None:
        clock = Clock(prefix)
        with started(store, name, clock, push, use_aio):
            wait_for(lambda: clock.arrived, commit_markers(store, prefix))
            sent = commit_steadily(store, prefix, rate, seconds)
            wait_for(lambda: clock.arrived, sent)
            return {**delays(sent, clock.arrived), **idle_cpu(store, None)}
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "arrivals"
        flags = [str(int(push)), str(int(use_aio))]
        command = [sys.executable, __file__, "--latency-worker", url, prefix, name, *flags, str(path)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: arrivals(path), commit_markers(store, prefix))
            sent = commit_steadily(store, prefix, rate, seconds)
            wait_for(lambda: arrivals(path), sent)
            return {**delays(sent, arrivals(path)), **idle_cpu(store, process.pid)}
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextmanager
def started(store: Any, name: str, clock: Clock, push: bool, use_aio: bool) -> Iterator[None]:
    """A started consumer of ``store`` in this process (made to poll unless ``push``, the
    baseline side by side): the sync one, or with ``use_aio`` the asyncio one on an event
    loop of its own thread, over the same memory driver."""
    if not use_aio:
        consumer = FeedConsumer(store, name, registry())
        consumer._pushes = push
        consumer.add_handler(clock)
        consumer.start()
        try:
            yield
        finally:
            consumer.stop()
        return
    from kvsourcing import aio
    from kvsourcing.stores.keyvalue.aio import AsyncKeyValueStore
    from kvsourcing.stores.memory import AsyncMemoryDriver

    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    ready = threading.Event()

    async def consume() -> None:
        async_store = AsyncKeyValueStore(AsyncMemoryDriver(store.driver))
        consumer = aio.FeedConsumer(async_store, name, registry())
        consumer._pushes = push
        consumer.add_handler(clock)
        consumer.start()
        stop = asyncio.Event()
        running.append((asyncio.get_running_loop(), stop))
        ready.set()
        await stop.wait()
        await consumer.stop()

    thread = threading.Thread(target=asyncio.run, args=(consume(),))
    thread.start()
    ready.wait()
    try:
        yield
    finally:
        loop, stop = running[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join()


def arrivals(path: Path) -> dict[tuple[str, int], float]:
    """The lines a latency worker wrote: ``key sequence monotonic-time``."""
    if not path.exists():
        return {}
    lines = [line.split() for line in path.read_text().splitlines()]
    return {
        (key, int(sequence)): float(at) for key, sequence, at in (line for line in lines if len(line) == 3)
    }


def latency_worker(url: str, prefix: str, name: str, push: str, use_aio: str, path: str) -> None:
    """A started consumer writing when each event arrived, until SIGTERM."""
    from kvsourcing.stores import redis as redis_store

    if use_aio == "1":
        asyncio.run(aio_latency_worker(url, prefix, name, push, path))
        return
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    store = redis_store.from_url(url, prefix=STORE_PREFIX)
    with open(path, "a", buffering=1) as out:
        consumer = FeedConsumer(store, name, registry())
        consumer._pushes = push == "1"
        consumer.add_handler(Clock(prefix, out))
        consumer.start()
        stopping.wait()
        consumer.stop()
    store.close()


async def aio_latency_worker(url: str, prefix: str, name: str, push: str, path: str) -> None:
    """``latency_worker`` with the asyncio consumer."""
    from kvsourcing import aio
    from kvsourcing.stores import redis as redis_store

    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    store = await redis_store.open_async(url, prefix=STORE_PREFIX)
    with open(path, "a", buffering=1) as out:
        consumer = aio.FeedConsumer(store, name, registry())
        consumer._pushes = push == "1"
        consumer.add_handler(Clock(prefix, out))
        consumer.start()
        await stopping.wait()
        await consumer.stop()
    await store.close()


def idle_cpu(store: Any, pid: int | None, seconds: float = 5.0) -> dict[str, float]:
    """CPU ms per second of the consumer's process (``pid``, else this one) and of the
    Redis server (when there is one) while the started consumer has nothing to deliver."""
    time.sleep(0.5)
    server = redis_cpu(store)
    before = process_cpu(pid)
    time.sleep(seconds)
    result = {"cpu": (process_cpu(pid) - before) / seconds * 1000}
    if server is not None:
        result["server_cpu"] = ((redis_cpu(store) or 0.0) - server) / seconds * 1000
    return result


def process_cpu(pid: int | None) -> float:
    """CPU seconds used so far by process ``pid`` (Linux ``/proc``), or by this one."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu(store: Any) -> float | None:
    """The Redis servers' CPU seconds so far (summed over a Cluster's nodes), else None."""
    client = getattr(store.driver, "client", None)
    if client is None or not hasattr(client, "info"):
        return None
    reply = client.info("cpu")
    infos = reply.values() if isinstance(next(iter(reply.values())), dict) else [reply]
    return sum(info["used_cpu_sys"] + info["used_cpu_user"] for info in infos)


def processes_catch_up(url: str, events: int, counts: tuple[int, ...], work_ms: float) -> dict[int, float]:
    """Events/s of ``n`` consumer processes of one name draining ``events`` commits, their
    handler sleeping ``work_ms`` per event (as one that writes elsewhere would wait)."""
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
                        str(work_ms),
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
                pending = dict(ends)  # read only the checkpoints not yet at their end: reads cost too
                while pending:
                    time.sleep(0.02)
                    names = [f"consumer/{name}/checkpoint/{bucket}" for bucket in pending]
                    for bucket, raw in zip(list(pending), driver.read_values(names), strict=True):
                        if raw is not None and raw.decode() == pending[bucket]:
                            del pending[bucket]
                rates[count] = events / (time.perf_counter() - started)
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.wait(timeout=30)
        store.close()
    return rates


class Working:
    """A handler that takes ``seconds`` per event without using the CPU."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def handle(self, published: PublishedEvent) -> None:
        time.sleep(self.seconds)


def worker(url: str, prefix: str, name: str, go: str, ready: str, work_ms: str) -> None:
    """One consumer process of ``processes_catch_up``: consume from ``go`` until killed."""
    from kvsourcing.stores import redis as redis_store

    store = redis_store.from_url(url, prefix=prefix)
    consumer = FeedConsumer(store, name, registry(), lease_seconds=1.0)
    consumer.add_handler(Working(float(work_ms) / 1000) if float(work_ms) else Clock("order-"))
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
                yield "Redis", redis_store.from_url(server.url, prefix=STORE_PREFIX), server.url
            if "cluster" in names:
                cluster = start_cluster(workdir / "cluster")
                stack.callback(stop_cluster, cluster)
                yield "Redis Cluster", redis_store.from_url(cluster.url, prefix=STORE_PREFIX), cluster.url
            if "dynamodb" in names:
                store = guarded("DynamoDB (moto)", dynamodb_store, stack)
                if store is not None:
                    yield "DynamoDB (moto)", store, None

        yield each()


def dynamodb_store(stack: ExitStack) -> Any:
    """A store on a table of moto in process (which lives as long as ``stack``), serving
    one request at a time: moto is not safe for a committing and a consuming thread."""
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
    parser.add_argument("--dynamodb-rate", type=float, default=20.0, help="moto serves ~300 requests/s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stores", default="memory,redis,cluster,dynamodb")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--work-ms", type=float, default=0.5, help="per event, in the processes' second run")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--aio", action="store_true", help="the latency rows with the asyncio consumer")
    parser.add_argument("--latency-worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if args.latency_worker:
        latency_worker(*args.latency_worker)
        return
    counts = tuple(int(n) for n in args.processes.split(","))
    with tempfile.TemporaryDirectory() as workdir, stores(args.stores.split(","), Path(workdir)) as each:
        for name, store, url in each:
            moto = name.startswith("DynamoDB")
            if args.aio and moto:
                print(f"{name}: not measured with --aio (its store here is moto in process, sync)")
                store.close()
                continue
            pushes = True if args.aio else store.driver.pushes  # the async memory and Redis drivers push
            consumer = "asyncio consumer" if args.aio else "consumer"
            print(f"{name} ({consumer}, pushes: {pushes})", flush=True)
            events, commits = (args.dynamodb_events, args.dynamodb_rate) if moto else (args.events, args.rate)
            rate = None if args.aio else guarded("catch-up", catch_up, store, events)
            if rate is not None:
                print(f"  catch-up, 1 consumer: {rate:,.0f} events/s ({events} events)")
            modes = (True, False) if pushes else (False,)
            for push in modes:
                figures = guarded("latency", latency, store, commits, args.seconds, push, url, args.aio)
                if figures is not None:
                    server = f", server {figures['server_cpu']:.1f}" if "server_cpu" in figures else ""
                    print(
                        f"  {'push' if push else 'poll'} at {commits:.0f} commits/s: "
                        f"p50 {figures['p50']:.2f} ms, "
                        f"p99 {figures['p99']:.2f} ms; idle CPU ms/s: "
                        f"consumer process {figures['cpu']:.1f}{server}"
                    )
            if url is not None and not args.aio:
                for work_ms in (0.0, args.work_ms):
                    rates = guarded("processes", processes_catch_up, url, args.events, counts, work_ms)
                    for count, rate in (rates or {}).items():
                        print(
                            f"  catch-up, {count} consumer process(es), handler {work_ms} ms/event: "
                            f"{rate:,.0f} events/s"
                        )
            store.close()


if __name__ == "__main__":
    main()
