"""The Redis store while the deployment changes under it, on real servers: a replica
promoted, a Cluster primary killed and failed over, a slot migrated mid-commit.

Writers commit groups of records whose text names the commit, so that afterwards every
stored list can be cut back into whole commits: a half-written commit, a lost or a
duplicated one shows. Every error a writer sees must be a ``StoreUnavailableError``.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from kvsourcing.errors import StoreUnavailableError
from kvsourcing.stores.keyvalue import ALREADY_STORED, Commit, partition_bucket
from kvsourcing.stores.redis import RedisDriver, scripts
from kvsourcing.testing.servers import (
    HOST,
    RedisClusterNodes,
    RedisServer,
    info,
    start_cluster,
    start_replica,
    start_server,
    stop_cluster,
    wait_for_cluster_ok,
)

RECORD = re.compile(rb"(?P<commit>[^|]+)\|(?P<index>\d+)/(?P<size>\d+)")


@dataclass
class Acked:
    """A commit a writer saw succeed: when, and whether ``WAIT`` saw a replica take it."""

    key: str
    first: int
    records: list[bytes]
    at: float
    replicated: bool | None = None


@dataclass
class Writer:
    """A thread committing groups of 1 to 3 records to its own aggregates, round robin.

    A commit that fails with ``StoreUnavailableError`` is sent again, same commit id, until
    it succeeds (or its id is found stored); a head that moved back (a lost write) is
    noted and followed. ``after_commit`` may return whether the commit was replicated.
    """

    driver: RedisDriver
    keys: list[str]
    name: str
    after_commit: Callable[[], bool] | None = None
    acked: list[Acked] = field(default_factory=list)
    unavailable: list[StoreUnavailableError] = field(default_factory=list)
    unexpected: list[BaseException] = field(default_factory=list)
    went_back: list[tuple[str, int, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)

    def run(self) -> None:
        heads = dict.fromkeys(self.keys, 0)
        number = 0
        while not self.stop.is_set():
            key = self.keys[number % len(self.keys)]
            size = 1 + number % 3
            commit_id = f"{self.name}-{number}"
            records = [f"{commit_id}|{index}/{size}".encode() for index in range(size)]
            commit = Commit(key, heads[key], records, commit_id=commit_id)
            while not self.stop.is_set():
                try:
                    found = self.driver.append(commit)
                except StoreUnavailableError as err:
                    self.unavailable.append(err)
                    time.sleep(0.02)
                    continue
                except Exception as err:  # any other error is the finding
                    self.unexpected.append(err)
                    time.sleep(0.02)
                    continue
                if found is None or found == ALREADY_STORED:
                    acked = Acked(key, heads[key] + 1, records, time.monotonic())
                    if self.after_commit is not None:
                        acked.replicated = self.after_commit()
                    self.acked.append(acked)
                    heads[key] += size
                else:
                    self.went_back.append((key, heads[key], found))
                    heads[key] = found
                break
            number += 1

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), f"{self.name} did not stop"


def whole_commits(records: list[bytes]) -> list[list[bytes]]:
    """``records`` cut into commits; fails on a commit cut short or interleaved."""
    commits: list[list[bytes]] = []
    for record in records:
        match = RECORD.fullmatch(record)
        assert match, record
        index, size = int(match["index"]), int(match["size"])
        if index == 0:
            commits.append([record])
        else:
            assert commits and RECORD.fullmatch(commits[-1][0])["commit"] == match["commit"], record  # type: ignore[index]
            commits[-1].append(record)
        assert len(commits[-1]) == index + 1 <= size
    assert not commits or len(commits[-1]) == int(RECORD.fullmatch(commits[-1][0])["size"])  # type: ignore[index]
    return commits


@dataclass
class Check:
    """What a reader found of the writers' commits."""

    acked: int = 0
    lost: list[Acked] = field(default_factory=list)
    unacked_stored: int = 0


