"""Faults: a Redis server SIGKILLed under load, replies lost on the wire, DynamoDB cancellations.

Whatever breaks, a commit that reported success is stored, a commit is never stored in
part, and re-sending a commit under its commit id never stores it twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError
from hammer import (
    Add,
    Tally,
    Ticked,
    WriterReport,
    check_streams,
    collect_workers,
    record_figure,
    run_threads,
    start_workers,
)
from proxy import CuttingProxy

import kvsourcing
from kvsourcing import ConcurrencyFault, StoreUnavailableError, retry
from kvsourcing.stores import dynamodb
from kvsourcing.stores.redis import scripts as redis_scripts
from kvsourcing.testing.servers import AofRedis

# --------------------------------------------------------------------------- SIGKILL

KILL_ROUNDS = 2
KILL_KEYS = 6
KILL_OPS = 60  # per writer; 3 processes x 3 threads + 3 threads in-process


def stored_events(store: Any, keys: list[str]) -> int:
    return sum(len(store.read_events(key)) for key in keys)


def test_sigkill_under_load_loses_no_acknowledged_commit_and_writers_recover(
    aof_redis: AofRedis, worker_processes: list[Any]
) -> None:
    prefix = f"kill-{uuid.uuid4().hex[:6]}"
    url = f"{aof_redis.url}?prefix={prefix}"
    keys = [f"account-{i}" for i in range(KILL_KEYS)]
    worker_processes += start_workers(
        url, 3, threads=3, keys=keys, ops=KILL_OPS, max_parts=5, seconds=30.0, seed=11
    )
    local: dict[str, WriterReport] = {}
    writer_store = kvsourcing.open_store(url)
    observer = kvsourcing.open_store(url)

    def in_process() -> None:
        local["report"] = run_threads(
            writer_store,
            name="local",
            threads=3,
            keys=keys,
            ops=KILL_OPS,
            max_parts=5,
            seed=12,
            deadline=time.monotonic() + 30.0,
        )

    thread = threading.Thread(target=in_process, daemon=True)
    thread.start()
    total_ops = 12 * KILL_OPS
    at_kill = []
    try:
        for round_ in range(KILL_ROUNDS):
            threshold = (round_ + 1) * total_ops // (KILL_ROUNDS + 2)
            deadline = time.monotonic() + 30
            while True:
                try:
                    count = stored_events(observer, keys)
                except StoreUnavailableError:
                    count = 0
                if count >= threshold * 2:  # about 3 events per operation
                    break
                assert time.monotonic() < deadline, "writers made no progress"
                time.sleep(0.02)
            aof_redis.kill()
            at_kill.append(count)
            # While the server is down every operation fails as unavailable.
            with pytest.raises(StoreUnavailableError) as caught:
                observer.read_events(keys[0])
            assert aof_redis.url.split("//")[1].split("/")[0] in str(caught.value)
            time.sleep(0.3)
            aof_redis.start()
        report = collect_workers(worker_processes, timeout=60)
        thread.join(60)
        assert not thread.is_alive()
        report.merge(local["report"])
        assert report.unavailable > 0, "no writer saw the server die"
        assert {outcome for *_, outcome in report.ops} <= {"stored", "already"}
        assert len(report.ops) == total_ops
        found = check_streams(observer, report, keys)
        assert found.events > max(at_kill)
        assert found.commits == len(report.ops)
        record_figure(
            "SIGKILL under load",
            kills=KILL_ROUNDS,
            operations=len(report.ops),
            events=found.events,
            unavailable_errors=report.unavailable,
            resent_found_stored=sum(1 for *_, o in report.ops if o == "already"),
            lost=0,
            duplicated=0,
        )
    finally:
        writer_store.close()
        observer.close()


def test_an_acknowledged_commit_survives_sigkill_and_restart(aof_redis: AofRedis) -> None:
    url = f"{aof_redis.url}?prefix=ack"
    with kvsourcing.open_store(url) as store:
        tally = Tally("acknowledged", store)
        for number in range(20):
            tally.handle(Add(f"op/{number}", 3), commit_id=f"op/{number}")
    aof_redis.kill()
    aof_redis.start()
    with kvsourcing.open_store(url) as store:
        events = store.read_events("acknowledged")
        assert len(events) == 60
        assert [e.data["op"] for e in events[::3]] == [f"op/{n}" for n in range(20)]


# --------------------------------------------------------------------------- lost replies

CUT_MODES = ["before", "after-request", "after-reply"]


def admin_events(redis_server: Any, prefix: str, key: str) -> list[Any]:
    with kvsourcing.open_store(f"{redis_server.url}?prefix={prefix}") as store:
        return store.read_events(key)


@pytest.mark.parametrize("mode", CUT_MODES)
def test_cut_connection_leaves_commit_whole_or_absent_and_resend_never_duplicates(
    mode: str, cutting_proxy: CuttingProxy, redis_server: Any
) -> None:
    prefix = f"cut-{uuid.uuid4().hex[:6]}"
    key = "order-1"
    with kvsourcing.open_store(f"{cutting_proxy.url}?prefix={prefix}") as store:
        tally = Tally(key, store)
        tally.handle(Add("first", 2))
        tally.refresh()
        for part in range(5):
            tally.apply_event(Ticked("second", part, 5))
        commit_id = tally.get_commit_id()
        assert commit_id
        cutting_proxy.arm(commit_id, mode, times=1000)  # every attempt, redis-py's own retries too
        with pytest.raises(StoreUnavailableError):
            tally.commit()
        assert cutting_proxy.cuts >= 1
        assert tally.is_dirty() and tally.get_commit_id() == commit_id
        stored = [e.data["op"] for e in admin_events(redis_server, prefix, key)]
        if mode == "before":
            assert stored == ["first"] * 2
        elif mode == "after-reply":
            assert stored == ["first"] * 2 + ["second"] * 5
        else:
            assert stored in (["first"] * 2, ["first"] * 2 + ["second"] * 5)
        cutting_proxy.disarm()
        tally.commit()  # the re-send, same commit id
        assert not tally.is_dirty() and tally.sequence_number() == 7
        tally.commit()
        events = admin_events(redis_server, prefix, key)
        assert [e.sequence for e in events] == list(range(1, 8))
        assert [(e.data["op"], e.data["part"]) for e in events] == [("first", 0), ("first", 1)] + [
            ("second", p) for p in range(5)
        ]
        fresh = Tally(key, store)
        fresh.refresh()
        assert fresh.count == 7
        record_figure(f"connection cut {mode}", cuts=cutting_proxy.cuts, lost=0, duplicated=0)


def test_one_lost_reply_under_handle_with_a_commit_id(cutting_proxy: CuttingProxy, redis_server: Any) -> None:
    """A reply lost once: redis-py's reconnect, or our re-send with the same commit id,
    finds the commit stored; the command's events are stored exactly once."""
    prefix = f"cut1-{uuid.uuid4().hex[:6]}"
    key = "order-2"
    with kvsourcing.open_store(f"{cutting_proxy.url}?prefix={prefix}") as store:
        tally = Tally(key, store)
        # The append script's call, not the load's, which carries the commit id too (the check).
        cutting_proxy.arm(redis_scripts.APPEND.sha, "after-reply", times=1)
        try:
            result = tally.handle(Add("command-42", 4), commit_id="command-42")
        except StoreUnavailableError:
            result = retry(3, lambda: tally.handle(Add("command-42", 4), commit_id="command-42"))
        assert result == []  # found stored, not written again
        assert cutting_proxy.cuts == 1
        assert not tally.is_dirty()
        assert tally.handle(Add("command-43", 1), commit_id="command-43") == [Ticked("command-43", 0, 1)]
        events = admin_events(redis_server, prefix, key)
        assert [e.data["op"] for e in events] == ["command-42"] * 4 + ["command-43"]
        assert tally.sequence_number() == 5


