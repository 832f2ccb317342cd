"""redis-py connections that say what went wrong when the URL points at the wrong server.

redis-py raises ``InvalidResponse`` (a bare ``RedisError``) when the port answers in
another protocol, and a ``rediss://`` URL to a plain Redis port waits in the TLS
handshake for ``socket_timeout``, then reports a bare timeout. These connections raise
redis-py's ``ConnectionError`` instead, with a message naming the likely cause, which the
driver reports as ``StoreUnavailableError``; the handshake is bounded by
``socket_connect_timeout``, as the connection is.
"""

from __future__ import annotations

import ssl
from typing import Any

from redis.connection import Connection, SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse


class _ProtocolCheck:
    """Reports a reply in another protocol than Redis's as a connection failure."""

    host: str
    port: int

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except InvalidResponse as err:
            raise RedisConnectionError(
                f"{self.host}:{self.port} does not answer in Redis's protocol ({err}): is the URL's "
                "port a Redis server's?"
            ) from err


class CheckedConnection(_ProtocolCheck, Connection):
    """A plain connection that reports a server not speaking Redis's protocol."""


class CheckedSSLConnection(_ProtocolCheck, SSLConnection):
    """A TLS connection whose handshake is bounded by the connect timeout, and whose
    failure says that the server may not speak TLS."""

    def _connect(self) -> Any:
        timeout = self.socket_timeout
        # redis-py sets the socket's timeout to socket_timeout once connected, before the
        # handshake: so that the handshake is bounded by the connect timeout, lend it.
        self.socket_timeout = self.socket_connect_timeout
        try:
            sock = super()._connect()  # type: ignore[no-untyped-call]
        except (TimeoutError, ssl.SSLError, ConnectionResetError) as err:
            cause = "It timed out" if isinstance(err, TimeoutError) else f"It failed ({err})"
            # Not a timeout, so that redis-py keeps the message: "Error <args[0]> connecting
            # to <host:port>. <args[1]>."
            raise OSError(
                "in the TLS handshake",
                f"{cause}; the server may not speak TLS: for a plain Redis server use redis:// "
                "instead of rediss://",
            ) from err
        finally:
            self.socket_timeout = timeout
        sock.settimeout(timeout)
        return sock
