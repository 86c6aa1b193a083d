"""Limits: each is configurable and rejects with its own status and a JSON error.

One gateway with one worker and low limits, so that the stream counts are
exact. Streams are held by raw sockets bound to loopback addresses
127.0.0.2 and up, so that each test controls the client address.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import msgpack
import pytest

from tests.support.gateway import Gateway
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

MAX_SUBSCRIPTIONS = 3
MAX_PUBLISH_BYTES = 2048
MAX_DEPTH = 8
MAX_STREAMS = 6
MAX_PER_ADDRESS = 2


@pytest.fixture(scope="module")
def gateway(redis_server_module, tmp_path_factory):
    server = Gateway(
        redis_server_module.url, workers=1,
        env={
            "LIVEGATE_KEY_PREFIX": "limits",
            "LIVEGATE_HEARTBEAT_INTERVAL": "1",
            "LIVEGATE_MAX_SUBSCRIPTIONS": MAX_SUBSCRIPTIONS,
            "LIVEGATE_MAX_PUBLISH_BYTES": MAX_PUBLISH_BYTES,
            "LIVEGATE_MAX_DOCUMENT_DEPTH": MAX_DEPTH,
            "LIVEGATE_MAX_STREAMS_PER_WORKER": MAX_STREAMS,
            "LIVEGATE_MAX_STREAMS_PER_ADDRESS": MAX_PER_ADDRESS,
            "LIVEGATE_PUBLISH_READ_TIMEOUT": 1,
        },
        log_dir=tmp_path_factory.mktemp("gateway"),
    )
    server.start()
    yield server
    server.stop()


def nested(depth: int) -> object:
    """Return a document whose arrays and objects nest ``depth`` levels deep."""
    document: object = 1
    for level in range(depth):
        document = [document] if level % 2 else {"k": document}
    return document


class RawStream:
    """One stream request on a socket bound to ``source``; keeps the response head."""

    def __init__(self, gateway, channel: str, source: str):
        self.sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5,
                                             source_address=(source, 0))
        request = (f"GET /v1/stream?channel={channel} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Accept: text/event-stream\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in head and time.monotonic() < deadline:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            head += chunk
        self.head, _, self.rest = head.partition(b"\r\n\r\n")
        self.status = int(self.head.split(b" ", 2)[1])

    def header(self, name: str) -> str | None:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def error(self) -> dict:
        """Read the JSON body of an error response (sent with Content-Length)."""
        length = int(self.header("Content-Length"))
        body = self.rest
        while len(body) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return json.loads(body[:length])

    def close(self) -> None:
        self.sock.close()


def stream_count(gateway) -> int:
    with httpx.Client(base_url=gateway.url, timeout=5) as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("livegate_connections{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return -1


class TestRequestLimits:
    def test_too_many_channels_answers_400(self, gateway):
        params = [("channel", f"many/{n}") for n in range(MAX_SUBSCRIPTIONS + 1)]
        with httpx.Client(base_url=gateway.url) as http:
            response = http.get("/v1/stream", params=params)

        assert response.status_code == 400
        assert response.json()["error"] == "too_many_channels"
        assert response.json()["maximum"] == MAX_SUBSCRIPTIONS

    @pytest.mark.parametrize("value", ["a/" + "b" * 199, "*/" + "c" * 199, "x" * 198 + "/**"])
    def test_name_over_200_characters_answers_400(self, gateway, value):
        assert len(value) == 201
        with httpx.Client(base_url=gateway.url) as http:
            stream = http.get("/v1/stream", params={"channel": value})
            publish = http.post(f"/v1/publish/{value}", json={"a": 1})

        assert stream.status_code == 400
        assert stream.json()["error"] == "invalid_channel"
        assert publish.status_code == 400
        assert "maximum is 200" in publish.json()["message"]

    def test_name_of_200_characters_accepted(self, gateway):
        channel = "long/" + "n" * 195
        with httpx.Client(base_url=gateway.url) as http:
            response = http.post(f"/v1/publish/{channel}", json={"a": 1})

        assert response.status_code == 200, response.text

    def test_large_body_answers_413(self, gateway):
        body = json.dumps({"pad": "x" * MAX_PUBLISH_BYTES}).encode()
        with httpx.Client(base_url=gateway.url) as http:
            declared = http.post("/v1/publish/big/1", content=body,
                                 headers={"Content-Type": "application/json"})
            chunked = http.post("/v1/publish/big/1", content=iter([body[:1000], body[1000:]]),
                                headers={"Content-Type": "application/json"})

        for response in (declared, chunked):
            assert response.status_code == 413
            assert response.json()["error"] == "body_too_large"
            assert response.json()["maximum"] == MAX_PUBLISH_BYTES

    def test_document_at_maximum_depth_accepted(self, gateway):
        with httpx.Client(base_url=gateway.url) as http:
            response = http.post("/v1/publish/depth/ok", json=nested(MAX_DEPTH))

        assert response.status_code == 200, response.text

    @pytest.mark.parametrize("encoding", ["json", "msgpack"])
    def test_deeper_document_answers_400(self, gateway, encoding):
        document = {"ok": nested(2), "deep": nested(MAX_DEPTH)}
        if encoding == "json":
            content, content_type = json.dumps(document), "application/json"
        else:
            content, content_type = msgpack.packb(document), "application/msgpack"
        with httpx.Client(base_url=gateway.url) as http:
            response = http.post("/v1/publish/depth/deep", content=content,
                                 headers={"Content-Type": content_type})

        assert response.status_code == 400
        assert response.json()["error"] == "document_too_deep"
        assert response.json()["maximum"] == MAX_DEPTH

    def test_patch_that_deepens_document_answers_400(self, gateway):
        with httpx.Client(base_url=gateway.url) as http:
            http.post("/v1/publish/depth/patched", json={"a": nested(MAX_DEPTH - 1)})
            path = "/a" + "/k/0" * ((MAX_DEPTH - 2) // 2)
            response = http.post(
                "/v1/publish/depth/patched",
                content=json.dumps([{"op": "add", "path": path + "/x", "value": [[1]]}]),
                headers={"Content-Type": "application/json-patch+json"},
            )
            current = http.get("/v1/channels/depth/patched").json()

        assert response.status_code == 400, response.text
        assert response.json()["error"] == "document_too_deep"
        assert current["version"] == 1

    @pytest.mark.parametrize("body, content_type", [
        (b"[" * 1020 + b"]" * 1020, "application/json"),
        # Past msgpack's own nesting limit.
        (b"\x91" * 2000 + b"\x01", "application/msgpack"),
    ])
    def test_extremely_deep_body_answers_400(self, gateway, body, content_type):
        assert len(body) <= MAX_PUBLISH_BYTES
        with httpx.Client(base_url=gateway.url) as http:
            response = http.post("/v1/publish/depth/extreme", content=body,
                                 headers={"Content-Type": content_type})

        assert response.status_code == 400
        assert response.json()["error"] in ("document_too_deep", "invalid_document")


def send_raw_publish(gateway, head: bytes, body: bytes) -> tuple[int, bytes, float]:
    """Send a publish request that stalls after ``body``.

    Returns the status, the whole response up to the server's close, and the
    seconds until the response began.
    """
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(head + body)
        started = time.monotonic()
        response = sock.recv(65536)
        elapsed = time.monotonic() - started
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    return int(response.split(b" ", 2)[1]), response, elapsed


class TestSlowBodies:
    def test_stalled_body_answers_408_and_closes(self, gateway):
        head = (b"POST /v1/publish/slow/body HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")

        status, response, elapsed = send_raw_publish(gateway, head, b'{"a": "')

        assert status == 408
        assert b'"request_timeout"' in response
        assert 0.8 < elapsed < 5

    def test_endless_chunked_body_stops_at_limit(self, gateway):
        head = (b"POST /v1/publish/slow/chunked HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (4 * MAX_PUBLISH_BYTES, b"x" * (4 * MAX_PUBLISH_BYTES))

        status, response, elapsed = send_raw_publish(gateway, head, chunk)

        # Answered at once, not after the read timeout: reading stopped at the limit.
        assert status == 413
        assert elapsed < 0.8


class TestStreamLimits:
    def test_per_address_then_per_worker(self, gateway):
        open_streams: list[RawStream] = []
        try:
            # Per address: two streams from 127.0.0.2, the third gets 429.
            for _ in range(MAX_PER_ADDRESS):
                open_streams.append(RawStream(gateway, "limit/a", "127.0.0.2"))
                assert open_streams[-1].status == 200
            refused = RawStream(gateway, "limit/a", "127.0.0.2")
            assert refused.status == 429
            assert int(refused.header("Retry-After")) >= 1
            body = refused.error()
            assert body["error"] == "too_many_streams_from_address"
            assert body["maximum"] == MAX_PER_ADDRESS
            refused.close()

            # Other addresses fill the worker; the next stream gets 503.
            for source in range(3, 3 + MAX_STREAMS - MAX_PER_ADDRESS):
                open_streams.append(RawStream(gateway, "limit/a", f"127.0.0.{source}"))
                assert open_streams[-1].status == 200
            busy = RawStream(gateway, "limit/a", "127.0.0.50")
            assert busy.status == 503
            assert int(busy.header("Retry-After")) >= 1
            assert busy.error()["error"] == "too_many_streams"
            busy.close()

            # Other requests are still served, and a closed stream frees a place.
            with httpx.Client(base_url=gateway.url, timeout=5) as http:
                assert http.get("/healthz").status_code == 200
                assert http.post("/v1/publish/limit/a", json={"n": 1}).status_code == 200
            open_streams.pop().close()

            def reopened():
                stream = RawStream(gateway, "limit/a", "127.0.0.51")
                if stream.status == 200:
                    open_streams.append(stream)
                    return True
                stream.close()
                return False

            wait_for(reopened, timeout=8, interval=0.5, message="a free stream place")
            assert gateway.wait_for_log("rejected with 503", timeout=5) is None
        finally:
            for stream in open_streams:
                stream.close()

        wait_for(lambda: stream_count(gateway) == 0, timeout=8, interval=0.5,
                 message="every stream closed")
