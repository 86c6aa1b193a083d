"""SSE load generator: many streams from one machine with little CPU.

Standard library only. One process holds its connections in one
``selectors`` loop (epoll on Linux) with non-blocking sockets, so there is
no thread or greenlet per connection. One process opens at most 19,000
connections, because the open-file limit of the benchmark machines is
20,000 per process. For more, or when ``--processes`` requests it, the
process becomes a coordinator. It starts child processes, gives each a
share of the clients and merges their progress and results.

Each connection binds to a source address in 127.0.0.2 .. 127.0.0.N before
it connects, so the ephemeral ports of one source address are never the
limit. The response is parsed incrementally: HTTP headers, chunked transfer
encoding, a gzip body (with ``--gzip``, when the server sends one) and SSE
events. For every event whose data carries a publish time
(a ``sent_at`` member of the document, or the value of a JSON Patch
operation on ``/sent_at``), the delay from that time to its arrival is
recorded in a histogram.

Control: the process reads commands, one per line, on standard input:
``window-start`` and ``window-end`` delimit the measured window,
``close-all`` closes every stream (the clients leave), ``stop`` prints the
result and exits. It prints a JSON progress line every second and, at the
end, one JSON result line; ``--out`` also writes the result to a file.
Every run ends by itself after ``--max-seconds``.

Example: 500 streams at 100 per second, held 30 s after the ramp:

    python -m bench.loadgen --port 8000 --clients 500 --rate 100 --hold 30 \\
        --path '/v1/stream?channel=sport-livescore/1'
"""

from __future__ import annotations

import argparse
import errno
import heapq
import json
import math
import os
import random
import re
import resource
import selectors
import socket
import subprocess
import sys
import time
import zlib

# Connections per process. The hard open-file limit of the benchmark
# machines is 20,000 per process, and a few descriptors stay free for the
# selector, pipes and standard streams.
MAX_CONNECTIONS_PER_PROCESS = 19_000
# Linux socket option: pick the source port at connect() time, per
# destination, instead of at bind() time across all destinations.
IP_BIND_ADDRESS_NO_PORT = 24
RECV_BYTES = 65_536
MAX_HEADER_BYTES = 65_536
# A stream that sends this much without an event boundary is broken.
MAX_EVENT_BYTES = 8 << 20
# Connection starts per loop pass, so that a high rate cannot stall reads.
MAX_STARTS_PER_PASS = 500
PROGRESS_INTERVAL = 1.0
TIMEOUT_SCAN_INTERVAL = 0.5
SELECT_TIMEOUT = 0.05

# A publish time in a snapshot ("sent_at": 1733.5) or in a JSON Patch
# operation on it ("path": "/sent_at", "value": 1733.5).
SENT_AT = re.compile(rb'sent_at"(?:\s*,\s*"value")?\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)')

# Connection states.
CONNECTING = 1
READING_HEADERS = 2
STREAMING = 3
CLOSED = 4


