"""Faults around the gateway: killed workers, Redis restarts, a lost Pub/Sub message,
a client that stops reading, racing publishers and shutdown.

Every test starts its own redis-server and gateways. ResumingClient checks that no
client sees a version twice, or a version skipped without a snapshot, across all of
its connections.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import psutil
import pytest
import redis

from ingest.publisher import Publisher, VersionConflictError
from tests.support.clients import (
    ResumingClient, assert_replayed_exactly, split_event_id,
)
from tests.support.sse import RawSSEReader
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PREFIX = "faults"
# A short shutdown window keeps teardown quick. The shutdown test sets its own.
GATEWAY_ENV = {"LIVEGATE_KEY_PREFIX": PREFIX, "LIVEGATE_HEARTBEAT_INTERVAL": "2", "LIVEGATE_SHUTDOWN_WINDOW": "0.5"}
# A long constant field keeps each patch smaller than its document, so that changes
# travel as deltas rather than as snapshots.
PAD = "constant text that makes every patch smaller than its document " * 16
PUBLISH_SCRIPT = (Path(__file__).resolve().parents[1] / "ingest" / "publish.lua").read_text()
PUBLISH_LINE = "redis.call('PUBLISH', ARGV[9], packed)\n"


def new_document(channel: str, generation: int = 0) -> dict[str, Any]:
    return {"channel": channel, "pad": PAD, "generation": generation, "n": 0}


def next_document(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "n": document["n"] + 1}


def publish_round(publisher: Publisher, documents: dict[str, Any]) -> None:
    for channel, document in documents.items():
        documents[channel] = next_document(document)
        result = publisher.publish(channel, documents[channel])
        assert result.changed, f"publish to {channel} changed nothing"


def settle(client: ResumingClient, seconds: float = 0.5) -> None:
    """Give late or duplicate events time to arrive, then apply them."""
    time.sleep(seconds)
    client.sync()


def stream_connections(worker_pid: int, port: int) -> int:
    """Return how many established TCP connections to `port` the worker has open."""
    connections = psutil.Process(worker_pid).net_connections(kind="tcp")
    return sum(1 for c in connections if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


class PublisherThread:
    """Publishes the next version of each channel in turn, `count` times in all, from a thread.

    Redis errors are retried with the same document until `deadline` seconds have
    passed, so publishes attempted while Redis is down land once it is back.
    """

    def __init__(self, publisher: Publisher, documents: dict[str, Any], count: int,
                 interval: float = 0.01, deadline: float = 60.0) -> None:
        self.publisher = publisher
        self.documents = documents
        self.count = count
        self.interval = interval
        self.deadline = deadline
        self.published = 0
        self.redis_errors = 0
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> "PublisherThread":
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "publisher thread did not finish"
        assert self.error is None, repr(self.error)

    def _run(self) -> None:
        channels = sorted(self.documents)
        give_up_at = time.monotonic() + self.deadline
        try:
            for number in range(self.count):
                channel = channels[number % len(channels)]
                document = next_document(self.documents[channel])
                while True:
                    try:
                        self.publisher.publish(channel, document)
                        break
                    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                        self.redis_errors += 1
                        if time.monotonic() > give_up_at:
                            raise
                        time.sleep(0.05)
                self.documents[channel] = document
                self.published += 1
                time.sleep(self.interval)
        except BaseException as error:
            self.error = error


class TestWorkerKill:
    def test_replacement_worker_resumes_clients(self, redis_server, gateway_factory):
        # Debug logs show where each resume was served from.
        gateway = gateway_factory(redis_server.url, workers=1, env={**GATEWAY_ENV, "LIVEGATE_LOG_LEVEL": "debug"})
        publisher = Publisher(redis_server.client(), key_prefix=PREFIX)
        channels = [f"worker-kill/m{i}" for i in range(3)]
        documents = {channel: new_document(channel) for channel in channels}
        for channel, document in documents.items():
            publisher.publish(channel, document)
        publish_round(publisher, documents)

        clients = [ResumingClient(channels, name=f"client{i}") for i in range(3)]
        for client in clients:
            client.connect(gateway.url)
            assert client.connected
        for client in clients:
            client.wait_for_documents(documents)

        (old_worker,) = gateway.worker_pids()
        os.kill(old_worker, signal.SIGKILL)
        for client in clients:
            wait_for(lambda client=client: client.sse.finished, timeout=5, message=f"{client.name}'s stream to end")
        for _ in range(3):
            publish_round(publisher, documents)
        new_worker = wait_for(
            lambda: (pids := gateway.worker_pids()) and pids[0] != old_worker and pids[0],
            timeout=10, message="gunicorn to start a new worker",
        )
        assert new_worker != old_worker

        # Nothing is published while the clients resume on the new worker.
        for client in clients:
            client.disconnect()
            versions_before = client.mirror.versions()
            client.connect(gateway.url)
            assert client.connected
            client.wait_for_documents(documents, timeout=5)
            settle(client, 0.2)
            assert_replayed_exactly(client, versions_before, client.mirror.versions())

        publish_round(publisher, documents)
        for client in clients:
            client.wait_for_documents(documents)
            assert client.violations == [], client.name
            client.disconnect()

    @pytest.mark.slow
    def test_other_worker_keeps_streaming(self, redis_server, gateway_factory):
        gateway = gateway_factory(redis_server.url, workers=2, env=GATEWAY_ENV)
        publisher = Publisher(redis_server.client(), key_prefix=PREFIX)
        channels = [f"worker-kill-2/m{i}" for i in range(4)]
        documents = {channel: new_document(channel) for channel in channels}
        for channel, document in documents.items():
            publisher.publish(channel, document)

        clients = [ResumingClient(channels, name=f"client{i}") for i in range(8)]
        for client in clients:
            client.connect(gateway.url)
            assert client.connected
        for client in clients:
            client.wait_for_documents(documents)

        streams = {pid: stream_connections(pid, gateway.port) for pid in gateway.worker_pids()}
        assert sum(streams.values()) == len(clients), streams
        victim = max(streams, key=streams.get)
        dropped_count = streams[victim]

        updates = PublisherThread(publisher, documents, count=300, interval=0.01).start()
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: sum(client.sse.finished for client in clients) >= dropped_count,
            timeout=5, message=f"{dropped_count} streams of the killed worker to end",
        )
        time.sleep(0.5)
        dropped = [client for client in clients if client.sse.finished]
        undisturbed = [client for client in clients if not client.sse.finished]
        assert len(dropped) == dropped_count

        # The dropped clients come back at once, while updates continue.
        for client in dropped:
            client.disconnect()
            client.connect(gateway.url)
            assert client.connected
        updates.join(timeout=30)

        for client in clients:
            client.follow(lambda: gateway.url, documents, timeout=15)
        wait_for(lambda: len(gateway.worker_pids()) == 2 and victim not in gateway.worker_pids(),
                 timeout=10, message="gunicorn to replace the killed worker")
        for client in clients:
            assert client.violations == [], client.name
        for client in undisturbed:
            assert client.connections == 1, client.name
        for client in clients:
            client.disconnect()


class TestRedisRestart:
    @pytest.mark.slow
    def test_restart_with_data_recovers(self, redis_server, gateway_factory):
        gateway = gateway_factory(redis_server.url, workers=2, env=GATEWAY_ENV)
        publisher = Publisher(redis_server.client(), key_prefix=PREFIX)
        channels = [f"redis-kept/m{i}" for i in range(4)]
        documents = {channel: new_document(channel) for channel in channels}
        for channel, document in documents.items():
            publisher.publish(channel, document)

        staying = [ResumingClient(channels, name=f"staying{i}") for i in range(2)]
        leaving = ResumingClient(channels, name="leaving")
        for client in [*staying, leaving]:
            client.connect(gateway.url)
            assert client.connected
        for client in [*staying, leaving]:
            client.wait_for_documents(documents)

        updates = PublisherThread(publisher, documents, count=200, interval=0.02).start()
        time.sleep(1.0)
        leaving.disconnect()
        # SHUTDOWN SAVE writes the dump and exits in one step. SAVE followed by a
        # separate SIGTERM would lose the publishes made in between, which is a
        # different fault (Redis losing acknowledged writes).
        with redis_server.client() as admin:
            admin.shutdown(save=True)
        wait_for(lambda: not redis_server.is_running(), timeout=10, message="redis-server to exit")
        down_at = time.monotonic()
        # The leaving client tries to come back while Redis is down.
        leaving.connect(gateway.url)
        time.sleep(1.0)
        redis_server.restart(keep_data=True)
        print(f"redis was down for {time.monotonic() - down_at:.1f} s")
        updates.join(timeout=60)
        assert updates.redis_errors > 0

        for client in [*staying, leaving]:
            client.follow(lambda: gateway.url, documents, timeout=20)
        for client in [*staying, leaving]:
            assert client.violations == [], client.name
        for client in [*staying, leaving]:
            client.disconnect()

    @pytest.mark.slow
    def test_restart_empty_sends_new_snapshots(self, redis_server, gateway_factory):
        gateway = gateway_factory(redis_server.url, workers=2, env=GATEWAY_ENV)
        publisher = Publisher(redis_server.client(), key_prefix=PREFIX)
        channels = [f"redis-empty/m{i}" for i in range(3)]
        documents = {channel: new_document(channel) for channel in channels}
        for channel, document in documents.items():
            publisher.publish(channel, document)
        publish_round(publisher, documents)

        clients = [
            ResumingClient(channels, name="exact"),
            ResumingClient(["redis-empty/*"], name="pattern"),
        ]
        for client in clients:
            client.connect(gateway.url)
            assert client.connected
        for client in clients:
            client.wait_for_documents(documents)
        old_epoch = split_event_id(clients[0].last_event_id)[0]
        old_client = ResumingClient(channels, name="old-epoch")
        for channel, document in documents.items():
            old_client.seed(channel, 2, document, clients[0].last_event_id)

        before_restart = {client.name: len(client.received) for client in clients}
        redis_server.restart(keep_data=False)
        new_documents = {channel: new_document(channel, generation=1) for channel in channels}
        results = wait_for(lambda: _publish_when_up(publisher, new_documents), timeout=10,
                           message="redis to accept publishes after the restart")
        new_epoch = split_event_id(results[0].id)[0]
        assert new_epoch != old_epoch

        for client in clients:
            client.follow(lambda: gateway.url, new_documents, timeout=15)
        for client in clients:
            after = client.received[before_restart[client.name]:]
            first_events = {}
            for event in after:
                first_events.setdefault(event.channel, event)
            assert sorted(first_events) == sorted(channels), client.name
            for event in first_events.values():
                assert event.event == "snapshot", (client.name, event)
                assert split_event_id(event.id)[0] == new_epoch, (client.name, event)
            assert client.violations == [], client.name

        publish_round(publisher, new_documents)
        for client in clients:
            client.wait_for_documents(new_documents)
            assert client.violations == [], client.name
            client.disconnect()

        old_client.connect(gateway.url)
        assert old_client.connected
        old_client.wait_for_documents(new_documents)
        settle(old_client, 0.3)
        received = old_client.connection_events()
        assert [event.event for event in received] == ["snapshot"] * len(channels)
        assert {split_event_id(event.id)[0] for event in received} == {new_epoch}
        assert old_client.violations == []
        old_client.disconnect()


def _publish_when_up(publisher: Publisher, documents: dict[str, Any]) -> list:
    """Publish every document and return the results, or [] while Redis is not reachable."""
    results = []
    try:
        for channel, document in documents.items():
            results.append(publisher.publish(channel, document))
    except (redis.ConnectionError, redis.BusyLoadingError):
        return []
    return results


class TestLostPubSubMessage:
    def test_missing_version_arrives_first(self, redis_server, gateway_factory):
        gateway = gateway_factory(redis_server.url, workers=2, env=GATEWAY_ENV)
        connection = redis_server.client()
        publisher = Publisher(connection, key_prefix=PREFIX)
        channel = "lost/m1"
        document = new_document(channel)
        publisher.publish(channel, document)
        document = next_document(document)
        publisher.publish(channel, document)

        client = ResumingClient([channel], name="lost")
        client.connect(gateway.url)
        assert client.connected
        client.wait_for_documents({channel: document})
        initial = len(client.received)

        # The publish script without its PUBLISH: state and logs change exactly as
        # in a real publish, but no message reaches the bus.
        assert PUBLISH_LINE in PUBLISH_SCRIPT
        silent_script = PUBLISH_SCRIPT.replace(PUBLISH_LINE, "")
        missed = next_document(document)
        patch = [{"op": "replace", "path": "/n", "value": missed["n"]}]
        keys = [f"{PREFIX}:epoch", f"{PREFIX}:seq", f"{PREFIX}:channels",
                f"{PREFIX}:state:{channel}", f"{PREFIX}:log:{channel}", f"{PREFIX}:log"]
        args = [channel, 2, "delta", json.dumps(patch), json.dumps(missed),
                "unusedepoch", 200, 10000, f"{PREFIX}:bus"]
        status, version, _, _ = connection.eval(silent_script, len(keys), *keys, *args)
        assert status == 1
        assert version == 3

        later = next_document(missed)
        assert publisher.publish(channel, later).version == 4
        client.wait_for_documents({channel: later})
        settle(client, 0.3)

        after = [(event.event, event.version) for event in client.received[initial:]]
        assert after == [("delta", 3), ("delta", 4)]
        assert client.violations == []
        gateway.wait_for_log("repaired gap")
        client.disconnect()


def wait_for_ring_read(gateway, seq: int) -> None:
    """Wait until the subscriber wrote ``seq`` and every worker read the ring up to its end."""
    def caught_up() -> bool:
        body = httpx.get(f"{gateway.url}/status.json", timeout=5).json()
        workers = body["workers"]
        return (
            body["subscriber"]["last_seq"] >= seq
            and len(workers) == gateway.workers
            and all(worker["ring_lag_bytes"] == 0 for worker in workers)
        )

    wait_for(caught_up, timeout=10, message=f"both workers reading the ring past seq {seq}")


class StreamFan:
    """Many SSE streams on raw sockets, read by one thread with a selector.

    Requests use HTTP/1.0, so the body is the event stream itself, without chunked
    encoding. For every delta whose patch replaces /sent_at (a time.monotonic() value
    taken just before the publish), the delay until the thread read it is recorded.
    """

    def __init__(self, host: str, port: int, path: str, count: int) -> None:
        self.request = f"GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
        self.address = (host, port)
        self.count = count
        self.latencies: list[float] = []
        self.versions: list[list[int]] = [[] for _ in range(count)]
        self.closed: set[int] = set()
        self._buffers = [b""] * count
        self._header_done = [False] * count
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-fan", daemon=True)

    def start(self) -> "StreamFan":
        for number in range(self.count):
            sock = socket.create_connection(self.address, timeout=5)
            sock.sendall(self.request)
            sock.setblocking(False)
            self._sockets.append(sock)
            self._selector.register(sock, selectors.EVENT_READ, number)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self._sockets:
            sock.close()
        self._selector.close()

    def received_counts(self) -> list[int]:
        with self._lock:
            return [len(versions) for versions in self.versions]

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                number = key.data
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                now = time.monotonic()
                if not data:
                    self._selector.unregister(key.fileobj)
                    with self._lock:
                        self.closed.add(number)
                    continue
                self._feed(number, data, now)

    def _feed(self, number: int, data: bytes, now: float) -> None:
        buffer = self._buffers[number] + data
        if not self._header_done[number]:
            head, separator, rest = buffer.partition(b"\r\n\r\n")
            if not separator:
                self._buffers[number] = buffer
                return
            self._header_done[number] = True
            buffer = rest
        *frames, self._buffers[number] = buffer.split(b"\n\n")
        for frame in frames:
            lines = frame.split(b"\n")
            if b"event: delta" not in lines and b"event: snapshot" not in lines:
                continue
            data_line = next(line for line in lines if line.startswith(b"data: "))
            payload = json.loads(data_line[len(b"data: "):])
            with self._lock:
                self.versions[number].append(payload["version"])
                for operation in payload.get("patch", ()):
                    if operation.get("path") == "/sent_at":
                        self.latencies.append(now - operation["value"])


@pytest.fixture
def stalled_socket():
    """A TCP socket with a 4 KiB receive buffer, closed before the gateways stop."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        yield sock


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class TestSlowConsumer:
    @pytest.mark.slow
    def test_stalled_client_dropped_others_fast(self, redis_server, gateway_factory, stalled_socket):
        queue_limit = 65536
        gateway = gateway_factory(
            redis_server.url, workers=2,
            env={**GATEWAY_ENV, "LIVEGATE_CLIENT_QUEUE_BYTES": queue_limit},
        )
        publisher = Publisher(redis_server.client(), key_prefix=PREFIX)
        main_document = {"pad": PAD, "n": 0, "sent_at": time.monotonic()}
        publisher.publish("latency/main", main_document)
        publisher.publish("latency/bulk", {"blob": ""})
        # The first publish to a fresh Redis starts an epoch, after which the
        # workers resynchronise every open stream with a second snapshot. The
        # streams below open once both workers have read past it.
        wait_for_ring_read(gateway, 2)

        fan = StreamFan("127.0.0.1", gateway.port, "/v1/stream?channel=latency/main", 200).start()
        stalled = stalled_socket
        try:
            wait_for(lambda: min(fan.received_counts()) >= 1, timeout=20,
                     message="the snapshot on all 200 streams")

            # The stalled client never reads, and its small receive buffer takes
            # in little. The gateway's kernel send buffer can still grow to
            # net.ipv4.tcp_wmem's maximum (4 MiB on Linux by default).
            stalled.connect(("127.0.0.1", gateway.port))
            stalled.sendall(
                b"GET /v1/stream?channel=latency/main&channel=latency/bulk HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            )
            time.sleep(0.5)

            updates = 100
            bulk_size = 0
            started = time.monotonic()
            for number in range(1, updates + 1):
                main_document = {**main_document, "n": number, "sent_at": time.monotonic()}
                publisher.publish("latency/main", main_document)
                for _ in range(3):
                    blob = os.urandom(4096).hex()
                    bulk_size += len(blob)
                    publisher.publish("latency/bulk", {"blob": blob})
                time.sleep(0.04)
            publish_seconds = time.monotonic() - started

            wait_for(lambda: min(fan.received_counts()) >= updates + 1, timeout=20,
                     message=f"{updates} deltas on all 200 streams")
            latencies = list(fan.latencies)
            closed_streams = set(fan.closed)
        finally:
            fan.close()

        p50 = percentile(latencies, 0.50)
        p99 = percentile(latencies, 0.99)
        print(
            f"{len(latencies)} deliveries to 200 streams, {updates} updates in {publish_seconds:.1f} s "
            f"plus {bulk_size / 1e6:.1f} MB to the stalled stream: latency p50 {p50 * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms, "
            f"mean {statistics.mean(latencies) * 1000:.1f} ms"
        )
        assert len(latencies) == 200 * updates
        assert p99 < 1.0
        assert closed_streams == set()
        for versions in fan.versions:
            assert versions == list(range(1, updates + 2))

        # A stream closed as a slow consumer is logged once its write has been cut.
        try:
            gateway.wait_for_log("slow consumer", timeout=6)
        except TimeoutError:
            pytest.fail(
                f"the stalled stream was not dropped after {bulk_size / 1e6:.1f} MB were published to it "
                f"with LIVEGATE_CLIENT_QUEUE_BYTES={queue_limit}"
            )
        assert gateway.log_text().count("slow consumer") == 1
        # The gateway closed the stalled stream: reading it now reaches the end.
        stalled.settimeout(10)
        drained = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = stalled.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
        else:
            pytest.fail(f"stalled stream still open after draining {drained} bytes")
        assert drained < bulk_size


class TestRacingPublishers:
    def test_concurrent_patches_lose_nothing(self, redis_server):
        publisher_a = Publisher(redis_server.client(), key_prefix=PREFIX)
        publisher_b = Publisher(redis_server.client(), key_prefix=PREFIX)
        channel = "race/patches"
        publisher_a.publish(channel, {"pad": PAD, "items": []})
        increments = 200
        conflicts: list[str] = []
        errors: list[BaseException] = []

        def append_items(publisher: Publisher, name: str) -> None:
            try:
                for number in range(increments):
                    patch = [{"op": "add", "path": "/items/-", "value": f"{name}{number}"}]
                    try:
                        publisher.publish_patch(channel, patch)
                    except VersionConflictError as error:
                        conflicts.append(f"{name}{number}: {error}")
            except BaseException as error:
                errors.append(error)

        threads = [
            threading.Thread(target=append_items, args=(publisher_a, "a")),
            threading.Thread(target=append_items, args=(publisher_b, "b")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []

        version, document = publisher_a.current(channel)
        items = document["items"]
        print(f"{len(conflicts)} of {2 * increments} patches without base_version raised: {conflicts[:3]}")
        # A patch without base_version applies to whatever version is current, so
        # losing a race must end in a retry, never in an error.
        assert conflicts == []
        assert len(items) == 2 * increments
        assert version == 1 + 2 * increments
        assert [item for item in items if item.startswith("a")] == [f"a{n}" for n in range(increments)]
        assert [item for item in items if item.startswith("b")] == [f"b{n}" for n in range(increments)]

    def test_concurrent_documents_stay_consistent(self, redis_server, gateway_factory):
        gateway = gateway_factory(redis_server.url, workers=2, env=GATEWAY_ENV)
        channel = "race/documents"
        publishers = [Publisher(redis_server.client(), key_prefix=PREFIX) for _ in range(2)]
        first = {"pad": PAD, "writer": "none", "n": 0, "items": []}
        publishers[0].publish(channel, first)
        client = ResumingClient([channel], name="race", keep_history=True)
        client.connect(gateway.url)
        assert client.connected
        client.wait_for_documents({channel: first})

        written: list[dict[str, Any]] = [first]
        results: list[tuple[int, bool]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        conflicts: list[str] = []

        def write_documents(publisher: Publisher, name: str) -> None:
            try:
                for number in range(100):
                    document = {"pad": PAD, "writer": name, "n": number, "items": [name] * (number % 5)}
                    with lock:
                        written.append(document)
                    try:
                        result = publisher.publish(channel, document)
                    except VersionConflictError as error:
                        conflicts.append(f"{name}{number}: {error}")
                        continue
                    with lock:
                        results.append((result.version, result.changed))
            except BaseException as error:
                errors.append(error)

        threads = [
            threading.Thread(target=write_documents, args=(publisher, name))
            for publisher, name in zip(publishers, "ab")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        print(f"{len(conflicts)} of 200 whole-document publishes raised: {conflicts[:3]}")
        # A whole document replaces whatever is current, so losing a race must end
        # in a retry, never in an error.
        assert conflicts == []

        version, final = publishers[0].current(channel)
        client.wait_for_documents({channel: final}, timeout=10)
        settle(client, 0.3)
        changed_versions = sorted(version for version, changed in results if changed)
        assert changed_versions == list(range(2, version + 1))
        # Each patch was computed against the version it was applied to, so every
        # document the client rebuilt is one that a publisher wrote.
        assert client.history is not None
        for _, history_version, document in client.history:
            assert document in written, f"version {history_version} was never published: {document}"
        assert client.mirror.versions() == {channel: version}
        assert client.violations == []
        client.disconnect()

    def test_stale_base_version_answers_409(self, redis_server, gateway_factory):
        gateway = gateway_factory(redis_server.url, workers=1, env=GATEWAY_ENV)
        channel = "race/http"
        with httpx.Client(base_url=gateway.url, timeout=10) as http:
            assert http.post(f"/v1/publish/{channel}", json={"pad": PAD, "n": 0}).status_code == 200
            assert http.post(f"/v1/publish/{channel}", json={"pad": PAD, "n": 1}).status_code == 200
            patch = json.dumps([{"op": "replace", "path": "/n", "value": 5}])
            headers = {"Content-Type": "application/json-patch+json"}

            stale = http.post(f"/v1/publish/{channel}", params={"base_version": 1}, content=patch, headers=headers)
            assert stale.status_code == 409
            assert stale.headers["content-type"].startswith("application/json")
            body = stale.json()
            assert body["error"] == "version_conflict"
            assert body["current_version"] == 2
            assert http.get(f"/v1/channels/{channel}").json()["version"] == 2

            current = http.post(f"/v1/publish/{channel}", params={"base_version": 2}, content=patch, headers=headers)
            assert current.status_code == 200
            assert current.json()["version"] == 3


class TestShutdown:
    @pytest.mark.slow
    def test_sigterm_spreads_final_retry(self, redis_server, gateway_factory):
        window = 2.0
        gateway = gateway_factory(
            redis_server.url, workers=2,
            env={**GATEWAY_ENV, "LIVEGATE_SHUTDOWN_WINDOW": window, "LIVEGATE_HEARTBEAT_INTERVAL": 30},
        )
        gateway.wait_for_workers(2)
        # Both workers must have booted, but /readyz returns 200 as soon as one has.
        wait_for(lambda: gateway.log_text().count("hub started") >= 2, timeout=10,
                 message="both workers to start their hubs")
        publisher = Publisher(redis_server.client(), key_prefix=PREFIX)
        publisher.publish("shutdown/m1", new_document("shutdown/m1"))

        readers = [
            RawSSEReader(f"{gateway.url}/v1/stream", params={"channel": "shutdown/m1"}, read_timeout=20)
            for _ in range(50)
        ]
        try:
            for reader in readers:
                reader.start()
                assert reader.status_code == 200
            for reader in readers:
                reader.wait_for_bytes(b"event: snapshot", timeout=10)
            streams = {pid: stream_connections(pid, gateway.port) for pid in gateway.worker_pids()}

            signalled_at = time.monotonic()
            exit_code = gateway.stop(timeout=15)
            stop_seconds = time.monotonic() - signalled_at
            for reader in readers:
                wait_for(lambda reader=reader: reader.finished, timeout=5, message="stream to end")
        finally:
            for reader in readers:
                reader.close()

        end_times = [reader.chunks[-1][0] - signalled_at for reader in readers]
        print(
            f"streams per worker {streams}; streams ended between {min(end_times):.2f} s and "
            f"{max(end_times):.2f} s after SIGTERM; master exited after {stop_seconds:.1f} s with code {exit_code}"
        )
        for reader in readers:
            assert reader.error is None
        for reader in readers:
            assert re.search(rb"\n\nretry: \d+\n\n\Z", reader.raw), reader.raw[-200:]
        assert max(end_times) - min(end_times) >= window / 2
        assert max(end_times) <= window + 2.0
        assert stop_seconds < 10
        assert exit_code == 0