def check_stored(driver: RedisDriver, writers: list[Writer]) -> Check:
    """Every stored list is whole commits, each once, in the order written, each with one
    feed entry; returns what was acknowledged but is missing."""
    result = Check()
    stored: dict[str, list[list[bytes]]] = {}
    for writer in writers:
        for key in writer.keys:
            stored[key] = whole_commits(list(driver.load(key, 0, use_snapshot=False).records))
            names = [commit[0] for commit in stored[key]]
            assert len(names) == len(set(names)), f"a commit of {key} is stored twice"
        result.acked += len(writer.acked)
        for acked in writer.acked:
            if acked.records not in stored[acked.key]:
                result.lost.append(acked)
        result.unacked_stored += sum(len(commits) for key, commits in stored.items() if key in writer.keys)
    result.unacked_stored -= result.acked - len(result.lost)
    feed: dict[str, list[list[bytes]]] = {}
    for entry in driver.read_feed(dict.fromkeys(range(driver.buckets)), 1_000_000):
        if entry.key in stored:
            feed.setdefault(entry.key, []).append(list(entry.records))
    for key, commits in stored.items():
        assert feed.get(key, []) == commits, f"the feed of {key} differs from its list"
    return result


def fresh_prefix() -> str:
    return f"fo-{uuid.uuid4().hex[:8]}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


# --- 1. a replica promoted ---------------------------------------------------------------