class Histogram:
    """Log-scale histogram of durations in seconds, about 1 % relative precision.

    Buckets are ``floor(100 * ln(microseconds))``, so histograms from
    several processes merge by adding bucket counts.
    """

    __slots__ = ("buckets", "count", "total", "maximum")

    def __init__(self):
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0

    def add(self, seconds: float) -> None:
        micros = seconds * 1e6
        key = int(100 * math.log(micros)) if micros > 1.0 else 0
        self.buckets[key] = self.buckets.get(key, 0) + 1
        self.count += 1
        self.total += seconds
        if seconds > self.maximum:
            self.maximum = seconds

    def merge(self, other: "Histogram") -> None:
        for key, count in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + count
        self.count += other.count
        self.total += other.total
        self.maximum = max(self.maximum, other.maximum)

    def percentile(self, fraction: float) -> float | None:
        """Return the value below which ``fraction`` of the samples fall, or None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                return min(self.maximum, math.exp((key + 0.5) / 100) / 1e6)
        return self.maximum

    def to_json(self) -> dict:
        summary = {"count": self.count, "max": self.maximum,
                   "mean": self.total / self.count if self.count else None}
        for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
            summary[name] = self.percentile(fraction)
        summary["sum"] = self.total
        summary["buckets"] = {str(key): count for key, count in self.buckets.items()}
        return summary

    @classmethod
    def from_json(cls, data: dict) -> "Histogram":
        histogram = cls()
        histogram.buckets = {int(key): count for key, count in data.get("buckets", {}).items()}
        histogram.count = data.get("count", 0)
        histogram.total = data.get("sum", 0.0)
        histogram.maximum = data.get("max", 0.0)
        return histogram


class Stats:
    """Counters of one measured span: events, heartbeats, bytes and publish-to-arrival delays.

    ``bytes`` counts what the sockets received, ``payload_bytes`` the
    response bodies after chunked decoding (still compressed on a gzip
    stream) and ``decoded_bytes`` the SSE text after gzip decoding.
    """

    __slots__ = ("events", "snapshots", "deltas", "other_events", "stale_events", "heartbeats",
                 "retry_hints", "bytes", "payload_bytes", "decoded_bytes", "gzip_streams",
                 "latency", "started", "ended")

    def __init__(self):
        self.events = 0
        self.snapshots = 0
        self.deltas = 0
        self.other_events = 0
        # Events with a publish time from before their connection started:
        # a stored message replayed on subscribe, not a live delivery.
        self.stale_events = 0
        self.heartbeats = 0
        self.retry_hints = 0
        self.bytes = 0
        self.payload_bytes = 0
        self.decoded_bytes = 0
        # Responses with Content-Encoding: gzip that started in the span.
        self.gzip_streams = 0
        self.latency = Histogram()
        self.started = time.time()
        self.ended: float | None = None

    def to_json(self) -> dict:
        ended = self.ended if self.ended is not None else time.time()
        return {
            "seconds": ended - self.started,
            "events": self.events, "snapshots": self.snapshots, "deltas": self.deltas,
            "other_events": self.other_events, "stale_events": self.stale_events,
            "heartbeats": self.heartbeats, "retry_hints": self.retry_hints,
            "bytes": self.bytes, "payload_bytes": self.payload_bytes,
            "decoded_bytes": self.decoded_bytes, "gzip_streams": self.gzip_streams,
            "latency": self.latency.to_json(),
        }


class Connection:
    __slots__ = (
        "index", "path", "source", "sock", "state", "outgoing", "header_buffer", "chunked",
        "chunk_left", "raw", "decoder", "sse", "carriage_return", "started", "started_wall",
        "has_first_event", "has_first_snapshot", "last_event_id", "reconnects", "established",
    )

    def __init__(self, index: int, path: str, source: str):
        self.index = index
        self.path = path
        self.source = source
        self.sock: socket.socket | None = None
        self.state = CLOSED
        self.outgoing = b""
        self.header_buffer = b""
        self.chunked = False
        # Chunked decoding state. A positive value is the bytes left in the
        # current chunk, 0 means a size line is next, and -1 means the CRLF
        # after a chunk's data is next.
        self.chunk_left = 0
        self.raw = b""
        # The gzip decoder of a response with Content-Encoding: gzip, else None.
        self.decoder = None
        self.sse = b""
        self.carriage_return = False
        self.started = 0.0
        self.started_wall = 0.0
        self.has_first_event = False
        self.has_first_snapshot = False
        self.last_event_id: bytes | None = None
        self.reconnects = 0
        self.established = False


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one and return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def source_addresses(count: int) -> list[str]:
    """Return ``count`` loopback source addresses from 127.0.0.2 on."""
    if not 1 <= count <= 65_000:
        raise ValueError(f"source address count must be 1 to 65000, got {count}")
    addresses = []
    for offset in range(2, count + 2):
        addresses.append(f"127.0.{offset // 256}.{offset % 256}")
    return addresses


def is_loopback(host: str) -> bool:
    try:
        return socket.inet_aton(socket.gethostbyname(host))[0] == 127
    except OSError:
        return False


def parse_event(block: bytes, conn: Connection) -> tuple[bytes, bytes | None, bool, bool]:
    """Parse one SSE event block into (event name, data or None, has comment, has retry).

    An ``id`` field updates ``conn.last_event_id``, the resume point sent
    on reconnect. Several ``data`` lines join with a newline, as in a browser.
    """
    event = b""
    data = None
    comment = False
    retry = False
    for line in block.split(b"\n"):
        if not line:
            continue
        if line[0] == 58:  # a line that starts with ":" is a comment
            comment = True
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data = value if data is None else data + b"\n" + value
        elif name == b"event":
            event = value
        elif name == b"id":
            conn.last_event_id = value
        elif name == b"retry":
            retry = True
    return event, data, comment, retry


class LoadGenerator:
    """The connections of one process and the loop that serves them."""

    def __init__(self, options: argparse.Namespace, paths: list[str], indices: range | list[int]):
        self.options = options
        self.host = options.host
        self.port = options.port
        self.request_host = f"{options.host}:{options.port}".encode("ascii")
        sources = source_addresses(options.source_addresses)
        self.connections = [Connection(i, paths[i % len(paths)], sources[i % len(sources)])
                            for i in indices]

        self.rate = options.rate / max(1, options.child_count)
        self.selector = selectors.DefaultSelector()
        self.total = Stats()
        self.window: Stats | None = None
        self.sinks: tuple[Stats, ...] = (self.total,)

        self.time_to_headers = Histogram()
        self.time_to_first_event = Histogram()
        self.time_to_first_snapshot = Histogram()
        self.attempts = 0
        self.established = 0
        self.failures: dict[str, int] = {}
        self.closed_by_server = 0
        self.reconnects = 0
        self.churned = 0
        self.open = 0
        self.max_open = 0

        self.pending: set[Connection] = set()
        self.reconnect_queue: list[tuple[float, int]] = []
        self.started_count = 0
        self.closing_all = False
        self.stop_reason: str | None = None
        self.t0 = time.monotonic()
        self.ramp_done_at: float | None = None
        self.rng = random.Random(options.seed + options.child_index)

    # -- connection lifecycle -----------------------------------------------

    def _fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def start_connection(self, conn: Connection) -> None:
        self.attempts += 1
        conn.started = time.monotonic()
        conn.started_wall = time.time()
        conn.header_buffer = b""
        conn.raw = b""
        conn.sse = b""
        conn.chunk_left = 0
        conn.chunked = False
        conn.decoder = None
        conn.carriage_return = False
        conn.has_first_event = False
        conn.has_first_snapshot = False
        conn.established = False

        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as error:
            self._fail(errno.errorcode.get(error.errno, "socket_error").lower())
            self._schedule_reconnect(conn)
            return
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((conn.source, 0))
            sock.setblocking(False)
            code = sock.connect_ex((self.host, self.port))
        except OSError as error:
            sock.close()
            self._fail(errno.errorcode.get(error.errno, "connect_error").lower())
            self._schedule_reconnect(conn)
            return
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._fail(errno.errorcode.get(code, "connect_error").lower())
            self._schedule_reconnect(conn)
            return

        conn.sock = sock
        conn.state = CONNECTING
        request = b"GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n" % (
            conn.path.encode("ascii"), self.request_host)
        if self.options.gzip:
            request += b"Accept-Encoding: gzip\r\n"
        if conn.last_event_id is not None:
            request += b"Last-Event-ID: " + conn.last_event_id + b"\r\n"
        conn.outgoing = request + b"\r\n"
        self.pending.add(conn)
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self.selector.register(sock, selectors.EVENT_WRITE, conn)

    def close_connection(self, conn: Connection, reason: str | None = None,
                         reconnect: bool = False) -> None:
        """Close ``conn``. A ``reason`` counts as a failure, and ``reconnect`` schedules a retry."""
        if conn.sock is None:
            return
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        conn.sock = None
        conn.state = CLOSED
        self.pending.discard(conn)
        self.open -= 1
        if reason is not None:
            self._fail(reason)
        if reconnect:
            self._schedule_reconnect(conn)

    def _schedule_reconnect(self, conn: Connection) -> None:
        options = self.options
        if (not options.reconnect or self.closing_all or self.stop_reason
                or conn.reconnects >= options.max_reconnects):
            return
        conn.reconnects += 1
        due = time.monotonic() + options.reconnect_delay * (0.5 + self.rng.random())
        heapq.heappush(self.reconnect_queue, (due, conn.index))

    # -- reading --------------------------------------------------------------

    def on_writable(self, conn: Connection) -> None:
        sock = conn.sock
        if conn.state == CONNECTING:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.close_connection(conn, errno.errorcode.get(code, "connect_error").lower(),
                                      reconnect=True)
                return
            conn.state = READING_HEADERS
        try:
            sent = sock.send(conn.outgoing)
        except BlockingIOError:
            return
        except OSError as error:
            self.close_connection(conn, errno.errorcode.get(error.errno, "send_error").lower(),
                                  reconnect=True)
            return
        conn.outgoing = conn.outgoing[sent:]
        if not conn.outgoing:
            self.selector.modify(sock, selectors.EVENT_READ, conn)

    def on_readable(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError as error:
            self._on_eof(conn, errno.errorcode.get(error.errno, "recv_error").lower())
            return
        if not data:
            self._on_eof(conn, None)
            return
        for sink in self.sinks:
            sink.bytes += len(data)
        if conn.state == READING_HEADERS:
            data = self._read_headers(conn, data)
            if not data:
                return
        if conn.chunked:
            data = self._dechunk(conn, data)
            if conn.sock is None or not data:
                return
        self._feed_events(conn, data)

    def _on_eof(self, conn: Connection, error: str | None) -> None:
        if conn.state == READING_HEADERS or conn.state == CONNECTING:
            self.close_connection(conn, error or "closed_before_headers", reconnect=True)
            return
        self.closed_by_server += 1
        self.close_connection(conn, error, reconnect=True)

    def _read_headers(self, conn: Connection, data: bytes) -> bytes:
        buffer = conn.header_buffer + data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEADER_BYTES:
                self.close_connection(conn, "headers_too_large")
            else:
                conn.header_buffer = buffer
            return b""
        conn.header_buffer = b""
        lines = buffer[:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        status = parts[1].decode("ascii", "replace") if len(parts) > 1 else "?"
        if status != "200":
            self.close_connection(conn, f"http_{status}", reconnect=True)
            return b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                conn.chunked = True
            elif name == b"content-encoding" and value.strip().lower() == b"gzip":
                conn.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                for sink in self.sinks:
                    sink.gzip_streams += 1
        now = time.monotonic()
        self.time_to_headers.add(now - conn.started)
        conn.state = STREAMING
        conn.established = True
        self.established += 1
        self.pending.discard(conn)
        return buffer[end + 4:]

    def _dechunk(self, conn: Connection, data: bytes) -> bytes:
        buffer = conn.raw + data if conn.raw else data
        size = len(buffer)
        position = 0
        pieces = []
        while position < size:
            left = conn.chunk_left
            if left > 0:
                take = min(left, size - position)
                pieces.append(buffer[position:position + take])
                position += take
                conn.chunk_left = left - take or -1
                continue
            if left == -1:
                if size - position < 2:
                    break
                position += 2
                conn.chunk_left = 0
                continue
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                if size - position > 1024:
                    self.close_connection(conn, "invalid_chunk", reconnect=True)
                    return b""
                break
            try:
                chunk_size = int(buffer[position:line_end].split(b";", 1)[0], 16)
            except ValueError:
                self.close_connection(conn, "invalid_chunk", reconnect=True)
                return b""
            position = line_end + 2
            if chunk_size == 0:
                # The server ended the response; the socket close follows.
                conn.chunk_left = 0
                position = size
                break
            conn.chunk_left = chunk_size
        conn.raw = buffer[position:]
        return b"".join(pieces)

    def _feed_events(self, conn: Connection, payload: bytes) -> None:
        for sink in self.sinks:
            sink.payload_bytes += len(payload)
        if conn.decoder is not None:
            try:
                payload = conn.decoder.decompress(payload)
            except zlib.error:
                self.close_connection(conn, "invalid_gzip", reconnect=True)
                return
        for sink in self.sinks:
            sink.decoded_bytes += len(payload)
        if conn.carriage_return:
            payload = b"\r" + payload
            conn.carriage_return = False
        if b"\r" in payload:
            if payload.endswith(b"\r"):
                conn.carriage_return = True
                payload = payload[:-1]
            payload = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = conn.sse + payload if conn.sse else payload
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            if end > start:
                self._on_event(conn, buffer[start:end])
            start = end + 2
        rest = buffer[start:]
        if len(rest) > MAX_EVENT_BYTES:
            self.close_connection(conn, "event_too_large", reconnect=True)
            return
        conn.sse = rest

    def _on_event(self, conn: Connection, block: bytes) -> None:
        event, data, comment, retry = parse_event(block, conn)
        if data is None:
            for sink in self.sinks:
                if comment:
                    sink.heartbeats += 1
                elif retry:
                    sink.retry_hints += 1
            return
        now = time.monotonic()
        if not conn.has_first_event:
            conn.has_first_event = True
            self.time_to_first_event.add(now - conn.started)
        if event == b"snapshot":
            if not conn.has_first_snapshot:
                conn.has_first_snapshot = True
                self.time_to_first_snapshot.add(now - conn.started)
            for sink in self.sinks:
                sink.events += 1
                sink.snapshots += 1
            return
        self._count_update(conn, event, data)

    def _count_update(self, conn: Connection, event: bytes, data: bytes) -> None:
        """Count a delta or other event, and its delay when its data carries a publish time."""
        match = SENT_AT.search(data)
        delay = None
        stale = False
        if match is not None:
            sent_at = float(match.group(1))
            if sent_at >= conn.started_wall:
                delay = max(0.0, time.time() - sent_at)
            else:
                stale = True
        is_delta = event == b"delta"
        for sink in self.sinks:
            sink.events += 1
            if is_delta:
                sink.deltas += 1
            else:
                sink.other_events += 1
            if delay is not None:
                sink.latency.add(delay)
            elif stale:
                sink.stale_events += 1

    # -- loop -----------------------------------------------------------------

    def window_start(self) -> None:
        self.window = Stats()
        self.sinks = (self.total, self.window)

    def window_end(self) -> dict | None:
        """Close the measured window and return its stats, or None when none was open."""
        self.sinks = (self.total,)
        if self.window is None:
            return None
        if self.window.ended is None:
            self.window.ended = time.time()
        return self.window.to_json()

    def close_all(self) -> None:
        self.closing_all = True
        self.reconnect_queue.clear()
        for conn in self.connections:
            self.close_connection(conn)

    def handle_command(self, command: str) -> None:
        if command == "window-start":
            self.window_start()
        elif command == "window-end":
            print(json.dumps({"type": "window", "window": self.window_end(),
                              "progress": self.progress()}), flush=True)
        elif command == "close-all":
            self.close_all()
        elif command == "stop":
            self.stop_reason = "stop_command"
        elif command:
            print(json.dumps({"type": "error", "message": f"unknown command {command!r}; "
                              "expected window-start, window-end, close-all or stop"}),
                  flush=True)

    def _start_due(self, now: float) -> None:
        total = len(self.connections)
        if self.started_count < total and not self.closing_all:
            due = min(total, int((now - self.t0) * self.rate) + 1)
            for _ in range(min(due - self.started_count, MAX_STARTS_PER_PASS)):
                self.start_connection(self.connections[self.started_count])
                self.started_count += 1
            if self.started_count == total and self.ramp_done_at is None:
                self.ramp_done_at = now
        queue = self.reconnect_queue
        started = 0
        while queue and queue[0][0] <= now and started < MAX_STARTS_PER_PASS:
            _, position = heapq.heappop(queue)
            conn = self._by_index(position)
            if conn.sock is None and not self.closing_all:
                self.reconnects += 1
                self.start_connection(conn)
                started += 1

    def _by_index(self, index: int) -> Connection:
        # Indices of one process are i, i + count, i + 2 * count, ...
        return self.connections[(index - self.options.child_index) // max(1, self.options.child_count)]

    def _expire_pending(self, now: float) -> None:
        limit = self.options.connect_timeout
        expired = [conn for conn in self.pending if now - conn.started > limit]
        for conn in expired:
            reason = "connect_timeout" if conn.state == CONNECTING else "headers_timeout"
            self.close_connection(conn, reason, reconnect=True)

    def _churn(self, count: int) -> None:
        """Close ``count`` random established streams and reconnect each at once."""
        candidates = [conn for conn in self.connections if conn.established and conn.sock]
        for conn in self.rng.sample(candidates, min(count, len(candidates))):
            self.close_connection(conn)
            self.churned += 1
            self.reconnects += 1
            self.start_connection(conn)

    def progress(self) -> dict:
        now = time.monotonic()
        snapshots_waiting = sum(1 for conn in self.connections
                                if conn.established and conn.sock and not conn.has_first_snapshot)
        return {
            "type": "progress", "t": round(now - self.t0, 3),
            "target": len(self.connections), "started": self.started_count,
            "ramp_done": self.ramp_done_at is not None,
            "open": self.open, "established": self.established, "pending": len(self.pending),
            "streaming": sum(1 for conn in self.connections if conn.state == STREAMING),
            "without_snapshot": snapshots_waiting,
            "failures": sum(self.failures.values()), "events": self.total.events,
            "heartbeats": self.total.heartbeats, "reconnects": self.reconnects,
            "closed_by_server": self.closed_by_server,
        }

    def result(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "type": "result", "stop_reason": self.stop_reason, "processes": 1,
            "target": len(self.connections), "attempts": self.attempts,
            "established": self.established, "failures": dict(self.failures),
            "closed_by_server": self.closed_by_server, "reconnects": self.reconnects,
            "churned": self.churned, "max_open": self.max_open, "open_at_end": self.open,
            "ramp_seconds": (self.ramp_done_at - self.t0) if self.ramp_done_at else None,
            "time_to_headers": self.time_to_headers.to_json(),
            "time_to_first_event": self.time_to_first_event.to_json(),
            "time_to_first_snapshot": self.time_to_first_snapshot.to_json(),
            "total": self.total.to_json(),
            "window": self.window.to_json() if self.window is not None else None,
            "loadgen_cpu_seconds": usage.ru_utime + usage.ru_stime,
            "loadgen_max_rss_kib": usage.ru_maxrss,
        }

    def run(self) -> dict:
        """Serve the connections until a stop command, the hold's end or ``--max-seconds``."""
        deadline = self.t0 + self.options.max_seconds
        self._next_progress = self.t0 + PROGRESS_INTERVAL
        self._next_scan = self.t0 + TIMEOUT_SCAN_INTERVAL
        self._next_churn = None
        self._hold_until = None
        self.commands = CommandReader(self.selector) if self.options.control else None
        while self.stop_reason is None:
            now = time.monotonic()
            if now >= deadline:
                self.stop_reason = "max_seconds"
                break
            self._start_due(now)
            self._serve_ready()
            self._run_timers(time.monotonic())
        self.window_end()
        result = self.result()
        self.close_all()
        return result

    def _serve_ready(self) -> None:
        busy = self.open or self.reconnect_queue or self.commands
        for key, mask in self.selector.select(SELECT_TIMEOUT if busy else 0.2):
            conn = key.data
            if conn is None:
                for command in self.commands.read():
                    self.handle_command(command)
            elif conn.sock is None:
                continue
            elif mask & selectors.EVENT_WRITE:
                self.on_writable(conn)
            elif mask & selectors.EVENT_READ:
                self.on_readable(conn)

    def _run_timers(self, now: float) -> None:
        """Expire slow connects, churn streams, end the hold and print progress when due."""
        options = self.options
        if now >= self._next_scan:
            self._expire_pending(now)
            self._next_scan = now + TIMEOUT_SCAN_INTERVAL
        ramped = self.ramp_done_at is not None
        if options.churn_per_minute > 0 and ramped and not self.closing_all and self.connections:
            interval = 60.0 / (options.churn_per_minute * len(self.connections))
            if self._next_churn is None:
                self._next_churn = now + interval
            due = 0
            while self._next_churn <= now and due < MAX_STARTS_PER_PASS:
                due += 1
                self._next_churn += interval
            if due:
                self._churn(due)
        if options.hold is not None and ramped:
            if self._hold_until is None:
                self._hold_until = now + options.hold
                self.window_start()
            elif now >= self._hold_until:
                self.window_end()
                self.stop_reason = "hold_done"
        if now >= self._next_progress:
            print(json.dumps(self.progress()), flush=True)
            self._next_progress = now + PROGRESS_INTERVAL


