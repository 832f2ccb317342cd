"""Real Redis servers for tests and benchmarks: a single node, a Cluster (with replicas if
asked), TLS, replicas, and an AOF server that can be killed and restarted.

Each server is a ``redis-server`` child process on a free loopback port, without
persistence unless asked. No fakes: the driver's Lua scripts, hash tags and error paths
only mean something on a real server. The pytest fixtures over these live in ``tests/``.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 15.0
# redis-py retries a refused connection with a backoff of seconds by default: poll instead.
NO_RETRY = Retry(NoBackoff(), 0)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody listens on right now, whose cluster bus port (+10000)
    is free too, so that any server started on it can join a cluster."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port + 10000 <= 65535 and _bindable(port + 10000):
            return port


@dataclass
class RedisServer:
    """One ``redis-server`` child process; ``stop`` kills it."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes]
    tls: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The ``redis://`` (or, with TLS, ``rediss://``) URL of this server."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{HOST}:{self.port}/0"

    def client(self, **options: Any) -> redis.Redis:
        """A new client of this server (TLS options filled in)."""
        kwargs: dict[str, Any] = {"host": HOST, "port": self.port, **options}
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=self.tls["ca"], ssl_cert_reqs="required")
        return redis.Redis(**kwargs)

    def log(self) -> str:
        """The server's log, for failure messages."""
        path = self.workdir / f"redis-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Kill the server and wait for it to exit."""
        stop_process(self.process)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM (a clean stop), then SIGKILL if it does not exit in time; waits for it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def launch(port: int, workdir: Path, *args: str, tls: dict[str, str] | None = None) -> RedisServer:
    """Start ``redis-server`` on ``port`` (no persistence unless ``args`` turn it on: later
    options win) and wait until it answers; the server is stopped if it does not."""
    workdir.mkdir(parents=True, exist_ok=True)
    listen = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
    command = [
        "redis-server",
        *listen,
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--logfile",
        str(workdir / f"redis-{port}.log"),
        *args,
    ]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    server = RedisServer(port, workdir, process, tls or {})
    if not wait_for_ping(server):
        server.stop()
        raise RedisStartError(f"redis-server did not start on port {port}: {server.log()[-2000:]}")
    return server


class RedisStartError(RuntimeError):
    """A ``redis-server`` did not come up (its log is in the message)."""


def start_server(workdir: Path, *args: str, tls: dict[str, str] | None = None) -> RedisServer:
    """Start ``redis-server`` on a free port and wait until it answers PING (three ports are
    tried: another process may take a free port before the server binds it)."""
    error = RedisStartError("redis-server was not started")
    for _ in range(3):
        try:
            return launch(free_port(), workdir, *args, tls=tls)
        except RedisStartError as exc:
            error = exc
    raise error


@contextmanager
def running_server(*args: str) -> Iterator[RedisServer]:
    """A throwaway single-node server in a temporary directory, for scripts (bench/)."""
    with tempfile.TemporaryDirectory(prefix="kvsourcing-redis-") as workdir:
        server = start_server(Path(workdir), *args)
        try:
            yield server
        finally:
            server.stop()


def wait_for_ping(server: RedisServer) -> bool:
    """True once our server answers on its port (its ``process_id``, not that of a server
    that took the port first) and PING succeeds (an AOF loaded); False if it exits or times out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    client = server.client(socket_timeout=1, socket_connect_timeout=1, retry=NO_RETRY)
    try:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                return False
            try:
                if client.info("server")["process_id"] == server.process.pid and client.ping():
                    return True
            except redis.ConnectionError:  # BusyLoadingError included
                pass
            time.sleep(0.02)
        return False
    finally:
        client.close()


@dataclass
class RedisClusterNodes:
    """The three primaries of a test Redis Cluster."""

    servers: list[RedisServer]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(f"{HOST}:{s.port}" for s in self.servers)

    def client(self, **options: Any) -> RedisCluster:
        """A new cluster client, bootstrapped from the first node."""
        return RedisCluster(host=HOST, port=self.servers[0].port, **options)


def wait_for_cluster_ok(servers: list[RedisServer]) -> None:
    """Wait until every node reports ``cluster_state:ok``."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for server in servers:
        client = server.client()
        try:
            while client.cluster("INFO")["cluster_state"] != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster not ok on port {server.port}")
                time.sleep(0.05)
        finally:
            client.close()


