"""DynamoDB on moto for tests and benchmarks: in-process (``mock_aws``) and a threaded server.

moto applies a ``TransactWriteItems`` in several Python steps, so two transactions served on
two threads at once can both pass their conditions. Both modes serialise moto (a lock
around the in-process stubber, a lock around the server's WSGI app), so a lost write that a
concurrency test finds is the driver's, not moto's. Keep tables small and fresh (moto
copies and scans a whole table per transaction and query).

moto 5 also deep-copies the whole table once per action of a ``TransactWriteItems`` (all
copies taken before any action runs, to roll back on cancellation); ``copy_tables_once``
makes those copies one per table and transaction, which is the same snapshot, so
four-action commits do not pay four copies of the table.
"""

from __future__ import annotations

import copy
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from kvsourcing.testing.servers import free_port

REGION = "us-east-1"

CREDENTIAL_VARIABLES = (
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
"""The machine's AWS settings that would reach past moto (or pick a real account)."""


def fake_aws_environment(workdir: Path) -> dict[str, str]:
    """The variables that give boto3 fake credentials and ``REGION``, and point its config
    files at paths in ``workdir`` that do not exist (unset ``CREDENTIAL_VARIABLES`` too)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@contextmanager
def fake_aws(workdir: Path) -> Iterator[None]:
    """``os.environ`` with ``fake_aws_environment`` and no ``CREDENTIAL_VARIABLES``, restored after."""
    with mock.patch.dict(os.environ, fake_aws_environment(workdir)):
        for name in CREDENTIAL_VARIABLES:
            os.environ.pop(name, None)
        yield


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
    from moto.dynamodb import models as typed_models

    models: Any = typed_models  # its ``copy`` import is not exported
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

    models.copy = shim
    models.DynamoDBBackend.transact_write_items = transact_write_items


@contextmanager
def serialised_mock_aws(*, copy_once: bool = True) -> Iterator[None]:
    """moto in-process, one request at a time (needs fake credentials: ``fake_aws``);
    ``copy_once=False`` leaves moto's per-action table copies as they are (bench/dynamodb_bench.py
    measures moto unpatched)."""
    from moto import mock_aws
    from moto.core.botocore_stubber import BotocoreStubber

    if copy_once:
        copy_tables_once()
    lock = threading.Lock()
    serve = BotocoreStubber.__call__

    def serialised(self: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return serve(self, *args, **kwargs)

    with mock.patch.object(BotocoreStubber, "__call__", serialised), mock_aws():
        yield


@contextmanager
def mocked_aws(workdir: Path, *, copy_once: bool = True) -> Iterator[None]:
    """``fake_aws`` and ``serialised_mock_aws`` together, for scripts (bench/)."""
    with fake_aws(workdir), serialised_mock_aws(copy_once=copy_once):
        yield


def fresh_table_name(prefix: str = "kvs") -> str:
    """A table name nobody else uses."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free local port, serving one request at a time; yields its URL."""
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
    server = SerialisedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