class CommandReader:
    """Command lines from standard input, read without blocking through a selector.

    Registers stdin with ``data=None``; ``read`` returns the complete lines
    that arrived. At end of input it unregisters stdin and becomes false.
    """

    def __init__(self, selector: selectors.BaseSelector):
        self.selector = selector
        self.fd: int | None = sys.stdin.fileno()
        self.buffer = b""
        os.set_blocking(self.fd, False)
        selector.register(self.fd, selectors.EVENT_READ, None)

    def __bool__(self) -> bool:
        return self.fd is not None

    def read(self) -> list[str]:
        if self.fd is None:
            return []
        try:
            chunk = os.read(self.fd, 4096)
        except BlockingIOError:
            return []
        if not chunk:
            self.selector.unregister(self.fd)
            self.fd = None
            return []
        self.buffer += chunk
        lines = []
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            lines.append(line.decode("utf-8", "replace").strip())
        return lines


# -- several processes ----------------------------------------------------------


def merge_results(results: list[dict]) -> dict:
    """Merge the result dicts of several processes into one."""
    merged: dict = {"type": "result", "processes": len(results),
                    "stop_reason": ",".join(sorted({str(r.get("stop_reason")) for r in results}))}
    for name in ("target", "attempts", "established", "closed_by_server", "reconnects",
                 "churned", "max_open", "open_at_end", "loadgen_cpu_seconds",
                 "loadgen_max_rss_kib"):
        merged[name] = sum(r.get(name) or 0 for r in results)
    failures: dict[str, int] = {}
    for result in results:
        for reason, count in result.get("failures", {}).items():
            failures[reason] = failures.get(reason, 0) + count
    merged["failures"] = failures
    ramps = [r["ramp_seconds"] for r in results if r.get("ramp_seconds") is not None]
    merged["ramp_seconds"] = max(ramps) if len(ramps) == len(results) else None
    for name in ("time_to_headers", "time_to_first_event", "time_to_first_snapshot"):
        histogram = Histogram()
        for result in results:
            histogram.merge(Histogram.from_json(result[name]))
        merged[name] = histogram.to_json()
    for section in ("total", "window"):
        merged[section] = merge_stats([r[section] for r in results if r.get(section)])
    return merged