PASSWORD = "s3cret-pw"


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its replica, both with the password ``PASSWORD``; stopped afterwards."""
    # The password is set once each is up: the fixtures' PING sends none.
    primary = start_server(tmp_path / "primary", "--masterauth", PASSWORD)
    try:
        primary.client().config_set("requirepass", PASSWORD)
        replica = start_replica(tmp_path / "replica", primary, "--masterauth", PASSWORD)
        replica.client().config_set("requirepass", PASSWORD)
    except BaseException:
        primary.stop()
        raise
    yield primary, replica
    replica.stop()
    primary.stop()


def test_a_promoted_replica_has_every_replicated_commit_and_no_half_commit(
    primary_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = primary_and_replica
    password = PASSWORD
    # One connection, so that WAIT counts the replicas that took this writer's commits.
    pool = redis.BlockingConnectionPool(host=HOST, port=primary.port, password=password, max_connections=1)
    old = redis.Redis(connection_pool=pool)
    driver = RedisDriver(old, prefix=fresh_prefix(), buckets=8, owns_client=True)
    keys = [f"acct-{n}" for n in range(8)]

    def replicated() -> bool:
        try:
            return old.execute_command("WAIT", 1, 200) >= 1
        except redis.RedisError:  # UNBLOCKED: the old primary was demoted while it waited
            return False

    writer = Writer(driver, keys, "w", after_commit=replicated)
    admin_new = replica.client(password=password)
    admin_old = primary.client(password=password)
    with writer:
        wait_until(lambda: len(writer.acked) >= 200, 10, "commits before the switch")
        admin_new.execute_command("REPLICAOF", "NO", "ONE")  # the promotion
        switched = time.monotonic()
        # Split brain: the old primary still takes writes, which no replica sees.
        wait_until(lambda: sum(a.at > switched for a in writer.acked) >= 5, 10, "commits after the switch")
        admin_old.execute_command("REPLICAOF", HOST, str(replica.port))  # as Sentinel demotes it
        demoted = time.monotonic()
        wait_until(lambda: len(writer.unavailable) >= 20, 10, "errors from the demoted primary")
    admin_old.close()
    admin_new.close()

    assert writer.unexpected == []
    # A demoted server refuses writes at once: at most the commit in flight then is acknowledged.
    assert len([a for a in writer.acked if a.at > demoted]) <= 1
    for err in writer.unavailable:
        assert f"{HOST}:{primary.port}" in str(err) and password not in str(err)
    before = [a for a in writer.acked if a.at < switched]
    replicated = [a for a in before if a.replicated]
    split_brain = [a for a in writer.acked if a.at > switched]

    new = RedisDriver(replica.client(password=password), prefix=driver.prefix, buckets=8, owns_client=True)
    try:
        check = check_stored(new, [writer])
        lost = {id(a) for a in check.lost}
        assert not [a for a in replicated if id(a) in lost], "a replicated commit is missing"
        unconfirmed = [a for a in before if not a.replicated]  # WAIT ran into the promotion
        assert {id(a) for a in split_brain + unconfirmed} >= lost
        # The promoted replica takes commits, its scripts loaded on NOSCRIPT.
        head = new.load(keys[0], 0).last
        assert new.append(Commit(keys[0], head, [b"after|0/1"])) is None
        print(
            f"\npromotion: {len(before)} commits before the switch ({len(replicated)} confirmed by WAIT, "
            f"all there), {sum(id(a) in lost for a in unconfirmed)} of the others lost; "
            f"{len(split_brain)} acknowledged by the old primary after it, "
            f"{sum(id(a) in lost for a in split_brain)} of them lost; "
            f"{len(writer.unavailable)} StoreUnavailableErrors once demoted"
        )
    finally:
        new.close()
        driver.close()


def test_a_primary_left_without_its_replica_refuses_writes_as_unavailable(tmp_path: Path) -> None:
    """``min-replicas-to-write``: once its replica is promoted away, the old primary answers
    NOREPLICAS, which is ``StoreUnavailableError``; nothing is written."""
    primary = start_server(
        tmp_path / "primary", "--min-replicas-to-write", "1", "--min-replicas-max-lag", "1"
    )
    replica = start_replica(tmp_path / "replica", primary)
    driver = RedisDriver(primary.client(), prefix=fresh_prefix(), buckets=2, owns_client=True)
    try:

        def counts_its_replica() -> bool:
            try:
                driver.swap_value("ready", None, None)  # a write, of nothing
            except StoreUnavailableError:
                return False
            return True

        # The primary counts the replica only once its first acknowledgement arrives.
        wait_until(counts_its_replica, 10, "the primary to count its replica")
        assert driver.append(Commit("acct", 0, [b"c1|0/1"], commit_id="c1")) is None
        assert driver.swap_value("lease", None, b"me") is True
        admin = replica.client()
        admin.execute_command("REPLICAOF", "NO", "ONE")
        admin.close()

        def refuses() -> bool:
            try:
                driver.swap_value("probe", None, None)  # a write, of nothing
            except StoreUnavailableError:
                return True
            return False

        wait_until(refuses, 10, "NOREPLICAS")
        for call in (
            lambda: driver.append(Commit("acct", 1, [b"c2|0/1", b"c2|1/2"], commit_id="c2")),
            lambda: driver.swap_value("lease", b"me", b"you"),
            lambda: driver.trim_feed(partition_bucket("acct", 2), ["1-0"]),
        ):
            with pytest.raises(StoreUnavailableError, match=rf"{HOST}:{primary.port}.*NOREPLICAS"):
                call()
        assert list(driver.load("acct", 0).records) == [b"c1|0/1"]
        assert driver.read_value("lease") == b"me"
        assert len(driver.read_feed({partition_bucket("acct", 2): None}, 10)) == 1
    finally:
        driver.close()
        replica.stop()
        primary.stop()


# --- 2. a Cluster primary killed ---------------------------------------------------------


@pytest.fixture
def cluster_with_replicas(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A 3-primary Cluster, a replica each, with a 1 s node timeout; stopped afterwards."""
    cluster = start_cluster(tmp_path, primaries=3, replicas=1, node_timeout_ms=1000)
    yield cluster
    stop_cluster(cluster)


def role_of(server: RedisServer) -> str:
    return info(server, "replication")["role"]


