"""DynamoDB store benchmark on moto in-process: kvsourcing against a raw boto3 floor and
eventsourcing-dynamodb, side by side in one run (a script, not a test).

Operations: a commit of 1 event, a commit of 10 events (each on an aggregate already in
memory: no load; kvsourcing with its feed, and with ``feed=False``), and the load of a
1 000-event aggregate (written as 100 commits of 10, and as 1 000 commits of 1). Every
system gets fresh, small tables for every measurement, since moto copies the whole table
on each transaction. Prints medians over rounds, ratios to the
raw floor, and DynamoDB requests per operation (counted by botocore's ``before-call``).
Times are the process's CPU time (``time.process_time``), client and in-process moto alike:
on a shared 2-core machine wall-clock times swing 2-3x with the neighbours' load.

Run: ``python bench/dynamodb_bench.py``. eventsourcing-dynamodb is compared when importable,
e.g. from a throwaway venv::

    python -m venv --system-site-packages /tmp/esvenv
    /tmp/esvenv/bin/pip install eventsourcing eventsourcing-dynamodb
    /tmp/esvenv/bin/python bench/dynamodb_bench.py
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack

from kvsourcing.testing.domain import Account, Deposited
from kvsourcing.testing.moto import REGION, mocked_aws
from kvsourcing.testing.requests import count_requests


@functools.cache
def peer_classes() -> tuple[type, type]:
    """pyeventsourcing's ``Application`` and our workload's aggregate in its style, defined once
    (it registers each aggregate class under a topic, and refuses a second class of one name)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class PeerAccount(Aggregate):
        def __init__(self) -> None:
            self.balance = 0

        @event("Deposited")
        def deposit(self, amount: int) -> None:
            self.balance += amount

    return Application, PeerAccount


def table_name() -> str:
    return f"bench-{uuid.uuid4().hex[:12]}"


class System:
    """One contender: a fresh table per ``setup`` (the previous one dropped), then operations."""

    name = ""
    _client: Any
    _table: str | None = None

    def setup(self) -> None:
        if self._table is not None:
            self._client.delete_table(TableName=self._table)
        self._table = table_name()
        self.create(self._table)

    def create(self, table: str) -> None:
        raise NotImplementedError

    def new_aggregate(self) -> Any:
        raise NotImplementedError

    def commit(self, aggregate: Any, events: int) -> None:
        raise NotImplementedError

    def load(self, aggregate: Any) -> int:
        raise NotImplementedError

    def requests(self) -> Counter[str]:
        raise NotImplementedError


class Kvsourcing(System):
    """Our store; ``feed=False`` keeps no feed (a commit is one ``TransactWriteItems``)."""

    def __init__(self, client: Any, *, feed: bool = True) -> None:
        from kvsourcing.stores.dynamodb import create_table, new_store

        self.name = "kvsourcing" if feed else "kvsourcing feed=False"
        self._client, self._create, self._new_store = client, create_table, new_store
        self._feed = feed
        self._counts = count_requests(client)

    def create(self, table: str) -> None:
        self._create(self._client, table)
        self._store = self._new_store(table, client=self._client, feed=self._feed)

    def new_aggregate(self) -> Any:
        return Account(f"acc-{uuid.uuid4()}", self._store)

    def commit(self, aggregate: Any, events: int) -> None:
        for _ in range(events):
            aggregate.apply_event(Deposited(1))
        aggregate.commit()

    def load(self, aggregate: Any) -> int:
        fresh = Account(aggregate.get_key(), self._store)
        fresh.refresh()
        return fresh.balance

    def requests(self) -> Counter[str]:
        return self._counts


class RawBoto3(System):
    """The floor: the same layout by hand, one TransactWriteItems per commit, one Query per load."""

    name = "raw boto3"

    def __init__(self, client: Any) -> None:
        from kvsourcing.stores.dynamodb import create_table

        self._client, self._create = client, create_table
        self._counts = count_requests(client)

    def create(self, table: str) -> None:
        self._create(self._client, table)

    def new_aggregate(self) -> Any:
        return {"key": f"acc-{uuid.uuid4()}", "seq": 0}

    def commit(self, aggregate: Any, events: int) -> None:
        records = [{"B": msgpack.packb({"type": "Deposited", "data": {"amount": 1}})} for _ in range(events)]
        key, expected = aggregate["key"], aggregate["seq"]
        last = expected + events
        self._client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"k": {"S": key}, "s": {"N": "0"}},
                        "UpdateExpression": "SET v = :v",
                        "ConditionExpression": "attribute_not_exists(v)" if expected == 0 else "v = :v0",
                        "ExpressionAttributeValues": {":v": {"N": str(last)}}
                        | ({":v0": {"N": str(expected)}} if expected else {}),
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {"k": {"S": key}, "s": {"N": str(last)}, "r": {"L": records}},
                    }
                },
            ]
        )
        aggregate["seq"] = last

    def load(self, aggregate: Any) -> int:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "k = :k AND s > :s",
            "ExpressionAttributeValues": {":k": {"S": aggregate["key"]}, ":s": {"N": "0"}},
            "ConsistentRead": True,
        }
        balance = 0
        while True:
            page = self._client.query(**request)
            for item in page["Items"]:
                for record in item["r"]["L"]:
                    balance += msgpack.unpackb(record["B"])["data"]["amount"]
            if "LastEvaluatedKey" not in page:
                return balance
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def requests(self) -> Counter[str]:
        return self._counts