# --------------------------------------------------------------------------- DynamoDB


class FakeHttp:
    status_code = 400


def cancellation(*reasons: str) -> tuple[FakeHttp, dict[str, Any]]:
    """What DynamoDB answers when it cancels a transaction for ``reasons`` (one per action)."""
    listed = ", ".join(reasons)
    return FakeHttp(), {
        "Error": {
            "Code": "TransactionCanceledException",
            "Message": f"Transaction cancelled, please refer cancellation reasons [{listed}]",
        },
        "CancellationReasons": [{"Code": r, "Message": f"{r} injected"} for r in reasons],
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }


def inject(client: Any, answers: list[tuple[FakeHttp, dict[str, Any]]]) -> list[str]:
    """Answer the client's next ``TransactWriteItems`` with ``answers`` (then let moto serve)."""
    calls: list[str] = []

    def handler(model: Any, **_: Any) -> Any:
        calls.append("injected" if answers else "moto")
        return answers.pop(0) if answers else None

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", handler)
    return calls


@pytest.mark.parametrize(
    "reasons",
    [
        ("TransactionConflict", "None"),
        ("None", "TransactionConflict"),
        ("ThrottlingError", "None"),
    ],
)
def test_dynamodb_cancellation_for_another_reason_is_retried(
    reasons: tuple[str, str], moto_client: Any, moto_table: str
) -> None:
    store = dynamodb.new_store(moto_table, client=moto_client)
    Tally("contended", store).handle(Add("before", 1))
    calls = inject(moto_client, [cancellation(*reasons) for _ in range(3)])
    tally = Tally("contended", store)
    faults = []

    def body() -> Any:
        try:
            return tally.handle(Add("during", 2))
        except ConcurrencyFault as fault:
            faults.append(fault)
            raise

    assert retry(5, body) == [Ticked("during", 0, 2), Ticked("during", 1, 2)]
    assert faults == []  # not reported as a concurrency fault
    assert calls == ["injected"] * 3 + ["moto"]
    assert [e.data["op"] for e in store.read_events("contended")] == ["before", "during", "during"]
    record_figure(f"DynamoDB cancellation {'/'.join(reasons)}", injected=3, retried=True, lost=0)