def test_a_cluster_failover_keeps_every_commit_that_survived_and_the_client_recovers(
    cluster_with_replicas: RedisClusterNodes,
) -> None:
    servers = cluster_with_replicas.servers
    client = cluster_with_replicas.client()
    buckets = 16
    driver = RedisDriver(client, prefix=fresh_prefix(), buckets=buckets, owns_client=True)
    keys = [f"agg-{n}" for n in range(200)]
    by_bucket: dict[int, list[str]] = {}
    for key in keys:
        by_bucket.setdefault(partition_bucket(key, buckets), []).append(key)
    assert len(by_bucket) == buckets
    # Each of 4 writers takes its own keys, from every bucket.
    writers = [
        Writer(driver, [k for b in sorted(by_bucket) for k in by_bucket[b][w::4]], f"w{w}") for w in range(4)
    ]
    assert all({partition_bucket(k, buckets) for k in w.keys} == set(range(buckets)) for w in writers)

    victim = servers[1]
    assert role_of(victim) == "master"
    victim_id = victim.client().cluster("MYID")
    replica = next(
        s
        for s in servers
        if role_of(s) == "slave"
        and s.client().cluster("MYID") != victim_id
        and info(s, "replication")["master_port"] == victim.port
    )
    survivors = [s for s in servers if s is not victim]
    on_victim = {k for k in keys if client.get_node_from_key(driver.keys(k)[0]).port == victim.port}
    assert on_victim
    for writer in writers:
        writer.__enter__()
    try:
        wait_until(lambda: sum(len(w.acked) for w in writers) >= 400, 15, "commits before the kill")
        assert replica.client().script_exists(scripts.APPEND.sha) == [False]  # not replicated
        victim.process.kill()
        killed = time.monotonic()
        failover = wait_until(lambda: role_of(replica) == "master", 15, "the replica's promotion")
        wait_for_cluster_ok(survivors)
        ok = time.monotonic()
        wait_until(
            lambda: all(any(a.at > ok and a.key in on_victim for a in w.acked) for w in writers),
            15,
            "commits to the failed-over slots",
        )
        wait_until(
            lambda: (
                {partition_bucket(a.key, buckets) for w in writers for a in w.acked if a.at > ok}
                == set(range(buckets))
            ),
            15,
            "commits to every bucket after the failover",
        )
        promoted = killed + failover
        recovered = min(a.at for w in writers for a in w.acked if a.at > promoted and a.key in on_victim)
    finally:
        for writer in writers:
            writer.__exit__()
    victim.stop()

    unexpected = [err for w in writers for err in w.unexpected]
    assert unexpected == [], f"{len(unexpected)} untyped errors, first: {unexpected[:1]!r}"
    unavailable = [err for w in writers for err in w.unavailable]
    assert all(re.search(rf"{HOST}:\d+", str(err)) for err in unavailable)
    check = check_stored(driver, writers)
    for writer in writers:
        for key in writer.keys:
            assert driver.load(key, 0).records == driver.load(key, 0, use_snapshot=False).records
    # The promoted replica got both scripts by the NOSCRIPT path.
    assert replica.client().script_exists(scripts.APPEND.sha, scripts.LOAD.sha) == [True, True]
    after_failover = [a for w in writers for a in w.acked if a.at > ok]
    after_kill_keys = {a.key for a in after_failover}
    assert {partition_bucket(k, buckets) for k in after_kill_keys} == set(range(buckets))
    assert all(a.at < ok for a in check.lost), "a commit acknowledged after the failover is missing"
    went_back = [x for w in writers for x in w.went_back]
    print(
        f"\nfailover: {check.acked} commits acknowledged, {len(check.lost)} of them lost "
        f"(async replication), {check.unacked_stored} stored unacknowledged, {len(went_back)} heads "
        f"went back; {len(unavailable)} StoreUnavailableErrors; promotion {failover:.1f} s after "
        f"the kill, first commit to its slots {recovered - promoted:.2f} s after that; "
        f"{len(after_failover)} commits after"
    )
    for err in unavailable[:3]:
        print("   ", err)
    driver.close()


# --- 3. a slot migrated under commits ----------------------------------------------------


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A 3-primary Cluster of the test's own, whose slots it may move; stopped afterwards."""
    cluster = start_cluster(tmp_path, primaries=3)
    yield cluster
    stop_cluster(cluster)


