"""``dynamodb://`` URLs, ``open_store`` and ``new_store``'s configuration errors."""

from __future__ import annotations

from typing import Any

import pytest

import kvsourcing
from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.dynamodb import from_url, new_store
from kvsourcing.stores.keyvalue import Commit
from kvsourcing.testing.moto import REGION


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
    with pytest.raises(ConfigurationError, match=r"does not take option.*colour"):
        from_url("dynamodb://events", colour="blue")
    with pytest.raises(ConfigurationError, match=r"does not take option.*commit_id_ttl"):
        new_store("events", commit_id_ttl=60)  # commit ids no longer expire


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


def test_store_options_in_the_query(moto_table: str) -> None:
    url = f"dynamodb://{moto_table}?region={REGION}&feed=false&buckets=4&feed_grace=1.5&snapshot_interval=3"
    with kvsourcing.open_store(url) as store:
        driver = store.driver
        assert (driver.feed, driver.buckets, driver.feed_grace, store.snapshot_interval) == (False, 4, 1.5, 3)
    with kvsourcing.open_store(f"dynamodb://{moto_table}?region={REGION}&feed=true") as store:
        assert store.driver.feed is True


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("feed=maybe", "feed='maybe' is not of its type"),
        ("buckets=many", "buckets='many' is not of its type"),
        ("feed_grace=soon", "feed_grace='soon' is not of its type"),
    ],
)
def test_bad_query_values(aws_env: None, query: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        from_url(f"dynamodb://events?{query}")


def test_an_option_in_the_query_and_as_a_keyword_is_refused(aws_env: None) -> None:
    with pytest.raises(ConfigurationError, match="buckets is also given as a keyword"):
        from_url("dynamodb://events?buckets=4", buckets=8)
