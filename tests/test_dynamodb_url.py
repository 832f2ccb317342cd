"""``dynamodb://`` URLs, ``open_store`` and ``new_store``'s configuration errors."""

from __future__ import annotations

from typing import Any

import pytest
from dynamodb_fixtures import REGION

import kvsourcing
from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.dynamodb import from_url, new_store
from kvsourcing.stores.keyvalue import Commit


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("dynamodb://", "names no table"),
        ("dynamodb://?region=us-east-1", "names no table"),
        ("dynamodb://events?regoin=us-east-1", "unknown parameter.*regoin"),
        ("dynamodb://events?region=a&region=b", "given once"),
        ("dynamodb://events?region=", "given once"),
        ("dynamodb://events/more", "path"),
        ("dynamodb://x", "table name"),
        ("dynamodb://ev:ents", "table name"),
    ],
)
def test_bad_urls(aws_env: None, url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as raised:
        from_url(url)
    if "table name" not in problem:
        assert "dynamodb://my-events?region=" in str(raised.value)


def test_unknown_option(aws_env: None) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option.*colour"):
        from_url("dynamodb://events", colour="blue")


def test_client_and_region_exclusive(moto_client: Any) -> None:
    with pytest.raises(ConfigurationError, match="client="):
        from_url(f"dynamodb://events?region={REGION}", client=moto_client)
    with pytest.raises(ConfigurationError, match="client="):
        new_store("events", client=moto_client, region=REGION)


def test_url_opens_a_working_store(moto_table: str) -> None:
    store = kvsourcing.open_store(f"dynamodb://{moto_table}?region={REGION}", snapshot_interval=2)
    with store:
        driver = store.driver
        assert driver.table_name == moto_table
        assert driver.client.meta.region_name == REGION
        assert store.snapshot_interval == 2
        assert driver.append(Commit("k1", 0, [b"a"])) is None


def test_url_with_endpoint(moto_server_url: str, server_table: str) -> None:
    with from_url(f"dynamodb://{server_table}?region={REGION}&endpoint_url={moto_server_url}") as s:
        assert s.driver.client.meta.endpoint_url == moto_server_url
        assert s.driver.load("k1", 0).records == []


def test_url_from_environment(moto_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVSOURCING_STORE", f"dynamodb://{moto_table}")
    with kvsourcing.open_store() as store:
        assert store.driver.table_name == moto_table
