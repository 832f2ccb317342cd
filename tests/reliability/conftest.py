"""Fixtures of the reliability suite: an AOF server, a cutting proxy, worker processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hammer import kill_all
from proxy import CuttingProxy

from kvsourcing.testing.servers import AofRedis, RedisServer


@pytest.fixture
def worker_processes() -> Iterator[list[subprocess.Popen[str]]]:
    """A list to put started worker processes in: any still running at teardown are killed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    kill_all(procs)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[AofRedis]:
    """A fresh AOF (fsync always) Redis server, killed at teardown whatever happened."""
    server = AofRedis(tmp_path / "aof")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def cutting_proxy(redis_server: RedisServer) -> Iterator[CuttingProxy]:
    """A ``CuttingProxy`` in front of the session's single-node Redis server."""
    proxy = CuttingProxy(redis_server.port)
    try:
        yield proxy
    finally:
        proxy.close()