class PyEventsourcing(System):
    """eventsourcing 9 with eventsourcing-dynamodb (one item per event, unconditioned writes)."""

    name = "eventsourcing-dynamodb"

    def __init__(self, client: Any) -> None:
        self._application, self._account_cls = peer_classes()
        self._client = client
        self._counts: Counter[str] = Counter()

    def create(self, table: str) -> None:
        self._client.create_table(
            TableName=table,
            KeySchema=[
                {"AttributeName": "originator_id", "KeyType": "HASH"},
                {"AttributeName": "originator_version", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "originator_id", "AttributeType": "S"},
                {"AttributeName": "originator_version", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        self._app = self._application(
            env={"PERSISTENCE_MODULE": "eventsourcing_dynamodb", "DYNAMO_TABLE": table}
        )
        counts = count_requests(self._app.recorder.dynamo_resource.meta.client)
        counts.update(self._counts)
        self._counts = counts

    def new_aggregate(self) -> Any:
        account = self._account_cls()
        self._app.save(account)
        return account

    def commit(self, aggregate: Any, events: int) -> None:
        for _ in range(events):
            aggregate.deposit(1)
        self._app.save(aggregate)

    def load(self, aggregate: Any) -> int:
        return self._app.repository.get(aggregate.id).balance

    def requests(self) -> Counter[str]:
        return self._counts


def commit_round(system: System, events: int, commits: int) -> tuple[float, float]:
    """Commits/s of ``commits`` commits of ``events`` events on a fresh table, and requests per commit."""
    system.setup()
    aggregate = system.new_aggregate()
    before = sum(system.requests().values())
    gc.collect()
    start = time.process_time()
    for _ in range(commits):
        system.commit(aggregate, events)
    elapsed = time.process_time() - start
    return commits / elapsed, (sum(system.requests().values()) - before) / commits


def load_round(system: System, per_commit: int, total: int, loads: int) -> tuple[float, float]:
    """Loads/s of a ``total``-event aggregate written ``per_commit`` at a time, and requests per load."""
    system.setup()
    aggregate = system.new_aggregate()
    for _ in range(total // per_commit):
        system.commit(aggregate, per_commit)
    before = sum(system.requests().values())
    gc.collect()
    start = time.process_time()
    for _ in range(loads):
        assert system.load(aggregate) == total
    elapsed = time.process_time() - start
    return loads / elapsed, (sum(system.requests().values()) - before) / loads


def compare(
    systems: list[System], rounds: int, run: Callable[[System], tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """Median ops/s and requests/op per system; rounds interleave systems in rotating order."""
    rates: dict[str, list[float]] = {s.name: [] for s in systems}
    requests: dict[str, float] = {}
    for r in range(rounds):
        for system in systems[r % len(systems) :] + systems[: r % len(systems)]:
            rate, requests[system.name] = run(system)
            rates[system.name].append(rate)
    return {name: (statistics.median(rates[name]), requests[name]) for name in rates}


@contextmanager
def moto_dynamodb() -> Iterator[Any]:
    """moto in-process (one request at a time, its table copies unpatched: see README.md)
    with throwaway credentials; yields a boto3 client."""
    from kvsourcing.stores.dynamodb import make_client

    with tempfile.TemporaryDirectory() as workdir, mocked_aws(Path(workdir), copy_once=False):
        yield make_client(REGION)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commits", type=int, default=50, help="commits per round")
    parser.add_argument("--loads", type=int, default=5, help="loads per round")
    args = parser.parse_args()

    from kvsourcing.stores.dynamodb import make_client

    with moto_dynamodb():
        systems: list[System] = [
            RawBoto3(make_client(REGION)),
            Kvsourcing(make_client(REGION)),
            Kvsourcing(make_client(REGION), feed=False),
        ]
        try:
            systems.append(PyEventsourcing(make_client(REGION)))
        except ImportError as err:
            print(
                f"eventsourcing-dynamodb not compared: it is not installed here ({err}); "
                "see this script's docstring for a venv that has it\n"
            )
        cases: list[tuple[str, int, Callable[[System], tuple[float, float]]]] = [
            ("commit 1 event", args.rounds, lambda s: commit_round(s, 1, args.commits)),
            ("commit 10 events", args.rounds, lambda s: commit_round(s, 10, args.commits)),
            ("load 1000 (100x10)", args.rounds, lambda s: load_round(s, 10, 1000, args.loads)),
            ("load 1000 (1000x1)", max(1, args.rounds // 2), lambda s: load_round(s, 1, 1000, args.loads)),
        ]
        print(f"moto in-process, CPU time, medians of {args.rounds} rounds; ratio = ops/s over raw boto3's")
        print(f"{'operation':<20} {'system':<24} {'ops/s':>9} {'ratio':>7} {'requests/op':>12}")
        for label, rounds, run in cases:
            results = compare(systems, rounds, run)
            floor = results[systems[0].name][0]
            for system in systems:
                rate, requests = results[system.name]
                print(f"{label:<20} {system.name:<24} {rate:>9.1f} {rate / floor:>7.2f} {requests:>12.2f}")


if __name__ == "__main__":
    main()
