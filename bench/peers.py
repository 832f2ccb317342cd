"""kvsourcing against its Python peers, side by side in one run (a script, not a test).

Three pairs, each on the same machine in the same process:

* our memory store against pyeventsourcing's POPO (plain objects in memory);
* our Redis store, on a ``redis-server`` spawned on a free port, against pyeventsourcing
  on SQLite (a file in a temporary directory: its nearest local durable store);
* our DynamoDB store against eventsourcing-dynamodb, both on moto in-process, each
  measurement on a fresh, small table (moto copies and scans the table per request).

The same workload for each: an aggregate with one event type (``Deposited``); commands
that apply 1 or 10 events to an aggregate held in memory and commit them (neither side
reloads between commits); the reload of an aggregate with 1 000 events by a fresh
instance; and the 10-event commit and the reload again with snapshots every 100 events,
where both sides support snapshots. Each row is the median ops/s over interleaved rounds,
and the ratio is ours / theirs: above 1 we are faster.

It then checks correctness that speed must not buy: two writers at the same version
(does the peer refuse the second, or silently keep one?), and on DynamoDB a commit torn
by a failure between requests.

Run: ``python bench/peers.py [--rounds N] [--budget S] [--pairs memory,redis,dynamodb] [--json PATH]
[--profile]`` (``--pairs`` runs only those pairs, and starts only their servers).
Peers come from ``pip install 'kvsourcing[bench]'``; a peer that does not import is
reported and its rows skipped.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from dynamodb_bench import moto_dynamodb, peer_classes

from kvsourcing import ConcurrencyFault
from kvsourcing.protocols import EventStore
from kvsourcing.testing.domain import Account, Deposited
from kvsourcing.testing.servers import running_server

LOAD_EVENTS = 1000
SNAPSHOT_INTERVAL = 100
FILL_BATCH = 10
DYNAMODB_PAIR = "DynamoDB (moto)"
DYNAMODB_OPS = 20
"""Commits (or loads) per side per round on moto, on a fresh table: its cost grows with the table."""


class Contender:
    """One system in a pair: a fresh store per ``setup``, then commits and loads."""

    name = ""
    initial_events = 0
    """Events a new aggregate already has (pyeventsourcing records its creation)."""

    def setup(self, snapshot_interval: int) -> None:
        raise NotImplementedError

    def new_aggregate(self) -> Any:
        raise NotImplementedError

    def commit(self, aggregate: Any, events: int) -> None:
        raise NotImplementedError

    def load(self, aggregate: Any) -> int:
        """Reload ``aggregate`` into a fresh instance; returns its event count."""
        raise NotImplementedError

    def race(self) -> str:
        """Two writers at the same version: what happens to the second?"""
        raise NotImplementedError


class Ours(Contender):
    """kvsourcing on a store made by ``make_store(snapshot_interval)``."""

    def __init__(self, name: str, make_store: Callable[[int], EventStore]) -> None:
        self.name, self._make_store = name, make_store

    def setup(self, snapshot_interval: int) -> None:
        self.store = self._make_store(snapshot_interval)

    def new_aggregate(self) -> Account:
        return Account(f"acc-{uuid.uuid4()}", self.store)

    def commit(self, aggregate: Account, events: int) -> None:
        for _ in range(events):
            aggregate.apply_event(Deposited(1))
        aggregate.commit()

    def load(self, aggregate: Account) -> int:
        fresh = Account(aggregate.get_key(), self.store)
        fresh.refresh()
        return fresh.sequence_number()

    def race(self) -> str:
        self.setup(0)
        first = self.new_aggregate()
        self.commit(first, 1)
        second = Account(first.get_key(), self.store)
        second.refresh()
        self.commit(first, 1)
        try:
            self.commit(second, 1)
        except ConcurrencyFault as fault:
            outcome = f"second writer refused ({fault})"
        else:
            outcome = "SECOND WRITER ACCEPTED"
        return f"{outcome}; stored events: {self.load(first)} (expected 2)"


class PyEventsourcing(Contender):
    """pyeventsourcing 9 with a persistence module given by ``env``."""

    initial_events = 1

    def __init__(self, name: str, env: Callable[[], dict[str, str]]) -> None:
        self.name, self._env = name, env
        self._application, self._account = peer_classes()

    def setup(self, snapshot_interval: int) -> None:
        intervals = {self._account: snapshot_interval} if snapshot_interval else {}
        app_class = type("Bank", (self._application,), {"snapshotting_intervals": intervals})
        self.app = app_class(env=self._env())

    def new_aggregate(self) -> Any:
        account = self._account()
        self.app.save(account)
        return account

    def commit(self, aggregate: Any, events: int) -> None:
        for _ in range(events):
            aggregate.deposit(1)
        self.app.save(aggregate)

    def load(self, aggregate: Any) -> int:
        return self.app.repository.get(aggregate.id).version

    def race(self) -> str:
        from eventsourcing.persistence import RecordConflictError

        self.setup(0)
        account = self.new_aggregate()
        first = self.app.repository.get(account.id)
        second = self.app.repository.get(account.id)
        first.deposit(1)
        self.app.save(first)
        second.deposit(2)
        try:
            self.app.save(second)
        except RecordConflictError as err:
            outcome = f"second writer refused ({type(err).__name__})"
        else:
            outcome = "SECOND WRITER ACCEPTED SILENTLY"
        kept = self.app.repository.get(account.id)
        return (
            f"{outcome}; stored events: {kept.version} (expected 2), "
            f"balance {kept.balance} (first writer's deposit of 1 {'kept' if kept.balance == 1 else 'LOST'})"
        )


def peer_versions() -> dict[str, str]:
    versions = {}
    for name in ("kvsourcing", "eventsourcing", "eventsourcing-dynamodb", "redis", "moto", "boto3"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class Budget:
    """How long one side runs in one round: ``seconds``, but never more than ``ops`` operations
    (on moto a commit copies the whole table, so a long run measures moto's table growth)."""

    seconds: float
    ops: int = 1_000_000


@dataclass
class Row:
    """One measured row: ours and theirs in ops/s, and ours / theirs."""

    pair: str
    operation: str
    ours: float | None
    theirs: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.ours / self.theirs if self.ours and self.theirs else None


def timed_rate(body: Callable[[], object], budget: Budget, minimum: int) -> float:
    """Ops/s of ``body`` run for the budget's seconds (at least ``minimum``, at most its ``ops`` times)."""
    done, start = 0, time.perf_counter()
    while True:
        body()
        done += 1
        elapsed = time.perf_counter() - start
        if (elapsed >= budget.seconds and done >= minimum) or done >= budget.ops:
            return done / elapsed


def filled(contender: Contender, events: int) -> Any:
    """A new aggregate holding ``events`` events, written ``FILL_BATCH`` at a time."""
    aggregate = contender.new_aggregate()
    remaining = events - contender.initial_events
    while remaining:
        batch = min(FILL_BATCH, remaining)
        contender.commit(aggregate, batch)
        remaining -= batch
    return aggregate


def commit_case(events: int) -> Callable[[Contender, Budget], float]:
    def case(contender: Contender, budget: Budget) -> float:
        aggregate = contender.new_aggregate()
        return timed_rate(lambda: contender.commit(aggregate, events), budget, 3)

    return case


def load_case(contender: Contender, budget: Budget) -> float:
    aggregate = filled(contender, LOAD_EVENTS)

    def load() -> None:
        if contender.load(aggregate) != LOAD_EVENTS:
            raise AssertionError(f"{contender.name} did not reload {LOAD_EVENTS} events")

    return timed_rate(load, budget, 2)


CASES: list[tuple[str, int, Callable[[Contender, Budget], float]]] = [
    ("commit 1 event", 0, commit_case(1)),
    ("commit 10 events", 0, commit_case(10)),
    ("load 1 000 events", 0, load_case),
    (f"commit 10 events, snapshots/{SNAPSHOT_INTERVAL}", SNAPSHOT_INTERVAL, commit_case(10)),
    (f"load 1 000 events, snapshots/{SNAPSHOT_INTERVAL}", SNAPSHOT_INTERVAL, load_case),
]


def compare(
    ours: Contender,
    theirs: Contender,
    case: Callable[[Contender, Budget], float],
    snapshots: int,
    rounds: int,
    budget: Budget,
) -> tuple[float, float]:
    """Median ops/s of each side, the sides alternating round by round on fresh stores."""
    samples: dict[str, list[float]] = {"ours": [], "theirs": []}
    for index in range(rounds):
        order = [("ours", ours), ("theirs", theirs)]
        for side, contender in order if index % 2 == 0 else reversed(order):
            contender.setup(snapshots)
            samples[side].append(case(contender, budget))
    return statistics.median(samples["ours"]), statistics.median(samples["theirs"])


PROFILE_GROUPS = (
    ("kvsourcing", ("/core/", "/stores/", "kvsourcing")),
    ("socket wait (server)", ("recv_into", "sendall", "'poll'", "'select'")),
    ("moto (the fake server)", ("/moto/", "/werkzeug/", "/responses/")),
    ("boto3/botocore", ("/botocore/", "/boto3/")),
    ("redis-py", ("/redis/", "hiredis")),
    ("msgpack", ("msgpack",)),
    ("typing.get_type_hints", ("typing.py",)),
    ("copy.deepcopy", ("copy.py",)),
    ("uuid", ("uuid.py",)),
)


def profile_ours(ours: Contender, budget: Budget) -> str:
    """Where our side's time goes per operation: cProfile own time by library, then the top functions."""
    out = io.StringIO()
    for label, snapshots, case in (CASES[0], CASES[2], CASES[4]):
        ours.setup(snapshots)
        profiler = cProfile.Profile()
        profiler.runcall(case, ours, budget)
        stats = pstats.Stats(profiler, stream=out)
        shares: dict[str, float] = {}
        for (filename, _, function), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
            where = f"{filename}:{function}"
            group = next((g for g, marks in PROFILE_GROUPS if any(m in where for m in marks)), "other")
            shares[group] = shares.get(group, 0.0) + own
        total = sum(shares.values()) or 1.0
        split = ", ".join(f"{g} {t / total:.0%}" for g, t in sorted(shares.items(), key=lambda i: -i[1]))
        print(f"--- {ours.name}: {label}: {split}", file=out)
        stats.sort_stats("tottime").print_stats(6)
    return out.getvalue()


def fresh_table() -> str:
    return f"peers-{uuid.uuid4().hex[:12]}"


class TableRotation:
    """Each call drops the previous table, so moto holds only the tables in use."""

    def __init__(self, client: Any, create: Callable[[str], None]) -> None:
        self._client, self._create, self._current = client, create, ""

    def __call__(self) -> str:
        if self._current:
            self._client.delete_table(TableName=self._current)
        self._current = fresh_table()
        self._create(self._current)
        return self._current


def peer_dynamodb_env(client: Any) -> Callable[[], dict[str, str]]:
    """eventsourcing-dynamodb's settings, each call on a new table of its key schema."""

    def create(table: str) -> None:
        client.create_table(
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

    tables = TableRotation(client, create)

    def env() -> dict[str, str]:
        table = tables()
        return {"PERSISTENCE_MODULE": "eventsourcing_dynamodb", "DYNAMO_TABLE": table}

    return env


class FailingCall:
    """A botocore ``before-call`` hook that fails the ``nth`` call of ``operation``, once."""

    def __init__(self, client: Any, operation: str, nth: int) -> None:
        self._client, self._operation, self._left = client, operation, nth
        client.meta.events.register(f"before-call.dynamodb.{operation}", self)

    def __call__(self, **_: Any) -> None:
        self._left -= 1
        if self._left == 0:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="injected failure")

    def remove(self) -> None:
        self._client.meta.events.unregister(f"before-call.dynamodb.{self._operation}", self)


def torn_commit(contender: Contender, client: Any, operation: str, nth: int) -> str:
    """Commit 30 events while the ``nth`` request of ``operation`` fails; what was stored?"""
    aggregate = contender.new_aggregate()
    before = contender.load(aggregate)
    failing = FailingCall(client, operation, nth)
    try:
        contender.commit(aggregate, 30)
        outcome = "commit succeeded despite the failure"
    except Exception as err:
        outcome = f"commit failed ({type(err).__name__})"
    finally:
        failing.remove()
    stored = contender.load(aggregate) - before
    verdict = "atomic" if stored in (0, 30) else "TORN: part of the commit is stored"
    return f"{outcome}; {stored} of 30 events stored: {verdict}"


def peer_snapshot_check(client: Any) -> str:
    """eventsourcing-dynamodb with snapshots on: are the events still intact?"""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Counted(Aggregate):
        def __init__(self) -> None:
            self.total = 0

        @event("Added")
        def add(self) -> None:
            self.total += 1

    class App(Application):
        snapshotting_intervals = {Counted: 10}  # noqa: RUF012 - pyeventsourcing's class setting

    app = App(env=peer_dynamodb_env(client)())
    aggregate = Counted()
    for _ in range(14):
        aggregate.add()
    try:
        app.save(aggregate)
        saved = "save succeeded"
    except Exception as err:
        saved = f"save raised {type(err).__name__} {err}".strip()
    stored = app.events.recorder.select_events(aggregate.id)
    topics = sorted({e.topic.rsplit(".", 1)[-1] for e in stored})
    try:
        total = app.repository.get(aggregate.id).total
    except Exception as err:
        total = f"{type(err).__name__} {err}".strip()
    return (
        f"15 events, a snapshot due at 10: {saved}; the table holds {len(stored)} items "
        f"({', '.join(topics)}); reload total: {total} (expected 14)"
    )


@dataclass
class Pair:
    """A row group: our contender against a peer (``None`` when the peer is missing)."""

    name: str
    ours: Contender
    theirs: Contender | None
    missing: str = ""
    snapshots: bool = True
    snapshot_note: str = ""
    client: Any = None
    """The boto3 client of the DynamoDB pair, for the failure checks."""
    max_ops: int = 1_000_000
    """Operations per side per round at most (see ``Budget``)."""
    prepare: Callable[[], None] | None = None
    """Run before the pair's rows (e.g. to switch the server's durability)."""


def fsync_always(client: Any) -> None:
    """Make the Redis server durable per commit, as SQLite is: AOF with ``appendfsync always``."""
    client.config_set("appendfsync", "always")
    client.config_set("appendonly", "yes")
    deadline = time.monotonic() + 30
    while client.info("persistence")["aof_rewrite_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.05)


PAIR_GROUPS = ("memory", "redis", "dynamodb")


def make_pairs(stack: ExitStack, wanted: frozenset[str]) -> list[Pair]:
    """The pairs of the groups in ``wanted`` (``PAIR_GROUPS``), their servers started on ``stack``."""
    from kvsourcing.stores import memory

    pairs: list[Pair] = []
    if "memory" in wanted:
        theirs, missing = peer("pyeventsourcing POPO", lambda: {"PERSISTENCE_MODULE": "eventsourcing.popo"})
        ours = Ours("kvsourcing memory", lambda s: memory.new_store(snapshot_interval=s))
        pairs.append(Pair("memory", ours, theirs, missing))
    if "redis" in wanted:
        pairs += redis_pairs(stack)
    if "dynamodb" in wanted:
        pairs.append(dynamodb_pair(stack))
    return pairs


def peer(name: str, env: Callable[[], dict[str, str]]) -> tuple[Contender | None, str]:
    """pyeventsourcing with the settings ``env`` gives, or why it is missing."""
    try:
        return PyEventsourcing(name, env), ""
    except ImportError as err:
        return None, f"{name} skipped: {err}"


def redis_pairs(stack: ExitStack) -> list[Pair]:
    """Redis against SQLite, without persistence and then with ``appendfsync always``."""
    from kvsourcing.stores import redis as redis_store

    pairs = []
    client = stack.enter_context(running_server()).client()
    stack.callback(client.close)
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))

    def sqlite_env() -> dict[str, str]:
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(workdir / f"{uuid.uuid4().hex}.sqlite"),
        }

    theirs, missing = peer("pyeventsourcing SQLite file", sqlite_env)
    ours = Ours("kvsourcing Redis", lambda s: redis_store.new_store(client, snapshot_interval=s))
    pairs.append(Pair("Redis vs SQLite", ours, theirs, missing))
    durable = Ours("kvsourcing Redis fsync", lambda s: redis_store.new_store(client, snapshot_interval=s))
    pairs.append(
        Pair("Redis fsync vs SQLite", durable, theirs, missing, prepare=lambda: fsync_always(client))
    )
    return pairs


