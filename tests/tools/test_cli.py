"""The ``kvsourcing`` command: demo, help, and one-line errors."""

import io
import os
import shutil
import subprocess
import sys
import uuid
from typing import Any

import pytest
from test_codecs import Labels, Tag, Tagged

from kvsourcing import open_store
from kvsourcing.testing.domain import Counter, Incremented
from kvsourcing.tools.cli import _plain, main


def test_demo_on_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "lost the race: ConcurrencyFault" in out
    assert "withdrew 25.00 on attempt 2" in out
    assert "refused: DomainFault: insufficient-funds" in out
    assert "owner Ada, balance 95.00, sequence 5" in out


def test_console_script_runs_the_demo() -> None:
    script = shutil.which("kvsourcing", path=os.path.dirname(sys.executable)) or shutil.which("kvsourcing")
    assert script, "the kvsourcing console script is not installed"
    done = subprocess.run([script, "demo"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "balance 95.00" in done.stdout


@pytest.mark.parametrize("command", [[], ["demo"], ["events"], ["snapshot"], ["feed", "trim"], ["bench"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert "--store" in capsys.readouterr().out or not command


def test_bad_url_is_one_line_and_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "k", "--store", "nosuch://x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unsupported store URL scheme 'nosuch'" in err and "memory://" in err


def test_no_store_given(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KVSOURCING_STORE", raising=False)
    assert main(["events", "k"]) == 1
    assert "KVSOURCING_STORE" in capsys.readouterr().err


def test_events_of_unknown_aggregate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "nobody", "--store", "memory://"]) == 0
    out, err = capsys.readouterr()
    assert "no events stored for 'nobody'" in out
    assert "memory:// store is new and empty in every process" in err


def test_invalid_key_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "bad\nkey", "--store", "memory://"]) == 1
    assert "InvalidKeyError" in capsys.readouterr().err


def test_dynamodb_create_table_then_events_and_snapshot(
    aws_env: None, moto_server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from kvsourcing import open_store
    from kvsourcing.testing.domain import Counter, Increment
    from kvsourcing.testing.moto import REGION, fresh_table_name

    table = fresh_table_name()
    args = ["dynamodb", "create-table", table, "--region", REGION, "--endpoint-url", moto_server_url]
    assert main(args) == 0
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"table {table!r} created" in out and f"table {table!r} already exists" in out
    url = f"dynamodb://{table}?region={REGION}&endpoint_url={moto_server_url}"
    with open_store(url, snapshot_interval=2) as store:
        counter = Counter("acct-1", store)
        counter.handle(Increment(3), commit_id="first")
        counter.handle(Increment(4))
        recorded = store.read_events("acct-1")[0].recorded_at
    assert recorded is not None
    assert main(["events", "acct-1", "--store", url]) == 0
    table_out = capsys.readouterr().out.splitlines()
    assert table_out[0].split() == ["seq", "recorded", "at", "(UTC)", "commit", "id", "type", "data"]
    first = table_out[1].split()
    assert first[0] == "1" and first[2:] == ["first", "Incremented", '{"by":', "3}"]
    assert first[1].startswith(recorded.isoformat()[:19])
    assert main(["events", "acct-1", "--json", "--store", url]) == 0
    shown_json = capsys.readouterr().out
    assert (
        '"by": 4' in shown_json and '"commit_id": "first"' in shown_json and '"recorded_at": "' in shown_json
    )
    assert main(["snapshot", "acct-1", "--store", url]) == 0
    shown = capsys.readouterr().out
    assert "at sequence 2" in shown and '"count": 7' in shown


def test_feed_trim_on_redis(redis_server, capsys: pytest.CaptureFixture[str]) -> None:
    import uuid

    from kvsourcing import open_store
    from kvsourcing.stores.keyvalue import FeedConsumer
    from kvsourcing.testing.domain import Counter, Increment, registry

    url = f"redis://127.0.0.1:{redis_server.port}/0?prefix=cli-{uuid.uuid4().hex[:8]}&buckets=4"
    seen = []
    with open_store(url) as store:
        for n in range(3):
            Counter(f"acct-{n}", store).handle(Increment())
        consumer = FeedConsumer(store, "projection", registry())
        consumer.add_handler(type("H", (), {"handle": lambda self, published: seen.append(published)})())
        while consumer.run_once():
            pass
        consumer.stop()
    assert len(seen) == 3
    assert main(["feed", "trim", "--consumer", "projection", "--store", url]) == 0
    assert "removed 3 feed entries consumed by projection" in capsys.readouterr().out
    assert main(["feed", "trim", "--consumer", "projection", "--consumer", "other", "--store", url]) == 0
    assert "removed 0 feed entries" in capsys.readouterr().out


def test_cli_events_after_must_not_be_negative(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["events", "acct", "--after", "-1", "--store", "memory://"])
    assert exit_info.value.code == 2
    assert "--after" in capsys.readouterr().err


def test_cli_prints_events_whose_dicts_have_non_str_keys(
    redis_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0?prefix=review-{uuid.uuid4().hex[:8]}"
    with open_store(url) as store:
        labels = Labels("labels-1", store)
        labels.apply_event(Tagged(counts={Tag("a"): 2}))
        labels.commit()
        grid = Counter("grid", store)
        grid.apply_event(Incremented(1))
        grid.commit()
    assert main(["events", "labels-1", "--store", url]) == 0
    assert "Tagged" in capsys.readouterr().out
    assert main(["events", "labels-1", "--json", "--store", url]) == 0
    assert "name" in capsys.readouterr().out


def test_cli_plain_turns_non_str_keys_into_text() -> None:
    assert _plain({(1, 2): {"x"}, 3: b"z", "k": None}) == {"(1, 2)": ["x"], 3: "b'z'", "k": None}


def test_no_store_given_names_the_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KVSOURCING_STORE", raising=False)
    for command in (["events", "k"], ["snapshot", "k"], ["feed", "trim", "--consumer", "c"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert "--store URL" in err and "open_store()" not in err


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("kvsourcing: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err + captured.out


def test_a_server_error_reply_is_one_line_not_a_traceback(
    redis_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from kvsourcing.stores.redis import RedisDriver

    prefix = f"wrongtype-{uuid.uuid4().hex[:8]}"
    client = redis_server.client()
    events_key, snapshot_key, _ = RedisDriver(client, prefix=prefix).keys("k")
    client.set(events_key, b"not a list")  # another program's data where the store looks
    client.set(snapshot_key, b"not a hash")
    url = f"{redis_server.url}?prefix={prefix}"
    assert main(["events", "k", "--store", url]) == 1
    assert "WRONGTYPE" in _one_line_error(capsys)
    assert main(["snapshot", "k", "--store", url]) == 1
    assert "WRONGTYPE" in _one_line_error(capsys)
    client.delete(events_key, snapshot_key)
    client.close()
    # A database the server does not have: redis-py's error reply, also one line.
    assert main(["events", "k", "--store", redis_server.url.rsplit("/", 1)[0] + "/99"]) == 1
    assert "DB index is out of range" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "url",
    [
        "memory://admin:hunter2@somewhere",
        "dynamodb://admin:hunter2@table",
        "redsi://admin:hunter2@localhost/0",
        "redis:/admin:hunter2@localhost",
        "redis://admin:hunter2@127.0.0.1:1/0?socket_connect_timeout=1",
    ],
)
def test_errors_never_show_the_password(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "k", "--store", url]) == 1
    assert "hunter2" not in _one_line_error(capsys)


def test_server_refusing_the_password_does_not_show_it(
    redis_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # The test server has no password: AUTH is refused, and the error must not repeat it.
    url = redis_server.url.replace("://", "://admin:hunter2@")
    assert main(["events", "k", "--store", url]) == 1
    assert "hunter2" not in _one_line_error(capsys)


def test_demo_header_hides_a_secret_query_option(capsys: pytest.CaptureFixture[str]) -> None:
    url = "rediss://127.0.0.1:1/0?ssl_password=hunter2&socket_connect_timeout=1"
    assert main(["demo", "--store", url]) == 1
    captured = capsys.readouterr()
    assert "hunter2" not in captured.out + captured.err
    assert "ssl_password=***" in captured.out


def test_output_closed_early_is_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class ClosedPipe(io.StringIO):
        """stdout of ``kvsourcing demo | head -1`` once head has exited."""

        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["demo"]) == 1
    assert capsys.readouterr().err == ""


def test_closed_pipe_through_the_console_script(redis_server: Any) -> None:
    url = f"{redis_server.url}?prefix=pipe-{uuid.uuid4().hex[:8]}"
    with open_store(url) as store:
        counter = Counter("long", store)
        for _ in range(20):  # 2 000 events: more JSON than a pipe's buffer holds
            for _ in range(100):
                counter.apply_event(Incremented(1))
            counter.commit()
    script = shutil.which("kvsourcing", path=os.path.dirname(sys.executable)) or shutil.which("kvsourcing")
    assert script
    # `head -c 1` exits after one byte; the command's later writes then hit a closed pipe.
    pipeline = f"{script} events long --json --store '{url}' | head -c 1 >/dev/null; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


@pytest.fixture(params=["redis", "dynamodb"])
def server_url(request: pytest.FixtureRequest) -> str:
    """A fresh store's URL on a real Redis server, then on moto's DynamoDB server."""
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_server').url}?prefix=cli-{uuid.uuid4().hex[:8]}&buckets=4"
    from kvsourcing.stores.dynamodb import create_table
    from kvsourcing.testing.moto import REGION, fresh_table_name

    table = fresh_table_name()
    create_table(request.getfixturevalue("server_client"), table)
    return f"dynamodb://{table}?region={REGION}&endpoint_url={request.getfixturevalue('moto_server_url')}"


def test_reencrypt_on_a_server(
    server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64

    from kvsourcing.crypto import AesGcmCipher
    from kvsourcing.testing.raw import raw_values, sealed_by

    old, new = os.urandom(32), os.urandom(32)
    with open_store(server_url, cipher=AesGcmCipher(old), snapshot_interval=2) as store:
        counter = Counter("acct-1", store)
        for by in (1, 2, 3):
            counter.apply_event(Incremented(by))
            counter.commit()
        events = store.read_events("acct-1")
    monkeypatch.setenv("KVSOURCING_CIPHER_KEY", ",".join(base64.b64encode(k).decode() for k in (new, old)))
    assert main(["reencrypt", "acct-1", "--store", server_url]) == 0
    assert "re-encrypted 4 record(s) of 'acct-1' under the newest key" in capsys.readouterr().out
    with open_store(server_url, cipher=AesGcmCipher(new, allow_plaintext=False)) as store:
        assert store.read_events("acct-1") == events
        assert store.read_snapshot("acct-1") == (2, {"count": 3, "name": "", "audits": []})
        stored = raw_values(store.driver).stored
        assert any(sealed_by(value, new) for value in stored)
        assert not any(sealed_by(value, old) for value in stored)
    assert main(["reencrypt", "acct-1", "--store", server_url]) == 0
    assert "re-encrypted 0 record(s)" in capsys.readouterr().out
