"""Every error the library raises is a ``KvSourcingError`` that says what was wrong and
what to do, including where redis-py and boto3 would raise their own."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kvsourcing import (
    KvSourcingError,
    RegistrationError,
    StandardCommandRegistry,
    StandardEventRegistry,
    StoreUnavailableError,
    open_store,
)
from kvsourcing.config import redact_url, url_secrets
from kvsourcing.testing.domain import Counter, Increment
from kvsourcing.testing.servers import HOST, RedisServer


@dataclass
class Opened:
    owner: str


def test_a_registry_name_clash_is_a_registration_error() -> None:
    events = StandardEventRegistry("bank")
    events.register_event(Opened)
    other = type("Opened", (), {"__annotations__": {}})
    with pytest.raises(RegistrationError, match="already registered") as caught:
        events.register_event(other)
    assert isinstance(caught.value, KvSourcingError) and isinstance(caught.value, ValueError)
    commands = StandardCommandRegistry("bank")
    commands.register_command(Opened)
    with pytest.raises(RegistrationError):
        commands.register_command(other)


@dataclass
class Located:
    where: Path


@dataclass
class Nested:
    items: list[Located]


@dataclass
class Fine:
    amount: int
    tags: dict[str, list[float]]
    parent: Opened | None = None
    anything: Any = None


def test_register_event_refuses_a_field_the_codecs_cannot_encode() -> None:
    events = StandardEventRegistry("geo")
    with pytest.raises(RegistrationError, match=r"field 'where' of Located is typed Path"):
        events.register_event(Located)
    with pytest.raises(RegistrationError, match=r"field 'items' of Nested is typed Path"):
        events.register_event(Nested)
    assert events.get_event_type(Located) == ("Located", False), "nothing registered"
    assert events.register_event(Fine) is Fine
    assert events.register_event(Located, check_encodable=False) is Located


def test_the_default_codec_indeed_refuses_what_register_event_refuses() -> None:
    from kvsourcing import EncodingError
    from kvsourcing.codecs import MsgpackCodec

    with pytest.raises(EncodingError):
        MsgpackCodec().encode(Located(Path("/tmp")))


def test_a_password_inside_endpoint_url_is_redacted() -> None:
    plain = "dynamodb://orders?region=eu-west-1&endpoint_url=http://admin:s3cret@localhost:8000"
    encoded = "dynamodb://orders?endpoint_url=http%3A%2F%2Fadmin%3As3cret%40localhost%3A8000&region=x"
    assert redact_url(plain) == plain.replace("s3cret", "***")
    assert redact_url(encoded) == encoded.replace("s3cret", "***")
    assert url_secrets(plain) == ["s3cret"]
    with pytest.raises(KvSourcingError) as caught:
        open_store(plain + "&colour=blue")
    assert "s3cret" not in str(caught.value) and "admin:***@" in str(caught.value)


def test_the_dynamodb_client_never_holds_the_endpoint_password() -> None:
    from kvsourcing.stores import dynamodb

    client = dynamodb.make_client("eu-west-1", "http://admin:s3cret@127.0.0.1:8000")
    assert client.meta.endpoint_url == "http://127.0.0.1:8000"
    client.close()


@pytest.fixture
def not_redis() -> Iterator[int]:
    """A TCP server on a free port that answers every request as an HTTP server would."""
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_a_redis_url_to_a_port_that_is_not_redis_is_store_unavailable(not_redis: int) -> None:
    with (
        open_store(f"redis://{HOST}:{not_redis}/0") as store,
        pytest.raises(StoreUnavailableError, match="does not answer in Redis's protocol"),
    ):
        Counter("a", store).handle(Increment())


def test_rediss_to_a_plain_server_says_tls_may_be_the_cause(redis_server: RedisServer) -> None:
    url = f"rediss://{HOST}:{redis_server.port}/0?socket_connect_timeout=0.5"
    with (
        open_store(url) as store,
        pytest.raises(StoreUnavailableError, match=r"TLS handshake.*use redis:// instead of rediss://"),
    ):
        Counter("a", store).handle(Increment())


def test_rediss_cluster_to_a_plain_server_says_tls_may_be_the_cause(redis_server: RedisServer) -> None:
    url = f"rediss+cluster://{HOST}:{redis_server.port}?socket_connect_timeout=0.5&socket_timeout=0.5"
    with pytest.raises(
        StoreUnavailableError, match="if the servers do not speak TLS, use redis\\+cluster://"
    ):
        open_store(url)
