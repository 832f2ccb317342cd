"""A TCP proxy that cuts a Redis connection around one chosen request (tests of the
commit whose reply is lost)."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

from kvsourcing.testing.servers import HOST


class CuttingProxy:
    """A TCP proxy to ``upstream`` that can cut a connection around one request.

    ``arm(marker, mode, times)``: the next ``times`` client requests containing ``marker``
    (a commit id, say) are cut: ``before`` (not forwarded), ``after-request`` (forwarded,
    then cut at once) or ``after-reply`` (forwarded, the server's reply read and thrown
    away, then cut): the client never sees a reply.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = (HOST, upstream_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.marker: bytes | None = None
        self.mode = "after-reply"
        self.remaining = 0
        self.cuts = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def arm(self, marker: bytes | str, mode: str, times: int = 1) -> None:
        assert mode in ("before", "after-request", "after-reply")
        with self._lock:
            self.marker = marker.encode() if isinstance(marker, str) else marker
            self.mode, self.remaining = mode, times

    def disarm(self) -> None:
        with self._lock:
            self.marker, self.remaining = None, 0

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            thread = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _should_cut(self, seen: bytes) -> str | None:
        with self._lock:
            if self.marker is None or self.remaining == 0 or self.marker not in seen:
                return None
            self.remaining -= 1
            self.cuts += 1
            return self.mode

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        tail = b""
        try:
            while not self._closed:
                for key, _ in selector.select(timeout=0.2):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client:
                        seen = tail + data
                        tail = seen[-256:]
                        cut = self._should_cut(seen)
                        if cut == "before":
                            return
                        upstream.sendall(data)
                        if cut == "after-request":
                            return
                        if cut == "after-reply":
                            upstream.settimeout(5)
                            upstream.recv(65536)  # the reply, thrown away
                            return
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in [self._acceptor, *self._threads]:
            thread.join(timeout=5)
