"""DynamoDB fixtures on moto: in-process (``mock_aws``) and a threaded moto server.

moto applies a ``TransactWriteItems`` in several Python steps, so two transactions served on
two threads at once can both pass their conditions. Both fixtures serialise moto (a lock
around the in-process stubber, a lock around the server's WSGI app), so a lost write that a
concurrency test finds is the driver's, not moto's. Every table is small and fresh (moto
copies and scans a whole table per transaction and query).

moto 5 also deep-copies the whole table once per action of a ``TransactWriteItems`` (all
copies taken before any action runs, to roll back on cancellation); ``copy_tables_once``
makes those copies one per table and transaction, which is the same snapshot, so tests of
four-action commits do not pay four copies of the table.
"""

from __future__ import annotations

import copy
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

REGION = "us-east-1"

_CREDENTIAL_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_REGION",
)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials and region, and nothing from the machine's AWS configuration."""
    for name in _CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class _CopyOncePerTransaction:
    """Stands for the ``copy`` module in moto's DynamoDB models: within one
    ``transact_write_items`` call, a table deep-copied again is the copy already made."""

    def __init__(self) -> None:
        self.local = threading.local()

    def deepcopy(self, value: Any) -> Any:
        cache = getattr(self.local, "cache", None)
        if cache is None:
            return copy.deepcopy(value)
        if id(value) not in cache:
            cache[id(value)] = (value, copy.deepcopy(value))
        return cache[id(value)][1]

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def copy_tables_once() -> None:
    """Patch moto (for this process, idempotently) to copy each table once per transaction."""
    from moto.dynamodb import models

    if isinstance(models.copy, _CopyOncePerTransaction):
        return
    shim = _CopyOncePerTransaction()
    transact = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        shim.local.cache = {}
        try:
            return transact(self, transact_items)
        finally:
            shim.local.cache = None

    models.copy = shim  # type: ignore[assignment]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


@pytest.fixture
def moto_aws(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process, one request at a time."""
    from moto import mock_aws
    from moto.core.botocore_stubber import BotocoreStubber

    copy_tables_once()
    lock = threading.Lock()
    serve = BotocoreStubber.__call__

    def serialised(self: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return serve(self, *args, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", serialised)
    with mock_aws():
        yield


def fresh_table_name() -> str:
    """A table name no other test uses."""
    return f"kvs-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def moto_client(moto_aws: None) -> Iterator[Any]:
    """A DynamoDB client on in-process moto, made the way the store makes its own."""
    from kvsourcing.stores.dynamodb import make_client

    client = make_client(region=REGION)
    yield client
    client.close()


@pytest.fixture
def moto_table(moto_client: Any) -> str:
    """A fresh table on in-process moto."""
    from kvsourcing.stores.dynamodb import create_table

    name = fresh_table_name()
    create_table(moto_client, name)
    return name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """A moto server on a free local port, serving one request at a time; stopped at the end."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    class SerialisedMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            lock = threading.Lock()

            def serialised(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
                with lock:
                    return list(app(environ, start_response))

            self._server = make_server(self._ip_address, self._port, serialised, True)
            self._server_ready_event.set()
            self._server.serve_forever()

    copy_tables_once()
    server = SerialisedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def server_client(aws_env: None, moto_server_url: str) -> Iterator[Any]:
    """A DynamoDB client on the moto server."""
    from kvsourcing.stores.dynamodb import make_client

    client = make_client(region=REGION, endpoint_url=moto_server_url)
    yield client
    client.close()


@pytest.fixture
def server_table(server_client: Any) -> Iterator[str]:
    """A fresh table on the moto server, deleted afterwards."""
    from kvsourcing.stores.dynamodb import create_table

    name = fresh_table_name()
    create_table(server_client, name)
    yield name
    server_client.delete_table(TableName=name)


def count_requests(client: Any) -> Counter[str]:
    """A live count of the client's API calls by operation name (botocore's before-call)."""
    counts: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counts[model.name] += 1

    client.meta.events.register("before-call.dynamodb", count)
    return counts


def lose_next_reply(client: Any) -> list[bool]:
    """Make the client's next successful ``TransactWriteItems`` lose its reply: DynamoDB
    applies the transaction, then the client sees the connection drop. Returns a list that
    holds ``True`` once the reply was lost."""
    from botocore.exceptions import ConnectionClosedError

    lost: list[bool] = []

    def lose_reply(http_response: Any, **_: Any) -> None:
        if not lost and http_response.status_code == 200:
            lost.append(True)
            raise ConnectionClosedError(endpoint_url="http://dynamodb.injected")

    client.meta.events.register("after-call.dynamodb.TransactWriteItems", lose_reply)
    return lost