def start_tls_server(workdir: Path) -> RedisServer:
    """A TLS-only Redis server with a certificate signed by a throwaway CA made in ``workdir``."""
    files = make_tls_files(workdir)
    return start_server(
        workdir,
        "--tls-cert-file",
        files["cert"],
        "--tls-key-file",
        files["key"],
        "--tls-ca-cert-file",
        files["ca"],
        "--tls-auth-clients",
        "no",
        tls=files,
    )


def make_tls_files(workdir: Path) -> dict[str, str]:
    """Write a self-signed CA and a server certificate for 127.0.0.1/localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(hours=1)
    not_after = now + datetime.timedelta(days=1)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("kvsourcing test CA"))
        .issuer_name(name("kvsourcing test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = {"ca": workdir / "ca.crt", "cert": workdir / "server.crt", "key": workdir / "server.key"}
    files["ca"].write_bytes(ca_cert.public_bytes(pem))
    files["cert"].write_bytes(cert.public_bytes(pem))
    files["key"].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return {role: str(path) for role, path in files.items()}


def info(server: RedisServer, section: str) -> dict[str, Any]:
    """``INFO <section>`` of ``server``, parsed."""
    client = server.client(socket_timeout=2, retry=NO_RETRY)
    try:
        return client.info(section)
    finally:
        client.close()


def start_replica(workdir: Path, primary: RedisServer, *args: str) -> RedisServer:
    """A replica of ``primary`` (``--replicaof``), returned once its link is up and synced."""
    replica = start_server(workdir, "--replicaof", HOST, str(primary.port), *args)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while info(replica, "replication").get("master_link_status") != "up":
        if time.monotonic() > deadline:
            replica.stop()
            raise RuntimeError(f"replica on port {replica.port} did not sync: {replica.log()}")
        time.sleep(0.05)
    return replica


def start_cluster(
    workdir: Path, *, primaries: int = 3, replicas: int = 0, node_timeout_ms: int = 2000
) -> RedisClusterNodes:
    """A new Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each, its
    nodes listed in the order ``redis-cli --cluster create`` was given them (primaries
    first); the caller stops it with ``stop()``."""
    servers: list[RedisServer] = []
    try:
        for index in range(primaries * (1 + replicas)):
            nodedir = workdir / f"node{index}"
            servers.append(
                start_server(
                    nodedir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(nodedir / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                )
            )
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"{HOST}:{s.port}" for s in servers),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_for_cluster_ok(servers)
        if replicas:
            wait_for_replicas_synced(servers, primaries * replicas)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return RedisClusterNodes(servers)


def wait_for_replicas_synced(servers: list[RedisServer], count: int) -> None:
    """Wait until ``count`` of ``servers`` are replicas whose link to their primary is up."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        roles = [info(server, "replication") for server in servers]
        if sum(r["role"] == "slave" and r.get("master_link_status") == "up" for r in roles) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"replicas not synced: {roles}")
        time.sleep(0.05)


def stop_cluster(cluster: RedisClusterNodes) -> None:
    """Stop every node of ``cluster`` (those already stopped included)."""
    for server in cluster.servers:
        server.stop()


class AofRedis:
    """A ``redis-server`` with ``appendonly yes`` and ``appendfsync always`` that can be
    SIGKILLed and restarted on the same port and data directory."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.extra = extra
        self.server: RedisServer | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, **options)

    def start(self) -> None:
        """Start (or restart) the server, retrying while a killed one's port is still held."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                self.server = launch(
                    self.port, self.workdir, "--appendonly", "yes", "--appendfsync", "always", *self.extra
                )
                return
            except RedisStartError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the server: no shutdown, no final fsync."""
        if self.server is not None and self.server.process.poll() is None:
            self.server.process.kill()
            self.server.process.wait(timeout=10)

    stop = kill