def test_dynamodb_cancellation_that_persists_is_unavailable_not_a_fault(
    moto_client: Any, moto_table: str
) -> None:
    store = dynamodb.new_store(moto_table, client=moto_client)
    calls = inject(moto_client, [cancellation("TransactionConflict", "None") for _ in range(50)])
    tally = Tally("hot", store)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="kept cancelling"):
        retry(5, lambda: tally.handle(Add("never", 1)))  # retry does not loop on it
    assert time.monotonic() - started < 10
    assert calls == ["injected"] * 8  # the driver's bounded attempts, once
    assert store.read_events("hot") == []


def test_dynamodb_resent_commit_id_is_not_written_twice(moto_client: Any, moto_table: str) -> None:
    """The keyvalue Driver contract: a commit whose id is stored returns ALREADY_STORED."""
    store = dynamodb.new_store(moto_table, client=moto_client)
    tally = Tally("resent", store)
    assert tally.handle(Add("cmd-1", 2), commit_id="cmd-1") == [Ticked("cmd-1", 0, 2), Ticked("cmd-1", 1, 2)]
    assert tally.handle(Add("cmd-1", 2), commit_id="cmd-1") == []
    assert len(store.read_events("resent")) == 2


def test_dynamodb_commit_resent_after_a_lost_reply_is_stored_once(moto_client: Any, moto_table: str) -> None:
    store = dynamodb.new_store(moto_table, client=moto_client)
    lost = []

    def lose_reply(http_response: Any, model: Any, **_: Any) -> None:
        if not lost and http_response.status_code == 200:
            lost.append(True)
            raise ConnectionClosedError(endpoint_url="http://dynamodb.injected")

    tally = Tally("lost-reply", store)
    tally.apply_event(Ticked("only", 0, 1))
    moto_client.meta.events.register("after-call.dynamodb.TransactWriteItems", lose_reply)
    with pytest.raises(StoreUnavailableError):
        tally.commit()
    assert len(store.read_events("lost-reply")) == 1  # it did land
    tally.commit()  # the re-send under the same commit id
    assert not tally.is_dirty()
    assert len(store.read_events("lost-reply")) == 1
