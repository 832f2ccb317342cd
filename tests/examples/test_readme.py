"""The README's code runs as written: each python block on its own, as a reader who
pastes only that one would run it."""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_the_quickstart_feed_and_upcasting_examples() -> None:
    assert len(BLOCKS) >= 3
    assert any("EventDefinition(" in block for block in BLOCKS), "the upcasting section has an example"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_python_block_runs_on_its_own(index: int) -> None:
    namespace: dict[str, Any] = {"__name__": f"readme_block_{index}"}
    exec(compile(BLOCKS[index], f"{README}:block{index}", "exec"), namespace)


def test_python_blocks_type_check(tmp_path: Path) -> None:
    """mypy accepts each block as user code (not strict: bodies checked, annotations not
    required), against the package laid out as it installs (kvsourcing = core/,
    kvsourcing.stores = stores/), as scripts/typecheck lays it out: so a store from
    ``open_store`` or ``new_store`` is a context manager to the checker too."""
    package = tmp_path / "tree" / "kvsourcing"
    package.mkdir(parents=True)
    for entry in (README.parent / "core").iterdir():
        (package / entry.name).symlink_to(entry)
    (package / "stores").symlink_to(README.parent / "stores")
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\ncheck_untyped_defs = True\nfollow_imports = silent\n"
        f"mypy_path = {package.parent}\ncache_dir = {tmp_path / 'cache'}\n"
        # the README's telemetry block exports with OTLP, an exporter the test extra omits
        "[mypy-opentelemetry.exporter.*]\nignore_missing_imports = True\n",
        encoding="utf-8",
    )
    files = []
    for index, block in enumerate(BLOCKS):
        files.append(tmp_path / f"readme_block_{index}.py")
        files[-1].write_text(block, encoding="utf-8")
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), *map(str, files)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"no issues found in {len(BLOCKS)} source files" in checked.stdout


def test_ci_runs_the_readme_test_command() -> None:
    readme = README.read_text(encoding="utf-8")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/test" in readme and "bash scripts/test" in ci


def _section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n#", 1)[0]


def test_writing_a_driver_names_every_member_of_the_driver_protocols() -> None:
    from kvsourcing.stores.keyvalue.driver import EventDriver, FeedDriver, RewritingDriver, ValueDriver

    section = _section(README.read_text(encoding="utf-8"), "## Writing a driver")
    members = {
        name
        for protocol in (EventDriver, FeedDriver, ValueDriver, RewritingDriver)
        for name in [*vars(protocol), *protocol.__annotations__]
        if not name.startswith("_")
    }
    assert members >= {
        "append_many",
        "load",
        "close",
        "buckets",
        "feed",
        "read_feed",
        "swap_value",
        "rewrite",
    }
    missing = sorted(name for name in members if f"`{name}" not in section)
    assert not missing, f"README's 'Writing a driver' does not name {missing}"


SECURITY = README.parent / "SECURITY.md"
_TRANSACTION_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _documented(text: str, pattern: str) -> set[str]:
    match = re.search(pattern, text, re.S)
    assert match, f"SECURITY.md no longer says {pattern!r}"
    return set(re.findall(r"`(?:dynamodb:)?([A-Za-z]+)`", match.group(1)))


