"""A TCP proxy on loopback that can silently freeze connections.

A Redis failover or a half-dead TCP path can leave a connection that stays
open but delivers nothing, with no error on either side. ``freeze`` makes
chosen connections behave that way: the proxy stops moving their bytes
without closing anything. New connections keep working.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

from tests.support.ports import free_port

BUFFER_SIZE = 65536
POLL_INTERVAL = 0.05


class _Connection:
    def __init__(self, client: socket.socket, upstream: socket.socket):
        self.client = client
        self.upstream = upstream
        self.sent_by_client = bytearray()
        self.frozen = False
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            try:
                sock.close()
            except OSError:
                pass


class FreezingProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; a context manager."""

    def __init__(self, target_port: int, port: int | None = None):
        self.target_port = target_port
        self.port = port or free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(POLL_INTERVAL * 4)
        self._connections: list[_Connection] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "FreezingProxy":
        self._spawn(self._accept_loop)
        return self

    def freeze(self, predicate: Callable[[bytes], bool]) -> int:
        """Freeze every open connection whose client bytes so far satisfy ``predicate``.

        Returns how many connections were frozen.
        """
        frozen = 0
        with self._lock:
            for connection in self._connections:
                if not connection.closed and predicate(bytes(connection.sent_by_client)):
                    connection.frozen = True
                    frozen += 1
        return frozen

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for connection in self._connections:
                connection.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> "FreezingProxy":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            connection = _Connection(client, upstream)
            with self._lock:
                self._connections.append(connection)
            self._spawn(self._pump, connection, client, upstream, True)
            self._spawn(self._pump, connection, upstream, client, False)

    def _pump(self, connection: _Connection, source: socket.socket,
              destination: socket.socket, from_client: bool) -> None:
        source.settimeout(POLL_INTERVAL)
        while not self._stopping.is_set() and not connection.closed:
            if connection.frozen:
                # Leave the bytes in the kernel buffers: nothing moves, nothing closes.
                self._stopping.wait(POLL_INTERVAL)
                continue
            try:
                data = source.recv(BUFFER_SIZE)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                connection.close()
                return
            if not data:
                connection.close()
                return
            if from_client:
                connection.sent_by_client.extend(data[:4096])
            try:
                destination.sendall(data)
            except OSError:
                connection.close()
                return
