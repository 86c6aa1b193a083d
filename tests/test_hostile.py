"""Hostile input: garbage on the Redis bus, documents that try to break SSE
framing, and peers that stall or never read.

Most tests share one gateway with two workers. Its Redis has unlimited
Pub/Sub output buffers, so that even a huge bus message reaches the
subscriber and is checked there. One test uses Redis's default limits.
"""

from __future__ import annotations

import json
import os
import random
import resource
import socket
import threading
import time

import httpx
import msgpack
import pytest
import redis

from ingest.publisher import Publisher
from livegate.wire import MAX_ENVELOPE_BYTES
from tests.support.gateway import Gateway
from tests.support.mirror import Mirror
from tests.support.redis_server import RedisServer
from tests.support.sse import RawSSEReader, SSEClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PREFIX = "hostile"
# A long constant field keeps each patch smaller than its document, so that
# changes travel as deltas.
PAD = "constant text that makes every patch smaller than its document " * 4
MARKER = "HOSTILE-MARKER"


@pytest.fixture(scope="module")
def redis_unlimited(tmp_path_factory):
    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis-unlimited"),
                         extra_args=["--client-output-buffer-limit", "pubsub 0 0 0"])
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def gateway(redis_unlimited, tmp_path_factory):
    server = Gateway(
        redis_unlimited.url, workers=2,
        env={
            "LIVEGATE_KEY_PREFIX": PREFIX,
            "LIVEGATE_HEARTBEAT_INTERVAL": "2",
            "LIVEGATE_CLIENT_QUEUE_BYTES": "65536",
            "LIVEGATE_SHUTDOWN_WINDOW": "1",
        },
        log_dir=tmp_path_factory.mktemp("gateway"),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(redis_unlimited):
    return redis.Redis.from_url(redis_unlimited.url)


@pytest.fixture(scope="module")
def publisher(client):
    return Publisher(client, key_prefix=PREFIX)


def open_stream(gateway, *channels) -> SSEClient:
    sse = SSEClient(f"{gateway.url}/v1/stream", params=[("channel", c) for c in channels])
    sse.start()
    assert sse.status_code == 200, sse.body
    return sse


def metric_total(gateway, name: str) -> float:
    """Sum every sample of one metric on /metrics."""
    with httpx.Client(base_url=gateway.url, timeout=5) as http:
        text = http.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def valid_envelope(client, channel: str) -> dict:
    """An envelope that passes every field check but was never published in Redis."""
    epoch = (client.get(f"{PREFIX}:epoch") or b"noepoch").decode()
    seq = int(client.get(f"{PREFIX}:seq") or 0)
    return {"v": 1, "epoch": epoch, "seq": seq + 1000, "channel": channel, "version": 99,
            "prev_seq": seq, "ts": 0, "kind": "snapshot",
            "data": json.dumps({MARKER: True})}


def hostile_messages(client) -> list[bytes]:
    """Bus messages that must all be skipped: wrong types, missing fields, foreign ones."""
    base = valid_envelope(client, "honest/a")
    messages = [
        msgpack.packb([1, 2, 3]), msgpack.packb(MARKER), msgpack.packb(None),
        msgpack.packb(12), msgpack.packb(True), b"", b"\xc1\xc1",
        json.dumps({"v": 1, "type": "hello", "text": MARKER}).encode(),
        msgpack.packb({"v": 1, "kind": "probe"}),
    ]
    for field in ("v", "epoch", "seq", "channel", "version", "prev_seq", "ts", "kind", "data"):
        messages.append(msgpack.packb({k: v for k, v in base.items() if k != field}))
    for field, value in [("seq", "5"), ("version", -1), ("channel", 7), ("data", 12),
                         ("kind", "bogus"), ("v", 2), ("epoch", ""), ("ts", 1.5),
                         ("channel", "honest/a\nevent: evil"), ("data", "{not json")]:
        messages.append(msgpack.packb({**base, field: value}))
    # Well-formed, but Redis disagrees with their position.
    messages.append(msgpack.packb(base))
    messages.append(msgpack.packb({**base, "epoch": "foreignepoch", "seq": 1}))
    return messages


class TestHostileBus:
    def test_garbage_while_clients_stream(self, gateway, client, publisher):
        documents = {"honest/a": {"n": 0, "pad": PAD}, "honest/b": {"n": 0, "pad": PAD}}
        for channel, document in documents.items():
            publisher.publish(channel, document)
        clients = [open_stream(gateway, "honest/*") for _ in range(3)]
        watcher = open_stream(gateway, "**")
        subscriber = gateway.subscriber_pid()
        skipped_before = metric_total(gateway, "livegate_subscriber_invalid_messages_total")
        failures: list[BaseException] = []

        def publish_honestly():
            try:
                for n in range(1, 41):
                    for channel in documents:
                        documents[channel] = {"n": n, "pad": PAD}
                        publisher.publish(channel, documents[channel])
                    time.sleep(0.02)
            except BaseException as error:  # Reported by the main thread.
                failures.append(error)

        honest = threading.Thread(target=publish_honestly, name="honest-publisher")
        honest.start()
        try:
            # The huge message goes first: the subscriber logs at most ten
            # invalid messages of a kind a minute.
            huge = {**valid_envelope(client, "honest/b"),
                    "data": json.dumps({MARKER: "x" * (MAX_ENVELOPE_BYTES + 1)})}
            messages = [msgpack.packb(huge), *hostile_messages(client)]
            for message in messages:
                client.publish(f"{PREFIX}:bus", message)
                time.sleep(0.005)
            honest.join(timeout=30)
            assert not honest.is_alive()
            assert not failures, failures

            for sse in clients:
                def caught_up(events):
                    mirror = Mirror()
                    mirror.apply_events(events)
                    return mirror.documents() == documents

                sse.wait_for(caught_up, timeout=15)
            gateway.wait_for_log("exceeds the maximum of %d" % MAX_ENVELOPE_BYTES, timeout=10)
            skipped = wait_for(
                lambda: (total := metric_total(
                    gateway, "livegate_subscriber_invalid_messages_total") - skipped_before)
                >= len(messages) and total,
                timeout=10, message="every hostile message counted")
        finally:
            honest.join(timeout=30)
            for sse in [*clients, watcher]:
                sse.close()

        assert skipped == len(messages)
        assert gateway.subscriber_pid() == subscriber
        for sse in [*clients, watcher]:
            assert all(MARKER not in event.data for event in sse.events)
            assert {event.json()["channel"] for event in sse.events} <= set(documents)
            versions = [e.json()["version"] for e in sse.events if e.json()["channel"] == "honest/a"]
            assert versions == list(range(versions[0], 42))

    def test_message_over_redis_buffer_limit(self, redis_server, gateway_factory):
        """With Redis's default limits (pubsub 32 MB hard) a huge message makes
        Redis drop the subscriber's connection; it reconnects and repairs."""
        server = gateway_factory(redis_server.url, workers=1, env={"LIVEGATE_KEY_PREFIX": PREFIX})
        plain = redis.Redis.from_url(redis_server.url)
        own_publisher = Publisher(plain, key_prefix=PREFIX)
        document = {"n": 0, "pad": PAD}
        own_publisher.publish("honest/big", document)
        sse = open_stream(server, "honest/big")
        subscriber = server.subscriber_pid()
        try:
            sse.wait_for_count(1)
            plain.publish(f"{PREFIX}:bus", b"\x00" * (40 << 20))
            for n in range(1, 6):
                document = {"n": n, "pad": PAD}
                own_publisher.publish("honest/big", document)

            def caught_up(events):
                mirror = Mirror()
                mirror.apply_events(events)
                return mirror.documents()["honest/big"] == document

            sse.wait_for(caught_up, timeout=20)
            server.wait_for_log("redis connection lost", timeout=10)
        finally:
            sse.close()
            plain.close()
        assert server.subscriber_pid() == subscriber


# Strings that must travel inside one data: line, escaped or verbatim as
# JSON allows, without adding a field or an event.
TRICKY_STRINGS = [
    "line\nbreak", "carriage\rreturn", "crlf\r\n\r\nevent: evil\r\ndata: x",
    "\n\ndata: {\"channel\":\"spoof\"}\n\nid: 1-1\n\n", "separators \u2028 and \u2029",
    "nul \x00 byte", "del \x7f and bom \ufeff", "emoji \U0001F600 and \u00e9",
    ": looks like a comment", "retry: 1",
]
ODD_CHANNELS = [
    "f", "0", ":", "-", "_", ".", "..", "a:b:c", "x.y-z_w", "A/B/C/D/E/F/G/H/I/J",
    "frames/../up", "frames/./here", "frames/" + "L" * 193,
]


def publish_path(channel: str) -> str:
    # "." and ".." segments are percent-encoded, or the HTTP client would
    # resolve them as relative path steps before sending.
    segments = ["%2E" * len(s) if s in (".", "..") else s for s in channel.split("/")]
    return "/v1/publish/" + "/".join(segments)


def parse_strictly(raw: bytes) -> list[tuple[str, dict, str]]:
    """Split an SSE body into (event, data, id), failing on anything else.

    Every block must be retry, a heartbeat comment, or exactly the three
    lines event, data and id.
    """
    assert b"\r" not in raw, "a raw CR would end an SSE line"
    text = raw.decode("utf-8")
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        if len(lines) == 1 and (lines[0].startswith("retry: ") or lines[0] == ": heartbeat"):
            continue
        assert len(lines) == 3, f"unexpected block {block[:300]!r}"
        event, data, event_id = lines
        assert event in ("event: snapshot", "event: delta"), event
        assert data.startswith("data: "), data[:100]
        assert event_id.startswith("id: "), event_id[:100]
        events.append((event[7:], json.loads(data[6:]), event_id[4:]))
    return events


class TestFraming:
    def test_tricky_documents_arrive_as_exact_events(self, redis_unlimited, gateway_factory):
        # Default limits: the long document's frame is larger than the
        # module gateway's 64 KiB stream queue.
        gateway = gateway_factory(redis_unlimited.url, workers=1,
                                  env={"LIVEGATE_KEY_PREFIX": PREFIX})
        rng = random.Random(3)
        reader = RawSSEReader(f"{gateway.url}/v1/stream",
                              params=[("channel", channel) for channel in ODD_CHANNELS])
        reader.start()
        expected: list[tuple[str, int, str]] = []
        documents: dict[str, dict] = {}
        try:
            assert reader.status_code == 200
            reader.wait_for(lambda raw: raw.startswith(b"retry: "), timeout=5)
            with httpx.Client(base_url=gateway.url, timeout=10) as http:
                for index, channel in enumerate(ODD_CHANNELS):
                    document = {
                        "text": TRICKY_STRINGS[index % len(TRICKY_STRINGS)],
                        "key\nwith\r\nbreaks": TRICKY_STRINGS[(index + 1) % len(TRICKY_STRINGS)],
                        # About 130 000 characters for the first channel.
                        "long": "".join(rng.choice("ab\n\u2028\u00e9\x00\"\\") for _ in range(2000))
                        * (65 if index == 0 else 1),
                        "pad": PAD,
                    }
                    response = http.post(publish_path(channel), json=document)
                    assert response.status_code == 200, (channel, response.text)
                    assert response.json()["channel"] == channel
                    documents[channel] = document
                    expected.append((channel, 1, response.json()["id"]))
                for channel in ODD_CHANNELS[:5]:
                    document = {**documents[channel], "text": "changed\r\n\ndata: x\u2028"}
                    response = http.post(publish_path(channel), json=document)
                    assert response.status_code == 200
                    documents[channel] = document
                    expected.append((channel, 2, response.json()["id"]))

            last_id = expected[-1][2]
            reader.wait_for_bytes(f"id: {last_id}\n\n".encode(), timeout=15)
            time.sleep(0.3)
            raw = reader.raw
        finally:
            reader.close()

        events = parse_strictly(raw)
        assert [(data["channel"], data["version"], event_id) for _, data, event_id in events] \
            == expected
        mirror = Mirror()
        for event, data, _ in events:
            mirror.apply(event, data)
        assert mirror.documents() == documents

    @pytest.mark.parametrize("body, content_type", [
        (b'{"text": "\\ud800"}', "application/json"),
        (b'{"text": "\\udc00 low first"}', "application/json"),
        (b'{"text": "\xed\xa0\x80"}', "application/json"),
        (b'{"text": "\xff"}', "application/json"),
        (b'[{"op": "add", "path": "/x", "value": "\\ud800"}]', "application/json-patch+json"),
        (b"\x81\xa4text\xa3\xed\xa0\x80", "application/msgpack"),
    ])
    def test_lone_surrogates_answer_400(self, gateway, body, content_type):
        with httpx.Client(base_url=gateway.url) as http:
            http.post("/v1/publish/frames/surrogate", json={"text": "fine"})
            response = http.post("/v1/publish/frames/surrogate", content=body,
                                 headers={"Content-Type": content_type})
            current = http.get("/v1/channels/frames/surrogate").json()

        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_document"
        assert current["data"] == {"text": "fine"}


def raise_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def peer_socket(gateway, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive buffer makes a peer that never reads fill up quickly.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", gateway.port))
    return sock


class TestSlowPeers:
    HALF_REQUESTS = 500
    NON_READERS = 500
    # Non-readers that also take the bulk channel. Linux accepts about 3 MB
    # into the send buffer of a loopback socket whose peer does not read, so
    # only past that does the gateway's own queue grow and a drop show.
    BULK_NON_READERS = 100
    BULK_BYTES = 128_000
    HONEST_CLIENTS = 20
    UPDATES = 40

    def test_stalled_peers_do_not_delay_honest_clients(self, gateway, publisher):
        raise_open_file_limit()
        sources = [f"127.0.0.{n}" for n in range(2, 12)]
        workers = gateway.worker_pids()
        publisher.publish("slow/bulk", {"blob": os.urandom(self.BULK_BYTES // 2).hex()})
        score = {"n": 0, "pad": PAD}
        publisher.publish("slow/score", score)
        peers: list[socket.socket] = []
        honest: list[SSEClient] = []
        sent_at: dict[int, float] = {}
        try:
            # Half an HTTP request, then silence.
            for n in range(self.HALF_REQUESTS):
                sock = peer_socket(gateway, sources[n % len(sources)])
                sock.sendall(b"GET /v1/stream?channel=slow/bulk HTTP/1.1\r\nHost: x\r\n")
                peers.append(sock)
            # Whole stream requests whose responses are never read.
            for n in range(self.NON_READERS):
                sock = peer_socket(gateway, sources[n % len(sources)])
                channels = "channel=slow/score"
                if n < self.BULK_NON_READERS:
                    channels += "&channel=slow/bulk"
                sock.sendall(f"GET /v1/stream?{channels} HTTP/1.1\r\nHost: x\r\n"
                             "Accept: text/event-stream\r\n\r\n".encode())
                peers.append(sock)

            honest = [open_stream(gateway, "slow/score") for _ in range(self.HONEST_CLIENTS)]
            for sse in honest:
                sse.wait_for_count(1, timeout=10)

            for n in range(1, self.UPDATES + 1):
                publisher.publish("slow/bulk", {"blob": os.urandom(self.BULK_BYTES // 2).hex()})
                score = {"n": n, "pad": PAD}
                sent_at[n + 1] = time.monotonic()
                publisher.publish("slow/score", score)
                time.sleep(0.1)
            with httpx.Client(base_url=gateway.url, timeout=5) as http:
                assert http.get("/healthz").status_code == 200

            latencies = []
            for sse in honest:
                def caught_up(events):
                    mirror = Mirror()
                    mirror.apply_events(events)
                    return mirror.documents().get("slow/score") == score

                events = sse.wait_for(lambda events: caught_up(events) and events, timeout=15)
                for event in events:
                    version = event.json()["version"]
                    if version in sent_at:
                        latencies.append(event.received_at - sent_at[version])
        finally:
            for sse in honest:
                sse.close()
            for sock in peers:
                sock.close()

        latencies.sort()
        assert len(latencies) == self.HONEST_CLIENTS * self.UPDATES
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(f"\nhonest client latency: median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
              f"p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
        # Generous: a shared 2-core machine also runs the peers and Redis.
        assert p99 < 2.0
        assert gateway.worker_pids() == workers
        wait_for(lambda: metric_total(gateway, "livegate_slow_consumer_drops_total") > 0,
                 timeout=10, interval=0.5, message="slow consumers dropped")
