"""``open_store``: memory URLs, options passed through, errors, the environment variable."""

from __future__ import annotations

from typing import Any

import pytest

from kvsourcing import (
    ConfigurationError,
    EventStore,
    JsonCodec,
    open_store,
)
from kvsourcing.config import ENVIRONMENT_VARIABLE
from kvsourcing.stores.keyvalue import KeyValueStore
from kvsourcing.testing.domain import Account, Deposited


@pytest.fixture(autouse=True)
def no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)


def test_environment_variable_name() -> None:
    assert ENVIRONMENT_VARIABLE == "KVSOURCING_STORE"


@pytest.mark.parametrize("url", ["memory://", "memory:///"])
def test_memory_url_opens_a_working_store(url: str) -> None:
    with open_store(url) as store:
        assert isinstance(store, EventStore) and isinstance(store, KeyValueStore)
        writer = Account("t", store)
        writer.apply_event(Deposited(2))
        writer.commit()
        reader = Account("t", store)
        reader.refresh()
        assert reader.balance == 2


def test_each_memory_store_is_new_and_empty() -> None:
    first, second = open_store("memory://"), open_store("memory://")
    writer = Account("t", first)
    writer.apply_event(Deposited(1))
    writer.commit()
    reader = Account("t", second)
    reader.refresh()
    assert reader.sequence_number() == 0


def test_snapshot_interval_option_is_passed_through() -> None:
    store = open_store("memory://", snapshot_interval=2)
    assert store.snapshot_interval == 2
    writer = Account("t", store)
    writer.apply_event(Deposited(1))
    writer.commit()
    assert store.read_snapshot("t") is None
    writer.apply_event(Deposited(1))
    writer.commit()
    assert store.read_snapshot("t") == (2, {"owner": "", "balance": 2})
    assert open_store("memory://").snapshot_interval == 0


def test_codec_option_is_passed_through() -> None:
    store = open_store("memory://", codec=JsonCodec())
    writer = Account("t", store)
    writer.apply_event(Deposited(5))
    writer.commit()
    (record,) = store.driver.load("t", 0).records
    assert record == b'["Deposited",{"amount":5},"bank"]'


def test_unknown_option_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="colour"):
        open_store("memory://", colour="blue")


def test_memory_url_with_a_host_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        open_store("memory://somewhere/db")


def test_unknown_scheme_lists_the_supported_schemes() -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store("postgres://localhost/db")
    message = str(caught.value)
    assert "postgres" in message
    for scheme in ("memory://", "redis://", "rediss://", "redis+cluster://", "dynamodb://"):
        assert scheme in message


@pytest.mark.parametrize("url", ["memory", "", "localhost:6379"])
def test_url_without_a_scheme_raises_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_environment_variable_is_used_when_url_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "memory://")
    assert isinstance(open_store(), KeyValueStore)
    assert open_store(snapshot_interval=4).snapshot_interval == 4


def test_environment_variable_with_a_bad_scheme_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "ftp://x")
    with pytest.raises(ConfigurationError, match="ftp"):
        open_store()


def test_explicit_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "ftp://x")
    assert isinstance(open_store("memory://"), KeyValueStore)


@pytest.mark.parametrize("value", [None, ""])
def test_no_url_and_no_environment_raises_configuration_error(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv(ENVIRONMENT_VARIABLE, value)
    with pytest.raises(ConfigurationError, match=ENVIRONMENT_VARIABLE):
        open_store()


def test_scheme_is_case_insensitive() -> None:
    from kvsourcing import open_store
    from kvsourcing.stores.keyvalue import KeyValueStore

    assert isinstance(open_store("MEMORY://"), KeyValueStore)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://admin:hunter2@db/x",  # unsupported scheme
        "redis:/admin:hunter2@localhost",  # no scheme (one slash)
        "admin:hunter2@localhost:6379",  # no scheme at all
        "redsi://:hun?ter/2@localhost/0",  # unencoded '?' and '/' in the password
        "rediss+clustr://h:7000/0?ssl_password=hunter2",  # a secret query option
        "memory://admin:hunter2@somewhere",  # the memory store takes no host
        "dynamodb://admin:hunter2@orders/extra",  # a path after the table
        "dynamodb://admin:hunter2@orders?colour=blue",  # an unknown parameter
    ],
)
def test_url_errors_do_not_show_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "hunter2" not in message and "hun?ter" not in message
    assert "***" in message


def test_redact_url_keeps_what_is_not_secret() -> None:
    from kvsourcing.config import redact_url, url_secrets

    assert (
        redact_url("redis://app:p%40ss@host:6379/0?prefix=shop") == "redis://app:***@host:6379/0?prefix=shop"
    )
    assert redact_url("redis://host/0?client_name=a@b") == "redis://host/0?client_name=a@b"
    assert redact_url("memory://") == "memory://"
    assert url_secrets("redis://app:p%40ss@host/0?ssl_password=k") == ["p%40ss", "p@ss", "k"]


@pytest.mark.parametrize("options", [{"snapshot_interval": -1}, {"buckets": 0}, {"commit_id_ttl": -5}])
def test_a_bad_option_value_is_a_configuration_error(options: dict[str, Any]) -> None:
    # The contract: bad URL or options raise ConfigurationError (which is still a ValueError).
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        open_store("memory://", **options)
