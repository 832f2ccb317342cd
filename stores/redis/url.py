"""Store URLs: ``redis://``, ``rediss://``, ``redis+cluster://`` and ``rediss+cluster://``.

The URL is checked here, eagerly, so that a typo fails at ``open_store`` with a message
saying what is wrong; redis-py's own parser (``from_url``) then builds the client, so
every connection option behaves as redis-py documents it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import REDIS_ALLOWED_KEYS, ClusterNode, RedisCluster
from redis.connection import (
    URL_QUERY_ARGUMENT_PARSERS,
    Connection,
    ConnectionPool,
    SSLConnection,
)
from redis.exceptions import RedisClusterException, RedisError

from kvsourcing.config import redact_url, userinfo_end
from kvsourcing.errors import ConfigurationError
from kvsourcing.stores.redis.connection import CheckedConnection, CheckedSSLConnection
from kvsourcing.stores.redis.errors import UNAVAILABLE, unavailable

SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")
EXAMPLES = (
    "redis://user:password@localhost:6379/0, "
    "rediss://localhost:6380/0?ssl_ca_certs=/etc/redis/ca.pem, "
    "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
)
DEFAULT_PORT = 6379
# Driver options that may also come from the query string (typed here, not by redis-py).
INT_QUERY_OPTIONS = ("buckets", "snapshot_interval")
STR_QUERY_OPTIONS = ("prefix", "compression")
BOOL_QUERY_OPTIONS = {"true": True, "1": True, "false": False, "0": False}
"""``feed=false`` (or ``0``) in the query string opens a store without a feed."""
# Connection options a URL can express as text; the rest (objects) belong in code.
TEXT_OPTIONS = {
    "client_name",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_cert_reqs",
    "ssl_ciphers",
}


def _init_parameters(*classes: type) -> set[str]:
    """Keyword parameters the ``__init__`` of ``classes`` (and their bases) accept."""
    names: set[str] = set()
    for cls in classes:
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            for param in inspect.signature(init).parameters.values():
                if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                    names.add(param.name)
    return names


def _query_options(tls: bool, cluster: bool) -> frozenset[str]:
    """Connection options accepted in the query string of one kind of URL."""
    accepted = _init_parameters(SSLConnection if tls else Connection, ConnectionPool)
    names = (set(URL_QUERY_ARGUMENT_PARSERS) | TEXT_OPTIONS) & accepted
    names -= {"db", "retry_on_error"}
    if cluster:
        names &= set(REDIS_ALLOWED_KEYS)
    return frozenset(names)


QUERY_OPTIONS = {
    (tls, cluster): _query_options(tls, cluster) for tls in (False, True) for cluster in (False, True)
}


@dataclass
class RedisUrl:
    """A checked store URL: nodes, credentials, db, connection and driver options."""

    tls: bool
    cluster: bool
    nodes: list[tuple[str, int]]
    userinfo: str = field(repr=False)
    db: int
    query: list[tuple[str, str]] = field(repr=False)
    driver_options: dict[str, Any] = field(default_factory=dict)

    def node_url(self, host: str, port: int) -> str:
        """A plain redis-py URL for one node, query string included."""
        scheme = "rediss" if self.tls else "redis"
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.userinfo:
            netloc = f"{self.userinfo}@{netloc}"
        query = urlencode(self.query, quote_via=quote)
        return f"{scheme}://{netloc}/{self.db}" + (f"?{query}" if query else "")


def bad_url(url: str, problem: str) -> ConfigurationError:
    """A ``ConfigurationError`` saying what is wrong with ``url``, with examples of right ones."""
    return ConfigurationError(
        f"invalid Redis store URL {redact_url(url)!r}: {problem}; expected for example {EXAMPLES}"
    )


def parse_host(url: str, text: str) -> tuple[str, int]:
    """``host[:port]`` or ``[ipv6][:port]`` as ``(host, port)``."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise bad_url(url, f"malformed IPv6 host {text!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise bad_url(url, "a host is missing")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad_url(url, f"port {port_text!r} of host {host!r} is not a number in 1..65535")
    return host, int(port_text)


def parse_url(url: str) -> RedisUrl:
    """Check ``url`` and split it into its parts; raise ``ConfigurationError`` if malformed."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a Redis store URL must be a str, not {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise bad_url(url, f"the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    scheme = scheme.lower()
    tls, cluster = scheme.startswith("rediss"), scheme.endswith("+cluster")
    rest = url.partition("://")[2]
    if any(char in rest[: max(userinfo_end(rest), 0)] for char in "/?#"):
        raise bad_url(
            url, "the user info holds an unencoded '/', '?' or '#'; percent-encode it (%2F, %3F, %23)"
        )
    try:
        parts = urlsplit(url)
    except ValueError as err:
        raise bad_url(url, str(err)) from None
    if parts.fragment:
        raise bad_url(url, f"unexpected fragment '#{parts.fragment}'")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    hosts = hostlist.split(",")
    if not cluster and len(hosts) > 1:
        raise bad_url(url, f"several hosts need a {scheme}+cluster:// URL")
    nodes = [parse_host(url, host) for host in hosts]

    db_text = parts.path.strip("/")
    if db_text and not db_text.isdigit():
        raise bad_url(url, f"the path must be a database number, not {db_text!r}")
    db = int(db_text or 0)
    if cluster and db:
        raise bad_url(url, f"a cluster has only database 0, not {db}")

    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as err:
        raise bad_url(url, f"malformed query string ({err})") from None
    names = [name for name, _ in pairs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise bad_url(url, f"query option {duplicates[0]!r} is given more than once")
    driver_options: dict[str, Any] = {}
    query: list[tuple[str, str]] = []
    accepted = QUERY_OPTIONS[tls, cluster]
    for name, value in pairs:
        if name in INT_QUERY_OPTIONS:
            if not value.isdigit():
                raise bad_url(url, f"{name} must be a whole number, not {value!r}")
            driver_options[name] = int(value)
        elif name in STR_QUERY_OPTIONS:
            driver_options[name] = value
        elif name == "feed":
            if value.lower() not in BOOL_QUERY_OPTIONS:
                raise bad_url(url, f"feed must be true or false, not {value!r}")
            driver_options[name] = BOOL_QUERY_OPTIONS[value.lower()]
        elif name in accepted:
            query.append((name, value))
        else:
            known = ", ".join(sorted(accepted | {*INT_QUERY_OPTIONS, *STR_QUERY_OPTIONS, "feed"}))
            hint = " (TLS options need rediss://)" if name.startswith("ssl_") and not tls else ""
            raise bad_url(url, f"unknown query option {name!r}{hint}; known: {known}")
    return RedisUrl(tls, cluster, nodes, userinfo, db, query, driver_options)


def build_client(url: str, parsed: RedisUrl) -> Redis | RedisCluster:
    """A redis-py client for ``parsed``, built by redis-py's own URL parser.

    A single-node client connects lazily, on connections that name the likely cause when
    the port is not a Redis server's or does not speak TLS (``CheckedConnection``); a
    cluster client reads the slot map at once, so an unreachable cluster raises
    ``StoreUnavailableError`` here.
    """
    first, *others = parsed.nodes
    try:
        if not parsed.cluster:
            connection_class = CheckedSSLConnection if parsed.tls else CheckedConnection
            return Redis.from_url(parsed.node_url(*first), connection_class=connection_class)
        return RedisCluster.from_url(
            parsed.node_url(*first),
            startup_nodes=[ClusterNode(host, port) for host, port in others],  # type: ignore[no-untyped-call]
        )
    except ValueError as err:
        raise bad_url(url, str(err)) from None
    except (*UNAVAILABLE, RedisClusterException, RedisError) as err:
        where = ",".join(f"{host}:{port}" for host, port in parsed.nodes)
        password = unquote(parsed.userinfo.partition(":")[2]) or None
        failure = unavailable(where, err, password)
        if parsed.tls:
            failure.args = (f"{failure}; if the servers do not speak TLS, use redis+cluster://",)
        raise failure from err


def build_async_client(url: str, parsed: RedisUrl) -> AsyncRedis | AsyncRedisCluster:
    """A ``redis.asyncio`` client for ``parsed``, built by redis-py's URL parser; it connects
    lazily (a cluster client reads its slot map on the first command)."""
    first, *others = parsed.nodes
    try:
        if not parsed.cluster:
            return AsyncRedis.from_url(parsed.node_url(*first))
        nodes = [AsyncClusterNode(host, port) for host, port in others]
        return AsyncRedisCluster.from_url(parsed.node_url(*first), startup_nodes=nodes or None)
    except ValueError as err:
        raise bad_url(url, str(err)) from None