def test_security_iam_actions_are_what_the_dynamodb_store_calls(
    server_client: Any, server_table: str
) -> None:
    """Each role's calls, recorded from a real store on a moto server, are within what
    SECURITY.md grants that role, and the policy grants nothing that no role calls."""
    import json

    from kvsourcing import ConcurrencyFault
    from kvsourcing.crypto import AesGcmCipher
    from kvsourcing.stores import dynamodb
    from kvsourcing.stores.keyvalue import FeedConsumer, KeyValueStore, trim_consumed
    from kvsourcing.stores.keyvalue.reencrypt import reencrypt
    from kvsourcing.testing.domain import Counter, Increment, Incremented, registry

    text = SECURITY.read_text(encoding="utf-8")
    policy_block = re.search(r"```json\n(.*?)```", text, re.S)
    assert policy_block
    policy = {
        a.removeprefix("dynamodb:") for a in json.loads(policy_block.group(1))["Statement"][0]["Action"]
    }
    writer_doc = _documented(text, r"only commits and loads aggregates needs(.*?)\(")
    consumer_doc = _documented(text, r"only consumes the feed needs(.*?), since")
    trim_doc = _documented(text, r"Trimming consumed feed entries.*?additionally\s+needs(.*?)\(")
    rotate_doc = _documented(
        text, r"Re-encrypting \(`kvsourcing reencrypt`\) writes.*?additionally\s+needs(.*?): grant"
    )

    called: set[str] = set()

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name == "TransactWriteItems":
            called.update(_TRANSACTION_ACTIONS[kind] for item in params["TransactItems"] for kind in item)
        else:
            called.add(model.name)

    server_client.meta.events.register("before-parameter-build.dynamodb", record)
    store = dynamodb.new_store(server_table, client=server_client, snapshot_interval=2, buckets=2)

    # A writer: commits, a lost race, a re-sent commit, loads with and without a snapshot.
    first, second = Counter("acct-1", store), Counter("acct-1", store)
    first.handle(Increment(1), commit_id="c-1")
    second.handle(Increment(1), commit_id="c-1")  # the same commit again: nothing written
    first.handle(Increment(2))
    stale = Counter("acct-1", store)
    stale.refresh()
    first.handle(Increment(3))
    stale.apply_event(Incremented(1))
    with pytest.raises(ConcurrencyFault):
        stale.commit()
    reader = Counter("acct-1", store)
    reader.refresh()
    store.read_events("acct-1")
    writer_calls, called = set(called), set()

    # A consumer: reads the feed, keeps checkpoints and leases, lets them go.
    consumer = FeedConsumer(store, "projection", registry())
    consumer.add_handler(type("Handler", (), {"handle": lambda self, published: None})())
    while consumer.run_once():
        pass
    consumer.stop()
    consumer_calls, called = set(called), set()

    trim_consumed(store, ["projection"])
    trim_calls, called = set(called), set()

    # A key rotation: a stream under an old key, re-encrypted under a new one.
    old, new = os.urandom(32), os.urandom(32)
    sealed = KeyValueStore(store.driver, cipher=AesGcmCipher(old), snapshot_interval=2)
    for by in (1, 2, 3):
        Counter("acct-2", sealed).handle(Increment(by))
    called = set()
    assert reencrypt(KeyValueStore(store.driver, cipher=AesGcmCipher(new, old)), "acct-2") == 4
    rotate_calls = set(called)
    store.close()

    assert writer_calls <= writer_doc, writer_calls - writer_doc
    assert consumer_calls <= consumer_doc, consumer_calls - consumer_doc
    assert trim_calls <= policy | trim_doc, trim_calls - policy - trim_doc
    assert rotate_calls <= policy | rotate_doc, rotate_calls - policy - rotate_doc
    assert "ConditionCheckItem" in rotate_calls
    assert writer_doc | consumer_doc == policy
    assert writer_calls | consumer_calls == policy, "the policy grants an action no role calls"


def test_security_acl_rule_with_its_cluster_addition_runs_the_store_on_a_cluster(redis_cluster: Any) -> None:
    """SECURITY.md's ACL rule, plus what it says a Cluster needs, lets a store commit, load,
    reload flushed scripts and run a feed consumer on a real Redis Cluster."""
    import shlex
    import uuid

    import redis

    from kvsourcing import open_store
    from kvsourcing.stores.keyvalue import FeedConsumer
    from kvsourcing.testing.domain import Counter, Increment, registry
    from kvsourcing.testing.servers import HOST

    text = SECURITY.read_text(encoding="utf-8")
    rule = re.search(r"```\n(ACL SETUSER shop-app .*?)\n```", text, re.S)
    addition = re.search(r"On a Redis Cluster .*?add `([^`]+)`", text, re.S)
    assert rule and addition
    prefix = f"shop{uuid.uuid4().hex[:6]}"
    user = f"acl-{prefix}"
    words = shlex.split(rule.group(1).replace("PASSWORD", "pw").replace("{shop:", "{" + prefix + ":"))
    assert words[:3] == ["ACL", "SETUSER", "shop-app"]
    for server in redis_cluster.servers:
        admin = redis.Redis(host=HOST, port=server.port)
        admin.execute_command("ACL", "SETUSER", user, *words[3:], *addition.group(1).split())
        admin.script_flush()  # the store must load its scripts itself
        admin.close()
    nodes = ",".join(f"{HOST}:{s.port}" for s in redis_cluster.servers)
    seen: list[Any] = []
    with open_store(
        f"redis+cluster://{user}:pw@{nodes}?prefix={prefix}&buckets=8", snapshot_interval=2
    ) as store:
        for n in range(4):
            counter = Counter(f"acct-{n}", store)
            counter.handle(Increment(1))
            counter.handle(Increment(2), commit_id=f"c-{n}")
            counter.handle(Increment(2), commit_id=f"c-{n}")  # re-sent: written once
        again = Counter("acct-3", store)
        again.refresh()
        assert (again.count, again.sequence_number()) == (3, 2)
        consumer = FeedConsumer(store, "projection", registry())
        consumer.add_handler(
            type("Handler", (), {"handle": lambda self, published: seen.append(published)})()
        )
        while consumer.run_once():
            pass
        consumer.stop()
    assert len(seen) == 8


def test_pyproject_has_project_urls_and_the_changelog_an_unreleased_section() -> None:
    import tomllib

    project = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert all(url.startswith("https://") for url in project["urls"].values()) and project["urls"]
    assert "## Unreleased" in (README.parent / "CHANGELOG.md").read_text(encoding="utf-8")