def merge_stats(parts: list[dict]) -> dict | None:
    """Merge the ``Stats.to_json()`` dicts of several processes into one."""
    if not parts:
        return None
    combined = {"seconds": max(part["seconds"] for part in parts)}
    for name in ("events", "snapshots", "deltas", "other_events", "stale_events",
                 "heartbeats", "retry_hints", "bytes", "payload_bytes", "decoded_bytes",
                 "gzip_streams"):
        combined[name] = sum(part.get(name, 0) for part in parts)
    histogram = Histogram()
    for part in parts:
        histogram.merge(Histogram.from_json(part["latency"]))
    combined["latency"] = histogram.to_json()
    return combined


class Coordinator:
    """Child load generators, each with a share of the clients, and their merged output."""

    def __init__(self, options: argparse.Namespace, argv: list[str]):
        self.options = options
        self.count = options.processes
        base = [arg for arg in argv if arg != "--control"]
        base = _without_option(_without_option(base, "--out"), "--processes")
        self.children = []
        for index in range(self.count):
            command = [sys.executable, "-m", "bench.loadgen", *base, "--processes", "1",
                       "--child-index", str(index), "--child-count", str(self.count),
                       "--control"]
            self.children.append(subprocess.Popen(command, stdin=subprocess.PIPE,
                                                  stdout=subprocess.PIPE, bufsize=0))
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[int, bytes] = {}
        self.latest: dict[int, dict] = {}
        self.results: dict[int, dict] = {}
        self.windows: dict[int, dict] = {}
        for index, child in enumerate(self.children):
            os.set_blocking(child.stdout.fileno(), False)
            self.selector.register(child.stdout.fileno(), selectors.EVENT_READ, index)
            self.buffers[index] = b""
        self.commands = CommandReader(self.selector) if options.control else None

    def run(self) -> dict:
        """Forward commands and merge output until every child has exited; return the merged result."""
        started = time.monotonic()
        # Children stop by themselves at max_seconds; the coordinator waits a
        # little longer for their results, then gives up on them.
        deadline = started + self.options.max_seconds + 30
        next_progress = started + PROGRESS_INTERVAL
        open_pipes = len(self.children)
        while open_pipes and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.2):
                if key.data is None:
                    for command in self.commands.read():
                        self._forward(command)
                elif not self._read_child(key.data, key.fd):
                    open_pipes -= 1
            if time.monotonic() >= next_progress and self.latest:
                print(json.dumps(merge_progress(list(self.latest.values()))), flush=True)
                next_progress = time.monotonic() + PROGRESS_INTERVAL
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
        merged = merge_results([self.results[i] for i in sorted(self.results)])
        merged["processes"] = self.count
        if len(self.results) < self.count:
            merged["missing_processes"] = self.count - len(self.results)
        return merged

    def _forward(self, command: str) -> None:
        for child in self.children:
            if child.poll() is None:
                try:
                    child.stdin.write(command.encode("utf-8") + b"\n")
                    child.stdin.flush()
                except BrokenPipeError:
                    pass

    def _read_child(self, index: int, fd: int) -> bool:
        """Handle the lines a child printed; return False once its output has ended."""
        try:
            chunk = os.read(fd, 65_536)
        except BlockingIOError:
            return True
        if not chunk:
            self.selector.unregister(fd)
            return False
        self.buffers[index] += chunk
        while b"\n" in self.buffers[index]:
            line, _, self.buffers[index] = self.buffers[index].partition(b"\n")
            try:
                message = json.loads(line)
            except ValueError:
                continue
            kind = message.get("type")
            if kind == "progress":
                self.latest[index] = message
            elif kind == "result":
                self.results[index] = message
            elif kind == "window":
                self._collect_window(index, message)
            else:
                print(json.dumps(message), flush=True)
        return True

    def _collect_window(self, index: int, message: dict) -> None:
        """Print one merged window line once every child has sent its own."""
        self.windows[index] = message
        if len(self.windows) < self.count:
            return
        parts = list(self.windows.values())
        print(json.dumps({
            "type": "window",
            "window": merge_stats([part["window"] for part in parts if part["window"]]),
            "progress": merge_progress([part["progress"] for part in parts]),
        }), flush=True)
        self.windows.clear()


