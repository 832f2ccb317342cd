"""The tools live apart from the library (``kvsourcing.tools``), and a driver adds its own
commands to the ``kvsourcing`` command: the core imports no driver."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import kvsourcing
from kvsourcing.tools.cli import main

CORE = Path(kvsourcing.__file__).parent
DRIVERS = ("kvsourcing.stores.memory", "kvsourcing.stores.redis", "kvsourcing.stores.dynamodb")


def test_nothing_in_core_imports_a_driver() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            offenders += [f"{path.name}: {name}" for name in names if name.startswith(DRIVERS)]
    assert offenders == []


def test_a_command_imports_only_the_driver_it_uses() -> None:
    code = (
        "import sys; from kvsourcing.tools.cli import main; "
        "main(['events', 'k', '--store', 'memory://']); "
        f"print(sorted(m for m in {DRIVERS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "['kvsourcing.stores.memory']"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"kvsourcing {kvsourcing.__version__}"


def test_the_help_lists_the_drivers_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "dynamodb  DynamoDB administration" in capsys.readouterr().out


def test_dynamodb_create_table_takes_a_store_url(
    aws_env: None, moto_server_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kvsourcing.testing.moto import REGION, fresh_table_name

    table = fresh_table_name()
    url = f"dynamodb://{table}?region={REGION}&endpoint_url={moto_server_url}"
    assert main(["dynamodb", "create-table", "--store", url]) == 0
    assert f"table {table!r} created" in capsys.readouterr().out
    monkeypatch.setenv("KVSOURCING_STORE", url)
    assert main(["dynamodb", "create-table"]) == 0
    assert f"table {table!r} already exists" in capsys.readouterr().out


def test_dynamodb_create_table_refuses_two_different_tables(capsys: pytest.CaptureFixture[str]) -> None:
    url = "dynamodb://orders?region=eu-west-1&endpoint_url=http://admin:s3cret@127.0.0.1:1"
    assert main(["dynamodb", "create-table", "payments", "--store", url]) == 1
    err = capsys.readouterr().err
    assert "table name is given twice, as 'payments' and as 'orders'" in err
    assert "s3cret" not in err


def test_dynamodb_create_table_needs_a_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KVSOURCING_STORE", raising=False)
    assert main(["dynamodb", "create-table"]) == 1
    assert "ConfigurationError: no table" in capsys.readouterr().err
