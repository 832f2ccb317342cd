"""``kvsourcing bench``: the table it prints and the events it really writes (never timings)."""

from __future__ import annotations

import io
import re

import pytest

from kvsourcing import open_store
from kvsourcing.stores import memory
from kvsourcing.testing.servers import RedisServer
from kvsourcing.tools import benchmark
from kvsourcing.tools.cli import main

ROW = re.compile(
    r"^(commit 1 event|commit 10 events|load \d+ events)\s+(\d+)\s+\d+\.\d\s+\d+(\s+\d+\.\d{3}){3}$"
)


def rows(out: str) -> dict[str, int]:
    """Phase name -> operations, from the printed table."""
    found = {}
    for line in out.splitlines():
        match = ROW.match(line)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


def written_keys(out: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith("aggregates written: "))
    return line.removeprefix("aggregates written: ").split(", ")


def test_bench_on_memory_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--store", "memory://", "--seconds", "0.02", "--events", "30"]) == 0
    captured = capsys.readouterr()
    assert "kvsourcing bench on memory://" in captured.out
    assert "p50 ms" in captured.out and "p90 ms" in captured.out and "p99 ms" in captured.out
    assert set(rows(captured.out)) == {"commit 1 event", "commit 10 events", "load 30 events"}
    assert all(ops >= 1 for ops in rows(captured.out).values())
    assert len(written_keys(captured.out)) == 3
    # stderr is not a terminal here: one line per phase, no bar.
    assert "bench: load 30 events ..." in captured.err
    assert "\r" not in captured.err


def test_bench_reads_the_store_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KVSOURCING_STORE", "memory://")
    assert main(["bench", "--seconds", "0.01", "--events", "5", "--snapshot-interval", "2"]) == 0
    assert "snapshots every 2" in capsys.readouterr().out


def test_run_writes_the_events_it_reports() -> None:
    store = memory.new_store(snapshot_interval=10)
    results = benchmark.run(store, seconds=0.01, load_events=25, progress=benchmark.Progress(io.StringIO()))
    commit1, commit10, load = results
    assert len(store.read_events(commit1.key)) == commit1.ops
    assert len(store.read_events(commit10.key)) == 10 * commit10.ops
    stored = store.read_events(load.key)
    assert [e.sequence for e in stored] == list(range(1, 26))
    assert {(e.event_type, e.data["amount"]) for e in stored} == {("Counted", 1)}
    assert store.read_snapshot(load.key) == (25, {"total": 25})  # the fill commit passed 20


def test_percentiles_are_nearest_rank() -> None:
    result = benchmark.PhaseResult("x", "k", 1, 1.0, [float(n) for n in range(100, 0, -1)])
    assert (result.percentile(50), result.percentile(90), result.percentile(99)) == (50.0, 90.0, 99.0)
    assert result.ops_per_second == 100.0


def test_progress_draws_a_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = benchmark.Progress(stream)
    progress.start("phase")
    progress.update(0.5)
    progress.finish()
    drawn = stream.getvalue()
    assert "\r[" + "#" * 15 + "." * 15 + "] phase" in drawn
    assert drawn.endswith("] phase" + " " * 19 + "\n")


@pytest.mark.parametrize("option", [["--seconds", "0"], ["--events", "-1"], ["--snapshot-interval", "x"]])
def test_bad_options_exit_with_usage(option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", *option])
    assert exited.value.code == 2
    assert "bench: error: argument" in capsys.readouterr().err


def test_bench_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--store", "--seconds", "--events", "--snapshot-interval"))


def test_unreachable_store_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["bench", "--store", "redis://127.0.0.1:1/0?socket_connect_timeout=1", "--seconds", "0.01"]) == 1
    )
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("kvsourcing: StoreUnavailableError: Redis at 127.0.0.1:1 is unavailable")


def test_bench_on_redis_writes_real_events(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--store", redis_server.url, "--seconds", "0.05", "--events", "120"]
    assert main([*argv, "--snapshot-interval", "50"]) == 0
    out = capsys.readouterr().out
    operations = rows(out)
    assert set(operations) == {"commit 1 event", "commit 10 events", "load 120 events"}
    commit1, commit10, loaded = written_keys(out)
    with open_store(redis_server.url) as store:
        assert len(store.read_events(commit1)) == operations["commit 1 event"]
        assert len(store.read_events(commit10)) == 10 * operations["commit 10 events"]
        assert [e.sequence for e in store.read_events(loaded)] == list(range(1, 121))
        assert store.read_snapshot(loaded) == (100, {"total": 100})


def test_load_counts_only_the_events_it_read() -> None:
    """With snapshots, a load reads the snapshot and the events after it: events/s counts
    those, not the aggregate's length (it printed millions of events/s before)."""
    quiet = benchmark.Progress(io.StringIO())
    with_snapshot = benchmark.run(
        memory.new_store(snapshot_interval=20), seconds=0.01, load_events=25, progress=quiet
    )
    load = with_snapshot[-1]
    assert load.events == 0, "the snapshot at 25 stands for every event"
    assert load.events_per_second == 0.0
    partial = benchmark.run(
        memory.new_store(snapshot_interval=100), seconds=0.01, load_events=130, progress=quiet
    )
    # Filled in commits of 100: the snapshot at 100 stands for those, 30 are read per load.
    assert partial[-1].events == 30 * partial[-1].ops
    plain = benchmark.run(memory.new_store(), seconds=0.01, load_events=25, progress=quiet)
    assert plain[-1].events == 25 * plain[-1].ops
    assert plain[-1].events_per_second == pytest.approx(25 * plain[-1].ops / plain[-1].elapsed)
