"""gzip streams end to end: real gunicorn, real Redis, clients that decode as they read.

A client that sends ``Accept-Encoding: gzip`` to a gateway with
``LIVEGATE_STREAM_COMPRESSION=gzip`` receives one gzip member. Each check
decodes the bytes received so far with a fresh ``zlib.decompressobj``
while the stream is still open, which is what a streaming client can
decode at that moment. So every event must be readable as soon as it
arrives, not only when the stream ends.
"""

from __future__ import annotations

import json
import socket
import time
import zlib

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from ingest.publisher import Publisher
from tests.support.gateway import HOST, Gateway
from tests.support.mirror import Mirror
from tests.support.sse import RawSSEReader
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PREFIX = "gz"
GZIP_ENV = {
    "LIVEGATE_KEY_PREFIX": PREFIX,
    "LIVEGATE_HEARTBEAT_INTERVAL": "1",
    "LIVEGATE_STREAM_COMPRESSION": "gzip",
}


@pytest.fixture(scope="module")
def gzip_gateway(redis_server_module, tmp_path_factory):
    server = Gateway(redis_server_module.url, workers=2, env=GZIP_ENV,
                     log_dir=tmp_path_factory.mktemp("gzip-gateway"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain_gateway(redis_server_module, tmp_path_factory):
    """A gateway with the default setting, on the same Redis and key prefix."""
    server = Gateway(redis_server_module.url, workers=1,
                     env={**GZIP_ENV, "LIVEGATE_STREAM_COMPRESSION": None},
                     log_dir=tmp_path_factory.mktemp("plain-gateway"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def publisher(redis_server_module):
    return Publisher(redis.Redis.from_url(redis_server_module.url), key_prefix=PREFIX)


def match(minute: int, home: int = 0, away: int = 0) -> dict:
    """A document large enough that the publisher sends a change as a patch, not a snapshot."""
    return {
        "minute": minute, "score": [home, away],
        "teams": {"home": "Argentina national football team", "away": "France national team"},
        "lineups": [f"player number {number}" for number in range(22)],
    }


def gunzip_prefix(body: bytes) -> bytes:
    """Return what a streaming client decodes from the first bytes of a gzip body."""
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body)


def open_reader(gateway: Gateway, channel: str, accept_encoding: str) -> RawSSEReader:
    reader = RawSSEReader(f"{gateway.url}/v1/stream", params={"channel": channel},
                          headers={"Accept-Encoding": accept_encoding})
    reader.start()
    assert reader.status_code == 200, reader.body
    return reader


def events_of(text: bytes) -> list[tuple[str, dict | None]]:
    """Split decoded SSE text into (event or comment, data) pairs, in order."""
    events = []
    for block in text.decode("utf-8").split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        if block.startswith(":"):
            events.append((block, None))
        elif "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
        else:
            events.append(("retry", None))
    return events


def wait_decoded(reader: RawSSEReader, needle: bytes, count: int = 1,
                 timeout: float = 10.0) -> bytes:
    """Wait until the decoded body contains ``needle`` ``count`` times and ends an event."""
    def decoded_enough(raw: bytes) -> bytes | None:
        text = gunzip_prefix(raw)
        if text.count(needle) >= count and text.endswith(b"\n\n"):
            return text
        return None

    return reader.wait_for(decoded_enough, timeout=timeout)


def scrape(gateway: Gateway) -> dict[str, float]:
    """Return every sample of /metrics summed by name (labels dropped)."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


class Http10Stream:
    """A stream requested over HTTP/1.0, which gunicorn writes unframed through its own writer."""

    def __init__(self, port: int, path: str, accept_encoding: str):
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {HOST}\r\n"
                          f"Accept-Encoding: {accept_encoding}\r\n\r\n".encode())
        self.received = b""

    def read_until(self, predicate, timeout: float = 10.0):
        """Read until ``predicate(received)`` is truthy or the server closes; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self.received)
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out; received {self.received[-300:]!r}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise TimeoutError(f"the server closed the stream; received {self.received[-300:]!r}")
            self.received += data

    def read_to_end(self, timeout: float = 10.0) -> None:
        """Read until the server closes the connection; raise TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the stream did not end; received {self.received[-300:]!r}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                return
            self.received += data

    def wait_decoded(self, needle: bytes, count: int = 1) -> bytes:
        """Read until the decoded body contains ``needle`` ``count`` times and ends an event."""
        def decoded_enough(received: bytes) -> bytes | None:
            head, separator, body = received.partition(b"\r\n\r\n")
            text = gunzip_prefix(body) if separator else b""
            if text.count(needle) >= count and text.endswith(b"\n\n"):
                return text
            return None

        return self.read_until(decoded_enough)

    def head_and_body(self) -> tuple[bytes, bytes]:
        head, _, body = self.received.partition(b"\r\n\r\n")
        return head, body

    def close(self) -> None:
        self.sock.close()


class TestGzipStream:
    def test_events_decode_as_they_arrive(self, gzip_gateway, publisher):
        publisher.publish("gz/live", match(1))
        reader = open_reader(gzip_gateway, "gz/live", "gzip")
        try:
            headers = reader.response_headers
            assert headers["content-encoding"] == "gzip"
            assert headers["vary"] == "Accept-Encoding"
            assert headers["content-type"].startswith("text/event-stream")

            text = wait_decoded(reader, b"event: snapshot")
            assert reader.raw[:2] == b"\x1f\x8b"
            assert text.startswith(b"retry: ")
            publisher.publish("gz/live", match(2, 1))
            text = wait_decoded(reader, b"event: delta")
            publisher.publish("gz/live", match(3, 1))
            text = wait_decoded(reader, b"event: delta", count=2)
            text = wait_decoded(reader, b": heartbeat", timeout=5)
        finally:
            reader.close()

        kinds = [kind for kind, _ in events_of(text)]
        assert kinds[:4] == ["retry", "snapshot", "delta", "delta"]
        assert kinds[4] == ": heartbeat"
        mirror = Mirror()
        for kind, data in events_of(text):
            if data is not None:
                mirror.apply(kind, data)
        assert mirror.documents() == {"gz/live": match(3, 1)}

    def test_each_write_decodes_alone(self, gzip_gateway, publisher):
        publisher.publish("gz/chunks", match(0))
        reader = open_reader(gzip_gateway, "gz/chunks", "gzip")
        try:
            wait_decoded(reader, b"event: snapshot")
            for n in range(1, 4):
                publisher.publish("gz/chunks", match(n))
                wait_decoded(reader, b"event: delta", count=n)
            chunks = reader.chunks
        finally:
            reader.close()

        # Every read of the socket ended on a flush point, so each decodes
        # to whole events with nothing held back.
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        for _, chunk in chunks:
            assert decoder.decompress(chunk).endswith(b"\n\n")

    def test_q_zero_gets_identity(self, gzip_gateway, publisher):
        publisher.publish("gz/refused", match(1))
        for accept_encoding in ("gzip;q=0", "identity", "gzip;q=0, *", "deflate, br"):
            reader = open_reader(gzip_gateway, "gz/refused", accept_encoding)
            try:
                raw = reader.wait_for_bytes(b"event: snapshot")
                headers = reader.response_headers
            finally:
                reader.close()

            assert "content-encoding" not in headers, accept_encoding
            assert headers["vary"] == "Accept-Encoding"
            assert raw.startswith(b"retry: ")

    def test_wildcard_accepts_gzip(self, gzip_gateway, publisher):
        publisher.publish("gz/wildcard", match(1))
        reader = open_reader(gzip_gateway, "gz/wildcard", "*")
        try:
            wait_decoded(reader, b"event: snapshot")
            assert reader.response_headers["content-encoding"] == "gzip"
        finally:
            reader.close()

    def test_http10_compressed_through_gunicorn(self, gzip_gateway, publisher):
        publisher.publish("gz/old", match(1))
        stream = Http10Stream(gzip_gateway.port, "/v1/stream?channel=gz/old", "gzip")
        try:
            stream.wait_decoded(b"event: snapshot")
            publisher.publish("gz/old", match(1, 0, 1))
            text = stream.wait_decoded(b"event: delta")
            head, body = stream.head_and_body()
        finally:
            stream.close()

        head_lines = head.decode("latin-1").lower().split("\r\n")
        assert head_lines[0].startswith("http/1.0 200")
        assert "content-encoding: gzip" in head_lines
        assert not any(line.startswith("transfer-encoding") for line in head_lines)
        assert body[:2] == b"\x1f\x8b"
        kinds = [kind for kind, _ in events_of(text)]
        assert kinds == ["retry", "snapshot", "delta"]


    def test_metrics_count_compression(self, gzip_gateway, publisher):
        publisher.publish("gz/metrics", match(1))
        reader = open_reader(gzip_gateway, "gz/metrics", "gzip")
        try:
            wait_decoded(reader, b"event: snapshot")
            for minute in range(2, 6):
                publisher.publish("gz/metrics", match(minute))
            wait_decoded(reader, b"event: delta", count=4)

            def counted() -> dict[str, float] | None:
                values = scrape(gzip_gateway)
                return values if values.get("livegate_compressed_streams_opened_total") else None

            values = wait_for(counted, timeout=5, interval=0.3, message="compression metrics")
        finally:
            reader.close()

        compressed_in = values["livegate_compression_input_bytes_total"]
        compressed_out = values["livegate_compression_output_bytes_total"]
        assert compressed_in > 0
        assert 0 < compressed_out < compressed_in


class TestSettingOff:
    def test_same_bytes_whatever_accepted(self, plain_gateway, publisher):
        publisher.publish("gz/plain", match(1))
        readers = [open_reader(plain_gateway, "gz/plain", accept_encoding)
                   for accept_encoding in ("gzip", "identity")]
        try:
            for reader in readers:
                reader.wait_for_bytes(b"event: snapshot")
            publisher.publish("gz/plain", match(2))
            bodies = [reader.wait_for_bytes(b"event: delta") for reader in readers]
            headers = [reader.response_headers for reader in readers]
        finally:
            for reader in readers:
                reader.close()

        for header in headers:
            assert "content-encoding" not in header
            assert "vary" not in header
        # The retry line has random jitter; everything after it is the same.
        events = [body.split(b"\n\n", 1)[1] for body in bodies]
        assert events[0] == events[1]
        assert events[0].startswith(b"event: snapshot\n")


class TestCleanEnd:
    def test_shutdown_finishes_member(self, redis_server, gateway_factory):
        publisher = Publisher(redis.Redis.from_url(redis_server.url), key_prefix=PREFIX)
        publisher.publish("gz/end", match(1))
        gateway = gateway_factory(redis_server.url, workers=1,
                                  env={**GZIP_ENV, "LIVEGATE_SHUTDOWN_WINDOW": "0.2"})
        reader = open_reader(gateway, "gz/end", "gzip")
        old = Http10Stream(gateway.port, "/v1/stream?channel=gz/end", "gzip")
        try:
            wait_decoded(reader, b"event: snapshot")
            old.wait_decoded(b"event: snapshot")

            gateway.stop()
            wait_for(lambda: reader.finished, timeout=10, message="the end of the stream")
            old.read_to_end()
            _, old_body = old.head_and_body()
        finally:
            reader.close()
            old.close()

        assert reader.finished
        for body in (reader.raw, old_body):
            decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            text = decoder.decompress(body)
            assert decoder.eof, "the body ends with the gzip trailer"
            assert decoder.unused_data == b""
            assert text.endswith(b"\n\n")
            assert text.rsplit(b"\n\n", 2)[-2].startswith(b"retry: ")