def node_owning(cluster: RedisClusterNodes, slot: int) -> RedisServer:
    client = cluster.servers[0].client()
    try:
        for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(s for s in cluster.servers if s.port == primary[1])
    finally:
        client.close()
    raise AssertionError(f"slot {slot} is not served")


def test_a_slot_migrated_under_commits_writes_whole_commits_or_raises_unavailable(
    own_cluster: RedisClusterNodes,
) -> None:
    buckets = 4
    client = own_cluster.client()
    driver = RedisDriver(client, prefix=fresh_prefix(), buckets=buckets, owns_client=True)
    slot = key_slot(driver.feed_key(0))
    source = node_owning(own_cluster, slot)
    target = next(s for s in own_cluster.servers if s is not source)
    src, dst = source.client(), target.client()
    src_id, dst_id = src.cluster("MYID"), dst.cluster("MYID")
    keys = [f"mig-{n}" for n in range(400)]
    moving = [k for k in keys if partition_bucket(k, buckets) == 0][:24]
    staying = [k for k in keys if partition_bucket(k, buckets) != 0][:8]
    writers = [
        Writer(driver, moving[0::2] + staying[:4], "m0"),
        Writer(driver, moving[1::2] + staying[4:], "m1"),
    ]
    for writer in writers:
        writer.__enter__()
    try:
        wait_until(lambda: sum(len(w.acked) for w in writers) >= 100, 10, "commits before the move")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        migrating = time.monotonic()
        moved_keys = 0
        # One key at a time, slowly, so that commits meet the slot half moved.
        while names := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1):
            src.execute_command("MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *names)
            moved_keys += len(names)
            time.sleep(0.05)
        for node in (dst, src, *(s.client() for s in own_cluster.servers if s not in (source, target))):
            node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        settled = time.monotonic()
        wait_until(
            lambda: all(any(a.at > settled and a.key in moving for a in w.acked) for w in writers),
            10,
            "commits to the moved slot",
        )
    finally:
        for writer in writers:
            writer.__exit__()
    unexpected = [err for w in writers for err in w.unexpected]
    assert unexpected == [], f"{len(unexpected)} untyped errors, first: {unexpected[:1]!r}"
    check = check_stored(driver, writers)
    assert check.lost == []
    during = [a for w in writers for a in w.acked if migrating < a.at < settled and a.key in moving]
    unavailable = [err for w in writers for err in w.unavailable]
    print(
        f"\nmigration of slot {slot} ({moved_keys} keys, {settled - migrating:.1f} s): {check.acked} "
        f"commits, {len(during)} to the moving bucket while it moved; {len(unavailable)} "
        f"StoreUnavailableErrors; {check.unacked_stored} stored unacknowledged"
    )
    for err in unavailable[:2]:
        print("   ", err)
    assert dst.llen(driver.keys(moving[0])[0]) > 0
    src.close()
    dst.close()
    driver.close()


def test_a_cluster_with_every_node_down_is_unavailable(own_cluster: RedisClusterNodes) -> None:
    """redis-py's cluster client then raises ``RedisClusterException`` ("cannot be
    connected"), which is no ``RedisError``: every primitive must turn it into
    ``StoreUnavailableError``."""
    driver = RedisDriver(own_cluster.client(), prefix=fresh_prefix(), buckets=4, owns_client=True)
    try:
        assert driver.append(Commit("acct", 0, [b"c1|0/1"])) is None
        for server in own_cluster.servers:
            server.process.kill()
            server.process.wait()
        for call in (
            lambda: driver.append(Commit("acct", 1, [b"c2|0/1"])),
            lambda: driver.load("acct", 0),
            lambda: driver.load("acct", 0, use_snapshot=False),
            lambda: driver.read_feed({0: None, 1: None}, 10),
            lambda: driver.read_value("lease"),
            lambda: driver.read_values(["a", "b"]),
            lambda: driver.swap_value("lease", None, b"me"),
            lambda: driver.trim_feed(0, ["1-0"]),
        ):
            with pytest.raises(StoreUnavailableError, match=rf"{HOST}:\d+.*cannot be connected"):
                call()
    finally:
        driver.close()
