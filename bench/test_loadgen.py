"""Tests of the load generator's parsing and merging, without sockets.

Not part of the main suite (pytest.ini collects tests/ only): run them with
``.venv/bin/python -m pytest bench``.
"""

from __future__ import annotations

import argparse
import socket
import time
import zlib

import pytest

from bench.loadgen import (
    Connection, Histogram, LoadGenerator, build_parser, merge_results, parse_event,
)

SSE = (b"retry: 2500\n\n"
       b"event: snapshot\ndata: {\"channel\":\"a/1\",\"version\":1,\"data\":{\"sent_at\":1.0}}\n"
       b"id: e-1\n\n"
       b": heartbeat\n\n"
       b"event: delta\ndata: {\"channel\":\"a/1\",\"version\":2,\"patch\":[{\"op\":\"replace\","
       b"\"path\":\"/sent_at\",\"value\":%.6f}]}\nid: e-2\n\n")


def chunked(payload: bytes, size: int) -> bytes:
    """Encode ``payload`` with chunked transfer encoding in chunks of ``size`` bytes."""
    out = b""
    for start in range(0, len(payload), size):
        piece = payload[start:start + size]
        out += b"%X\r\n" % len(piece) + piece + b"\r\n"
    return out


def generator() -> LoadGenerator:
    options: argparse.Namespace = build_parser().parse_args(
        ["--port", "1", "--clients", "1", "--path", "/"])
    options.child_index = 0
    options.child_count = 1
    return LoadGenerator(options, ["/"], range(1))


def streaming_connection(load: LoadGenerator) -> Connection:
    conn = load.connections[0]
    conn.sock = object()  # marks the connection open; no socket call is made
    conn.started = time.monotonic()
    conn.started_wall = time.time() - 1
    conn.chunked = True
    return conn


@pytest.mark.parametrize("split", [1, 2, 3, 7, 64, 10_000])
def test_chunked_stream_any_split(split):
    load = generator()
    conn = streaming_connection(load)
    payload = SSE % time.time()
    wire = chunked(payload, 5)
    for start in range(0, len(wire), split):
        data = load._dechunk(conn, wire[start:start + split])
        if data:
            load._feed_events(conn, data)
    assert load.total.snapshots == 1
    assert load.total.deltas == 1
    assert load.total.heartbeats == 1
    assert load.total.retry_hints == 1
    assert load.total.latency.count == 1
    assert load.total.payload_bytes == len(payload)
    assert conn.last_event_id == b"e-2"
    assert load.time_to_first_snapshot.count == 1


def gzip_flushed(payload: bytes) -> bytes:
    """Compress ``payload`` as a gzip stream flushed after every SSE event, as the gateway does."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + 10, 3)
    pieces = [compressor.compress(event + b"\n\n") + compressor.flush(zlib.Z_SYNC_FLUSH)
              for event in payload.split(b"\n\n")[:-1]]
    return b"".join(pieces) + compressor.flush(zlib.Z_FINISH)


@pytest.mark.parametrize("split", [1, 3, 64, 10_000])
def test_gzip_stream_any_split(split):
    load = generator()
    conn = streaming_connection(load)
    payload = SSE % time.time()
    body = gzip_flushed(payload)
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.state = 2  # reading headers
    wire = head + chunked(body, 7)
    for start in range(0, len(wire), split):
        data = wire[start:start + split]
        if conn.state == 2:
            data = load._read_headers(conn, data)
            if not data:
                continue
        data = load._dechunk(conn, data)
        if data:
            load._feed_events(conn, data)
    assert conn.decoder is not None
    assert load.total.gzip_streams == 1
    assert load.total.snapshots == 1
    assert load.total.deltas == 1
    assert load.total.heartbeats == 1
    assert load.total.payload_bytes == len(body)
    assert load.total.decoded_bytes == len(payload)


def test_invalid_gzip_closes():
    load = generator()
    conn = streaming_connection(load)
    conn.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    conn.sock = socket.socket()  # never connected; close_connection closes it
    load.open = 1

    load._feed_events(conn, b"not gzip at all")

    assert load.failures == {"invalid_gzip": 1}
    assert conn.sock is None


def test_crlf_line_endings():
    load = generator()
    conn = streaming_connection(load)
    conn.chunked = False
    payload = (SSE % time.time()).replace(b"\n", b"\r\n")
    for start in range(0, len(payload), 3):
        load._feed_events(conn, payload[start:start + 3])
    assert load.total.snapshots == 1
    assert load.total.deltas == 1
    assert load.total.heartbeats == 1


def test_stale_publish_time_no_delay():
    load = generator()
    conn = streaming_connection(load)
    conn.started_wall = time.time() + 60
    load._feed_events(conn, b"event: delta\ndata: {\"sent_at\": 5.0}\n\n")
    assert load.total.stale_events == 1
    assert load.total.latency.count == 0


def test_parse_event_fields():
    conn = Connection(0, "/", "127.0.0.2")
    event, data, comment, retry = parse_event(b"event:x\ndata:a\ndata: b\nid: 7\n: c", conn)
    assert event == b"x"
    assert data == b"a\nb"
    assert comment
    assert not retry
    assert conn.last_event_id == b"7"


def test_histogram_percentiles():
    histogram = Histogram()
    for millisecond in range(1, 1001):
        histogram.add(millisecond / 1000)
    assert histogram.percentile(0.5) == pytest.approx(0.5, rel=0.02)
    assert histogram.percentile(0.99) == pytest.approx(0.99, rel=0.02)
    assert histogram.percentile(1.0) == pytest.approx(1.0, rel=0.02)


def test_merge_results_adds_counts():
    parts = []
    for _ in range(2):
        load = generator()
        load.total.events = 3
        load.total.latency.add(0.01)
        load.failures = {"http_503": 1}
        parts.append(load.result())
    merged = merge_results(parts)
    assert merged["total"]["events"] == 6
    assert merged["total"]["latency"]["count"] == 2
    assert merged["failures"] == {"http_503": 2}
