"""The subscriber's Pub/Sub connection to the bus, read in batches.

redis-py's ``PubSub.get_message`` returns one message per call, and each
call polls the socket twice, checks the connection's health and records
observability data in Python. This connection subscribes through redis-py,
which handles authentication, TLS, the database and Sentinel's choice of
primary, and then reads the socket itself: one ``poll`` and one
``recv_into`` per batch, parsed in C by hiredis's reader.

Only this module reads the socket, so redis-py's parser never buffers bytes
of it. Liveness is the subscriber's delivery probes, not Pub/Sub pings.
"""

from __future__ import annotations

import select
import socket
import time

import hiredis
import redis

# Bytes read per recv: a batch of a few hundred average updates.
READ_BUFFER_SIZE = 256 * 1024


class BusSubscription:
    """A connection subscribed to one Pub/Sub channel. Not thread-safe."""

    def __init__(self, client: redis.Redis, channel: str):
        self._channel = channel.encode()
        self._pool = client.connection_pool
        self._connection = self._pool.get_connection()
        self._reader = hiredis.Reader()
        self._buffer = bytearray(READ_BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        try:
            self._connection.send_command("SUBSCRIBE", channel)
            # NOTE: ``_sock`` is redis-py's private name for the connected
            # socket (redis 8.1); send_command above has connected it.
            self._socket: socket.socket = self._connection._sock
            self._poller = select.poll()
            self._poller.register(self._socket, select.POLLIN)
        except BaseException:
            self.close()
            raise
        self.subscribed = False
        # Messages read while waiting for the confirmation, for the next read.
        self._backlog: list[bytes] = []

    def wait_subscribed(self, timeout: float) -> None:
        """Block until Redis confirmed the subscription.

        Updates published after this returns reach this connection, so a
        read of Redis's state that follows misses nothing.
        Raises redis.TimeoutError when no confirmation came within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while not self.subscribed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise redis.TimeoutError(
                    f"timed out after {timeout:.1f} s waiting for Redis to confirm the bus subscription")
            self._backlog.extend(self._read(left))

    def read(self, timeout: float) -> list[bytes]:
        """Wait up to ``timeout`` seconds and return the messages' payloads, oldest first.

        Returns every complete message that has arrived, possibly none.
        Raises redis.ConnectionError when the connection is closed or broken.
        """
        if self._backlog:
            payloads, self._backlog = self._backlog, []
            return payloads
        return self._read(timeout)

    def _read(self, timeout: float) -> list[bytes]:
        sock = self._socket
        # TLS may hold decrypted bytes that poll cannot see.
        pending = getattr(sock, "pending", None)
        if not (pending is not None and pending()) and not self._poller.poll(timeout * 1000):
            return []
        try:
            received = sock.recv_into(self._buffer)
        except (socket.timeout, BlockingIOError):
            return []
        except OSError as error:
            raise redis.ConnectionError(f"reading the bus subscription failed: {error}") from error
        if received == 0:
            raise redis.ConnectionError("Redis closed the bus subscription")
        self._reader.feed(self._view, 0, received)
        return self._messages()

    def _messages(self) -> list[bytes]:
        payloads = []
        gets = self._reader.gets
        while True:
            try:
                reply = gets()
            except hiredis.ProtocolError as error:
                raise redis.ConnectionError(f"invalid reply on the bus subscription: {error}") from error
            if reply is False:
                return payloads
            if isinstance(reply, hiredis.ReplyError):
                raise redis.ConnectionError(f"Redis rejected the bus subscription: {reply}")
            # ["message", channel, payload], or the confirmation
            # ["subscribe", channel, count]: a list over RESP2, a push
            # (a list subclass) over RESP3.
            if isinstance(reply, list) and len(reply) == 3:
                kind = reply[0]
                if kind == b"message":
                    payloads.append(reply[2])
                elif kind == b"subscribe" and reply[1] == self._channel:
                    self.subscribed = True

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        # The connection's socket is subscribed: it must not go back to the
        # pool in that state.
        connection.disconnect()
        self._pool.release(connection)
