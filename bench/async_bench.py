"""asyncio against threads and against the async floor, side by side in one run (a script,
not a test): ``python bench/async_bench.py [--rounds N]``.

Each case makes 1 000 commits of one event over 100 aggregates (10 in a row on each, the
aggregates at once) on a ``redis-server`` it starts:

* ``kvsourcing.aio`` on one event loop: 100 coroutines, each committing its aggregate's
  events with ``acommit()``;
* the sync store driven by a pool of 16 threads, the 100 aggregates shared among them;
* the async floor: ``redis.asyncio`` ``EVALSHA`` of the store's own append script with the
  arguments it would send, 100 coroutines likewise.

Targets: async >= 1.5x the thread pool, >= 0.8x the async floor. Rounds alternate the
order of the three, and ratios are medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from kvsourcing.stores import redis as redis_store
from kvsourcing.stores.keyvalue import Commit
from kvsourcing.stores.redis.protocol import append_command
from kvsourcing.stores.redis.scripts import APPEND
from kvsourcing.testing.domain import Account, Deposited
from kvsourcing.testing.servers import running_server

AGGREGATES = 100
COMMITS = 10
THREADS = 16


@dataclass
class Rates:
    async_store: float
    threads: float
    floor: float


def keys() -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"async-bench-{run}-{n}" for n in range(AGGREGATES)]


async def async_store_round(store: Any) -> float:
    accounts = [Account(key, store) for key in keys()]

    async def commit_all(account: Account) -> None:
        for _ in range(COMMITS):
            account.apply_event(Deposited(1))
            await account.acommit()

    start = time.perf_counter()
    await asyncio.gather(*(commit_all(account) for account in accounts))
    return AGGREGATES * COMMITS / (time.perf_counter() - start)


def threads_round(store: Any, pool: ThreadPoolExecutor) -> float:
    accounts = [Account(key, store) for key in keys()]

    def commit_all(account: Account) -> None:
        for _ in range(COMMITS):
            account.apply_event(Deposited(1))
            account.commit()

    start = time.perf_counter()
    list(pool.map(commit_all, accounts))
    return AGGREGATES * COMMITS / (time.perf_counter() - start)


async def floor_round(client: redis.asyncio.Redis, store: Any) -> float:
    """The store's append script, called with what the store would send (records encoded
    before the clock starts), through ``redis.asyncio`` alone."""
    driver = store.driver
    record = Account("x", store)
    record.apply_event(Deposited(1))
    encoded = store._commit_of(record).records
    calls = {
        key: [
            append_command(driver, [Commit(key, n, encoded, None, uuid.uuid4().hex)]) for n in range(COMMITS)
        ]
        for key in keys()
    }
    await client.script_load(APPEND.source)

    async def commit_all(key: str) -> None:
        for command in calls[key]:
            await client.evalsha(*command)

    start = time.perf_counter()
    await asyncio.gather(*(commit_all(key) for key in calls))
    return AGGREGATES * COMMITS / (time.perf_counter() - start)


async def rounds_of_three(
    url: str, port: int, rounds: int, sync_store: Any, pool: ThreadPoolExecutor
) -> list[Rates]:
    """Every round runs the three cases back to back, in an order that rotates, each on a
    warm client of its own (the thread pool's round blocks the loop, which is idle then)."""
    client = redis.asyncio.Redis(port=port)
    results = []
    async with await redis_store.open_async(url) as store:
        cases: dict[str, Callable[[], Awaitable[float]]] = {
            "async": lambda: async_store_round(store),
            "threads": lambda: asyncio.sleep(0, threads_round(sync_store, pool)),
            "floor": lambda: floor_round(client, store),
        }
        for case in cases.values():
            await case()
        for index in range(rounds):
            names = list(cases)
            order = names[index % 3 :] + names[: index % 3]
            rates = {name: await cases[name]() for name in order}
            results.append(Rates(rates["async"], rates["threads"], rates["floor"]))
    await client.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the three cases (default 9)")
    rounds = parser.parse_args().rounds
    with running_server() as server:
        url, port = server.url, server.port
        with redis_store.from_url(url) as sync_store, ThreadPoolExecutor(THREADS) as pool:
            samples = asyncio.run(rounds_of_three(url, port, rounds, sync_store, pool))
    median = statistics.median
    print(f"{'case':<34}{'commits/s':>12}")
    print(f"{'kvsourcing.aio, one event loop':<34}{median(s.async_store for s in samples):>12.0f}")
    print(f"{'sync store, 16 threads':<34}{median(s.threads for s in samples):>12.0f}")
    print(f"{'redis.asyncio EVALSHA floor':<34}{median(s.floor for s in samples):>12.0f}")
    vs_threads = median(s.async_store / s.threads for s in samples)
    vs_floor = median(s.async_store / s.floor for s in samples)
    print(f"async / threads: {vs_threads:.2f} (target >= 1.5)")
    print(f"async / floor:   {vs_floor:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