def dynamodb_pair(stack: ExitStack) -> Pair:
    """Our DynamoDB store against eventsourcing-dynamodb, both on moto."""
    from kvsourcing.stores import dynamodb

    aws = stack.enter_context(moto_dynamodb())

    our_tables = TableRotation(aws, lambda table: dynamodb.create_table(aws, table))

    def our_dynamodb(snapshot_interval: int) -> EventStore:
        table = our_tables()
        return dynamodb.new_store(table, client=aws, snapshot_interval=snapshot_interval)

    try:
        import eventsourcing_dynamodb  # noqa: F401 - only whether it imports
    except ImportError as err:
        theirs, missing = None, f"eventsourcing-dynamodb skipped: {err}"
    else:
        theirs, missing = peer("eventsourcing-dynamodb", peer_dynamodb_env(aws))
    return Pair(
        DYNAMODB_PAIR,
        Ours("kvsourcing DynamoDB", our_dynamodb),
        theirs,
        missing,
        snapshots=False,
        snapshot_note="eventsourcing-dynamodb: snapshots unusable (they share the events table)",
        client=aws,
        max_ops=DYNAMODB_OPS,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "versions": peer_versions(),
        "settings": {"rounds": args.rounds, "budget_seconds": args.budget, "dynamodb_ops": DYNAMODB_OPS},
        "rows": [],
        "correctness": [],
        "skipped": [],
    }
    with ExitStack() as stack:
        pairs = make_pairs(stack, args.pairs)
        for pair in pairs:
            if pair.prepare is not None:
                pair.prepare()
            if pair.theirs is None:
                print(pair.missing, file=sys.stderr)
                report["skipped"].append(pair.missing)
                continue
            for label, snapshots, case in CASES:
                if snapshots and not pair.snapshots:
                    report["rows"].append(
                        {**asdict(Row(pair.name, label, None, None, pair.snapshot_note)), "ratio": None}
                    )
                    continue
                print(f"  {pair.name}: {label} ...", file=sys.stderr, flush=True)
                budget = Budget(args.budget, pair.max_ops)
                ours, theirs = compare(pair.ours, pair.theirs, case, snapshots, args.rounds, budget)
                row = Row(pair.name, label, ours, theirs, f"{pair.ours.name} vs {pair.theirs.name}")
                report["rows"].append({**asdict(row), "ratio": row.ratio})
            for contender in (pair.ours, pair.theirs):
                if any(found["system"] == contender.name for found in report["correctness"]):
                    continue
                report["correctness"].append(
                    {
                        "system": contender.name,
                        "check": "two writers at one version",
                        "result": contender.race(),
                    }
                )
        dynamo = next((pair for pair in pairs if pair.name == DYNAMODB_PAIR), None)
        if dynamo is not None and dynamo.theirs is not None:
            checks = [
                (dynamo.ours, dynamo.client, "TransactWriteItems", 1),
                (dynamo.theirs, None, "BatchWriteItem", 2),
            ]
            for contender, client, operation, nth in checks:
                contender.setup(0)
                client = client or contender.app.recorder.dynamo_resource.meta.client
                report["correctness"].append(
                    {
                        "system": contender.name,
                        "check": f"commit of 30 events, {operation} request {nth} failing",
                        "result": torn_commit(contender, client, operation, nth),
                    }
                )
            report["correctness"].append(
                {
                    "system": dynamo.theirs.name,
                    "check": "snapshots on",
                    "result": peer_snapshot_check(dynamo.client),
                }
            )
        if args.profile:
            report["profile"] = {
                pair.name: profile_ours(pair.ours, Budget(args.budget, pair.max_ops)) for pair in pairs
            }
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"Python {report['machine']['python']}, {report['machine']['cpus']} CPUs; "
        + ", ".join(f"{name} {version}" for name, version in report["versions"].items())
    )
    print("medians of interleaved rounds; ratio = our ops/s / theirs (> 1: we are faster; target >= 2)\n")
    print(f"{'pair':<23}{'operation':<36}{'ours ops/s':>12}{'theirs ops/s':>14}{'ratio':>8}")
    for row in report["rows"]:
        if row["ratio"] is None:
            print(f"{row['pair']:<23}{row['operation']:<36}{'-':>12}{'-':>14}{'-':>8}  {row['note']}")
            continue
        flag = "" if row["ratio"] >= 2 else "  < 2x"
        print(
            f"{row['pair']:<23}{row['operation']:<36}{row['ours']:>12.1f}{row['theirs']:>14.1f}"
            f"{row['ratio']:>8.2f}{flag}"
        )
    for skipped in report["skipped"]:
        print(f"(skipped) {skipped}")
    print("\ncorrectness")
    for finding in report["correctness"]:
        print(f"  {finding['system']:<30}{finding['check']}: {finding['result']}")
    for name, text in report.get("profile", {}).items():
        print(f"\nprofile of our side, {name}\n{text}")


def pair_groups(text: str) -> frozenset[str]:
    """``--pairs``: the named groups of ``PAIR_GROUPS``."""
    groups = frozenset(name.strip().lower() for name in text.split(",") if name.strip())
    unknown = groups - set(PAIR_GROUPS)
    if unknown or not groups:
        raise argparse.ArgumentTypeError(f"pairs are {', '.join(PAIR_GROUPS)}; got {text!r}")
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per row (default 5)")
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per side per round (default 0.3)")
    parser.add_argument(
        "--pairs",
        type=pair_groups,
        default=frozenset(PAIR_GROUPS),
        help=f"comma-separated pairs to run, of {','.join(PAIR_GROUPS)} (default: all)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--profile", action="store_true", help="cProfile our side of each pair")
    args = parser.parse_args()
    report = run(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