def merge_progress(parts: list[dict]) -> dict:
    merged = {"type": "progress", "t": max(part["t"] for part in parts),
              "ramp_done": all(part["ramp_done"] for part in parts)}
    for name in ("target", "started", "open", "established", "pending", "streaming",
                 "without_snapshot", "failures", "events", "heartbeats", "reconnects",
                 "closed_by_server"):
        merged[name] = sum(part[name] for part in parts)
    return merged


def _without_option(argv: list[str], name: str) -> list[str]:
    cleaned = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        if arg.startswith(name + "="):
            continue
        cleaned.append(arg)
    return cleaned


# -- command line -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="server address, loopback only")
    parser.add_argument("--port", type=int, required=True, help="server port")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--path", help="request path of every stream")
    target.add_argument("--paths-file", help="file of request paths, one per line; "
                        "client i uses line i (cycled when there are fewer lines)")

    parser.add_argument("--clients", type=int, required=True, help="streams to open")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="new connections per second during the ramp (default 500)")
    parser.add_argument("--processes", type=int, default=0,
                        help="processes to split the clients over; 0 picks the fewest that keep "
                        f"each below {MAX_CONNECTIONS_PER_PROCESS} connections")
    parser.add_argument("--source-addresses", type=int, default=16,
                        help="loopback source addresses 127.0.0.2 onwards to spread "
                        "connections over (default 16)")
    parser.add_argument("--gzip", action="store_true",
                        help="send Accept-Encoding: gzip and decode gzip response bodies as "
                        "they arrive")
    parser.add_argument("--connect-timeout", type=float, default=15.0,
                        help="seconds from connect to response headers before a connection "
                        "counts as failed (default 15)")

    parser.add_argument("--reconnect", action="store_true",
                        help="reconnect streams that fail or that the server closes, with "
                        "Last-Event-ID")
    parser.add_argument("--reconnect-delay", type=float, default=1.0,
                        help="mean delay before a reconnect, seconds (default 1)")
    parser.add_argument("--max-reconnects", type=int, default=20,
                        help="reconnects per client at most (default 20)")
    parser.add_argument("--churn-per-minute", type=float, default=0.0,
                        help="share of the streams closed and reopened per minute after the "
                        "ramp, e.g. 0.1 (default 0)")

    parser.add_argument("--hold", type=float, default=None,
                        help="seconds to hold the streams after the ramp, as the measured "
                        "window, then stop; without it the run waits for commands")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="hard end of the run, seconds (default 600)")
    parser.add_argument("--control", action="store_true",
                        help="read commands from standard input: window-start, window-end, "
                        "close-all, stop")
    parser.add_argument("--seed", type=int, default=1, help="random seed (churn, delays)")
    parser.add_argument("--out", help="also write the result JSON to this file")

    parser.add_argument("--child-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-count", type=int, default=1, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = build_parser().parse_args(argv)
    if not is_loopback(options.host):
        print(f"--host {options.host} is not a loopback address; the load generator only "
              "targets 127.0.0.0/8", file=sys.stderr)
        return 2
    if options.clients < 1 or options.rate <= 0 or options.max_seconds <= 0:
        print("--clients, --rate and --max-seconds must be positive", file=sys.stderr)
        return 2
    limit = raise_open_file_limit()
    per_process = min(MAX_CONNECTIONS_PER_PROCESS, max(1, limit - 64))
    if options.processes == 0:
        options.processes = max(1, math.ceil(options.clients / per_process))
    if options.processes > 1 and options.child_count == 1:
        result = Coordinator(options, argv).run()
    else:
        if options.paths_file:
            with open(options.paths_file, encoding="utf-8") as file:
                paths = [line.strip() for line in file if line.strip()]
            if not paths:
                print(f"--paths-file {options.paths_file} has no paths", file=sys.stderr)
                return 2
        else:
            paths = [options.path]
        indices = range(options.child_index, options.clients, options.child_count)
        if len(indices) > per_process:
            print(f"{len(indices)} connections in one process exceed the open-file limit "
                  f"{limit}; use --processes", file=sys.stderr)
            return 2
        result = LoadGenerator(options, paths, indices).run()
    print(json.dumps(result), flush=True)
    if options.out:
        with open(options.out, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
