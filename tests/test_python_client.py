"""The Python client (livegate_client) and its `tail` command.

Against a live gateway: the documents it prints equal the published ones,
it resumes with Last-Event-ID after a gateway restart and after a frozen
connection without receiving a snapshot again, and it reads a gzip stream. Against scripted responses
(httpx.MockTransport): resynchronisation after a failed patch, the retry:
delay, backoff, and the statuses it gives up on.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import httpx
import jsonpatch
import pytest
import redis

from ingest.publisher import Publisher
from ingest.simulator import SimulatedMatch, simulated_matches
from livegate_client import ChannelDocument, StreamRejected, Subscription, Update, stream_url
from tests.support.gateway import Gateway
from tests.support.processes import stop_process
from tests.support.proxy import FreezingProxy
from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[1]
# Short reconnect delays and shutdown, so that a restart takes about a second.
FAST_RECONNECT = {
    "LIVEGATE_RETRY_MS": "200",
    "LIVEGATE_RETRY_JITTER_MS": "100",
    "LIVEGATE_SHUTDOWN_WINDOW": "0.2",
}


class Feed:
    """Simulated matches published to one Redis as PREFIX/ID, with the documents last published."""

    def __init__(self, redis_url: str, count: int, prefix: str = "sport-livescore") -> None:
        self.publisher = Publisher(redis.Redis.from_url(redis_url))
        self.matches = simulated_matches(count)
        self.prefix = prefix
        self.published: dict[str, Any] = {}
        self.versions: dict[str, int] = {}

    def channel(self, match: SimulatedMatch) -> str:
        return f"{self.prefix}/{match.match_id}"

    def publish_all(self) -> int:
        """Publish every match's document; return how many changed."""
        changed = 0
        for match in self.matches:
            document = match.document()
            result = self.publisher.publish(self.channel(match), document)
            self.published[self.channel(match)] = copy.deepcopy(document)
            self.versions[self.channel(match)] = result.version
            changed += result.changed
        return changed

    def tick(self, ticks: int = 1) -> int:
        changed = 0
        for _ in range(ticks):
            for match in self.matches:
                match.tick()
            changed += self.publish_all()
        return changed


class TailProcess:
    """`python -m livegate_client tail ...` as a child process, its stdout parsed per line."""

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "livegate_client", "tail", *arguments],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[dict] = []
        self.stderr_lines: list[str] = []
        self._condition = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            with self._condition:
                self.lines.append(json.loads(line))
                self._condition.notify_all()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            with self._condition:
                self.stderr_lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        with self._condition:
            return "\n".join(self.stderr_lines)

    def wait_for_lines(self, predicate, timeout: float = 10.0, description: str = "the expected lines"):
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                result = predicate(list(self.lines))
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"timed out after {timeout:g} s waiting for {description}; "
                        f"{len(self.lines)} lines, last {self.lines[-3:]!r}\nstderr:\n{self.stderr}"[:4000]
                    )
                self._condition.wait(remaining)

    def wait(self, timeout: float = 10.0) -> int:
        code = self.process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=2)
        return code

    def stop(self) -> None:
        stop_process(self.process, self._threads)


@pytest.fixture
def tails():
    started: list[TailProcess] = []

    def start(*arguments: str) -> TailProcess:
        tail = TailProcess(*arguments)
        started.append(tail)
        return tail

    yield start
    for tail in started:
        tail.stop()


def mirror_of_changes(lines: list[dict]) -> dict[str, tuple[int, Any]]:
    """Rebuild channel -> (version, document) from --changes lines."""
    mirror: dict[str, tuple[int, Any]] = {}
    for line in lines:
        if line["event"] == "snapshot":
            mirror[line["channel"]] = (line["version"], line["data"])
        else:
            version, document = mirror[line["channel"]]
            assert line["version"] == version + 1, f"{line['channel']}: version {line['version']} after {version}"
            mirror[line["channel"]] = (line["version"], jsonpatch.apply_patch(document, line["patch"]))
    return mirror


def latest_documents(lines: list[dict]) -> dict[str, tuple[int, Any]]:
    """Channel -> (version, document) of the last --documents line per channel."""
    return {line["channel"]: (line["version"], line["data"]) for line in lines}


pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shared_gateway(redis_server_module, tmp_path_factory):
    """A gateway for the tests that do not stop it; each uses channels of its own."""
    gateway = Gateway(redis_server_module.url, workers=1,
                      env={**FAST_RECONNECT, "LIVEGATE_HEARTBEAT_INTERVAL": "1"},
                      log_dir=tmp_path_factory.mktemp("client-gateway"))
    gateway.start()
    yield gateway
    gateway.stop()


class TestTailCommand:
    def test_documents_equal_published(self, redis_server_module, shared_gateway, tails):
        feed = Feed(redis_server_module.url, 3, prefix="tail-documents")
        feed.publish_all()

        tail = tails(shared_gateway.url, "tail-documents/*", "--documents", "--timeout", "30")
        tail.wait_for_lines(lambda lines: len(lines) >= 3, description="three snapshots")
        assert feed.tick(5) > 0

        expected = {channel: (feed.versions[channel], feed.published[channel]) for channel in feed.published}
        tail.wait_for_lines(lambda lines: latest_documents(lines) == expected, timeout=10,
                            description="the published documents")
        versions = {}
        for line in tail.lines:
            assert set(line) == {"channel", "version", "id", "data"}
            assert line["version"] == versions.get(line["channel"], line["version"] - 1) + 1
            versions[line["channel"]] = line["version"]

    def test_max_events_stops(self, redis_server_module, shared_gateway, tails):
        feed = Feed(redis_server_module.url, 3, prefix="tail-max")
        feed.publish_all()

        tail = tails(shared_gateway.url, "tail-max/*", "--max-events", "2", "--timeout", "20")

        assert tail.wait(timeout=20) == 0
        assert len(tail.lines) == 2
        assert all(line["event"] == "snapshot" for line in tail.lines)
        assert all(line["data"] == feed.published[line["channel"]] for line in tail.lines)

    def test_timeout_stops_quiet_stream(self, shared_gateway, tails):
        started = time.monotonic()
        tail = tails(shared_gateway.url, "nothing/here", "--timeout", "1.5")

        assert tail.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
        assert tail.lines == []

    def test_resumes_after_gateway_restart(self, redis_server, gateway_factory, tails):
        gateway = gateway_factory(redis_server.url, workers=1, env=FAST_RECONNECT)
        feed = Feed(redis_server.url, 2)
        feed.publish_all()
        tail = tails(gateway.url, "sport-livescore/*", "--changes", "--timeout", "60")
        tail.wait_for_lines(lambda lines: len(lines) >= 2, description="two snapshots")
        before = feed.tick(3)
        tail.wait_for_lines(lambda lines: len(lines) >= 2 + before, description="the first deltas")

        gateway.stop()
        # One tick: the missed deltas stay smaller than the documents, so the
        # gateway replays them instead of sending snapshots.
        while_down = feed.tick(1)
        gateway_factory(redis_server.url, workers=1, env=FAST_RECONNECT, port=gateway.port)
        wait_for(lambda: tail.stderr.count("resuming after") >= 1, timeout=20,
                 message="the client's reconnect to the new gateway")
        after = feed.tick(2)

        expected = {channel: (feed.versions[channel], feed.published[channel]) for channel in feed.published}
        tail.wait_for_lines(lambda lines: mirror_of_changes(lines) == expected, timeout=20,
                            description="the published documents after the restart")
        tail.stop()
        events = [line["event"] for line in tail.lines]
        assert "resynchronising" not in tail.stderr, f"the stream had a gap:\n{tail.stderr}"
        assert events.count("snapshot") == 2, f"the client received snapshots again:\n{tail.stderr}"
        assert events.count("delta") == before + while_down + after

    def test_invalid_channel_exits_1(self, shared_gateway, tails):
        tail = tails(shared_gateway.url, "bad channel!", "--timeout", "10")

        assert tail.wait(timeout=15) == 1
        assert "HTTP 400" in tail.stderr
        assert "invalid_channel" in tail.stderr


class TestSubscriptionLive:
    def test_resumes_after_frozen_connection(self, redis_server_module, shared_gateway):
        feed = Feed(redis_server_module.url, 1, prefix="frozen")
        feed.publish_all()
        channel = feed.channel(feed.matches[0])
        received: list[Update] = []

        with FreezingProxy(shared_gateway.port) as proxy:
            subscription = Subscription(f"http://127.0.0.1:{proxy.port}", [channel], read_timeout=2.5)
            reader = threading.Thread(target=lambda: received.extend(subscription), daemon=True)
            reader.start()
            try:
                wait_for(lambda: len(received) >= 1, timeout=10, message="the snapshot")
                assert proxy.freeze(lambda sent: b"GET /v1/stream" in sent) == 1
                # The proxy checks the flag between reads of up to 50 ms, so a
                # read already in progress would still pass the next bytes.
                time.sleep(0.3)
                missed = feed.tick(2)

                wait_for(lambda: len(received) >= 1 + missed, timeout=15, message="the missed deltas")
            finally:
                subscription.close()
                reader.join(timeout=5)

        assert [update.event for update in received] == ["snapshot"] + ["delta"] * missed
        assert received[-1].document == feed.published[channel]
        assert received[-1].version == feed.versions[channel]
        assert subscription.reconnects >= 1
        assert subscription.connections >= 2


class RecordingTransport(httpx.HTTPTransport):
    """httpx's own transport, keeping the headers of every response it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.response_headers: list[httpx.Headers] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.response_headers.append(response.headers)
        return response


class TestSubscriptionGzip:
    def test_decodes_compressed_stream(self, redis_server, gateway_factory):
        # httpx sends Accept-Encoding: gzip by default and decodes each read as it arrives.
        gateway = gateway_factory(redis_server.url, workers=1,
                                  env={"LIVEGATE_STREAM_COMPRESSION": "gzip",
                                       "LIVEGATE_HEARTBEAT_INTERVAL": "1"})
        feed = Feed(redis_server.url, 2, prefix="gzip-client")
        feed.publish_all()
        transport = RecordingTransport()
        subscription = Subscription(gateway.url, ["gzip-client/*"], transport=transport)
        received: list[Update] = []
        reader = threading.Thread(target=lambda: received.extend(subscription), daemon=True)
        reader.start()
        try:
            wait_for(lambda: len(received) >= 2, timeout=10, message="two snapshots")
            changed = feed.tick(3)
            # The stream stays open, so every delta was decoded from the
            # bytes received so far, not at the end of the body.
            wait_for(lambda: len(received) >= 2 + changed, timeout=15, message="the deltas")
        finally:
            subscription.close()
            reader.join(timeout=5)

        assert transport.response_headers[0]["content-encoding"] == "gzip"
        assert [update.event for update in received] == ["snapshot"] * 2 + ["delta"] * changed
        assert subscription.documents == {
            channel: ChannelDocument(feed.published[channel], feed.versions[channel])
            for channel in feed.published
        }
        assert subscription.connections == 1


# --- scripted responses ------------------------------------------------------------------


def sse_body(*events: tuple[str, Optional[str], Any], retry_ms: Optional[int] = None) -> bytes:
    frames = [f"retry: {retry_ms}\n\n"] if retry_ms is not None else []
    for event, event_id, data in events:
        frame = f"event: {event}\n"
        if event_id:
            frame += f"id: {event_id}\n"
        frames.append(frame + f"data: {json.dumps(data)}\n\n")
    return "".join(frames).encode()


class ScriptedGateway:
    """An httpx transport that returns the next of a list of responses to each stream request."""

    def __init__(self, responses: list[httpx.Response]) -> None:
        self.responses = responses
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) <= len(self.responses):
            return self.responses[len(self.requests) - 1]
        return httpx.Response(503, text="script exhausted")

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def event_stream(body: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=body)


def take(subscription: Subscription, count: int) -> list[Update]:
    updates = []
    for update in subscription:
        updates.append(update)
        if len(updates) == count:
            subscription.close()
    return updates


CHANNEL = "news/1"


class TestSubscriptionScripted:
    def test_failed_patch_resynchronises(self):
        bad_patch = [{"op": "replace", "path": "/score", "value": 1}, {"op": "remove", "path": "/missing"}]
        script = ScriptedGateway([
            event_stream(sse_body(
                ("snapshot", "e-1", {"channel": CHANNEL, "version": 1, "data": {"score": 0}}),
                ("delta", "e-2", {"channel": CHANNEL, "version": 2, "patch": bad_patch}),
                retry_ms=10,
            )),
            event_stream(sse_body(
                ("snapshot", "e-3", {"channel": CHANNEL, "version": 2, "data": {"score": 1}}),
            )),
        ])
        subscription = Subscription("http://gateway.test", [CHANNEL], transport=script.transport())

        updates = take(subscription, 2)

        assert [(u.event, u.version, u.document) for u in updates] == [
            ("snapshot", 1, {"score": 0}), ("snapshot", 2, {"score": 1}),
        ]
        assert subscription.resyncs == 1
        assert "last-event-id" not in script.requests[1].headers
        assert subscription.last_event_id == "e-3"

    def test_version_gap_resynchronises(self):
        script = ScriptedGateway([
            event_stream(sse_body(
                ("snapshot", "e-1", {"channel": CHANNEL, "version": 1, "data": {}}),
                ("delta", "e-3", {"channel": CHANNEL, "version": 3, "patch": []}),
                retry_ms=10,
            )),
            event_stream(sse_body(("snapshot", "e-4", {"channel": CHANNEL, "version": 3, "data": {"a": 1}}))),
        ])
        subscription = Subscription("http://gateway.test", [CHANNEL], transport=script.transport())

        updates = take(subscription, 2)

        assert [u.version for u in updates] == [1, 3]
        assert subscription.resyncs == 1

    def test_view_delta_applies_from_base_version(self):
        script = ScriptedGateway([
            event_stream(sse_body(
                ("snapshot", "e-1", {"channel": CHANNEL, "version": 2, "data": {"score": 0}}),
                # Versions 3 and 4 changed nothing in the view; the patch applies to 2.
                ("delta", "e-5", {"channel": CHANNEL, "version": 5, "base_version": 1,
                                  "patch": [{"op": "replace", "path": "/score", "value": 1}]}),
                ("delta", "e-9", {"channel": CHANNEL, "version": 9, "base_version": 7,
                                  "patch": []}),
                retry_ms=10,
            )),
            event_stream(sse_body(("snapshot", "e-10", {"channel": CHANNEL, "version": 9,
                                                        "data": {"score": 2}}))),
        ])
        subscription = Subscription("http://gateway.test", [CHANNEL], transport=script.transport())

        updates = take(subscription, 3)

        assert [(u.event, u.version, u.document) for u in updates] == [
            ("snapshot", 2, {"score": 0}), ("delta", 5, {"score": 1}), ("snapshot", 9, {"score": 2}),
        ]
        assert subscription.resyncs == 1

    def test_reconnect_sends_last_event_id(self):
        script = ScriptedGateway([
            event_stream(sse_body(("snapshot", "e-1", {"channel": CHANNEL, "version": 1, "data": [1]}),
                                  retry_ms=10)),
            event_stream(sse_body(("delta", "e-2", {"channel": CHANNEL, "version": 2,
                                                    "patch": [{"op": "add", "path": "/-", "value": None}]}))),
        ])
        subscription = Subscription("http://gateway.test", [CHANNEL, "sport/*"], transport=script.transport())

        updates = take(subscription, 2)

        assert updates[1].document == [1, None]
        assert updates[1].patch == [{"op": "add", "path": "/-", "value": None}]
        assert "last-event-id" not in script.requests[0].headers
        assert script.requests[1].headers["last-event-id"] == "e-1"
        assert script.requests[1].url.params.get_list("channel") == [CHANNEL, "sport/*"]
        assert subscription.retry_seconds == pytest.approx(0.01)

    def test_repeated_delta_skipped(self):
        patch = [{"op": "add", "path": "/-", "value": 2}]
        script = ScriptedGateway([
            event_stream(sse_body(
                ("snapshot", "e-1", {"channel": CHANNEL, "version": 1, "data": [1]}),
                ("delta", "e-2", {"channel": CHANNEL, "version": 2, "patch": patch}),
                ("delta", "e-2", {"channel": CHANNEL, "version": 2, "patch": patch}),
                ("delta", "e-3", {"channel": CHANNEL, "version": 3, "patch": patch}),
            )),
        ])
        subscription = Subscription("http://gateway.test", [CHANNEL], transport=script.transport())

        updates = take(subscription, 3)

        assert [u.version for u in updates] == [1, 2, 3]
        assert updates[-1].document == [1, 2, 2]
        assert subscription.resyncs == 0

    def test_since_with_documents_resumes(self):
        script = ScriptedGateway([event_stream(sse_body(
            ("delta", "e-8", {"channel": CHANNEL, "version": 8,
                              "patch": [{"op": "replace", "path": "/a", "value": 1}]})))])
        subscription = Subscription("http://gateway.test", [CHANNEL], since="e-7",
                                    documents={CHANNEL: ChannelDocument({"a": 0}, 7)},
                                    transport=script.transport())

        updates = take(subscription, 1)

        assert (updates[0].version, updates[0].document) == (8, {"a": 1})
        assert script.requests[0].headers["last-event-id"] == "e-7"

    def test_since_without_documents_resynchronises(self):
        script = ScriptedGateway([
            event_stream(sse_body(("delta", "e-8", {"channel": CHANNEL, "version": 8, "patch": []}),
                                  retry_ms=10)),
            event_stream(sse_body(("snapshot", "e-9", {"channel": CHANNEL, "version": 8, "data": {}}))),
        ])
        subscription = Subscription("http://gateway.test", [CHANNEL], since="e-7",
                                    transport=script.transport())

        updates = take(subscription, 1)

        assert updates[0].event == "snapshot"
        assert subscription.resyncs == 1
        assert script.requests[0].headers["last-event-id"] == "e-7"
        assert "last-event-id" not in script.requests[1].headers

    @pytest.mark.parametrize("status", [400, 401, 404])
    def test_error_status_raises(self, status):
        script = ScriptedGateway([httpx.Response(status, json={"error": "invalid_channel"})])
        subscription = Subscription("http://gateway.test", [CHANNEL], transport=script.transport())

        with pytest.raises(StreamRejected) as raised:
            next(iter(subscription))

        assert raised.value.status_code == status
        assert "invalid_channel" in str(raised.value)
        assert len(script.requests) == 1

    def test_backoff_grows_and_honours_retry_after(self):
        script = ScriptedGateway([httpx.Response(503, headers={"Retry-After": "7"}, text="shutting down")] +
                                 [httpx.Response(503, text="busy")] * 7)
        subscription = Subscription("http://gateway.test", [CHANNEL], max_backoff=8.0,
                                    transport=script.transport())
        delays: list[float] = []

        class RecordingStop(threading.Event):
            """Records each reconnect delay instead of sleeping, and stops after eight."""

            def wait(self, timeout: Optional[float] = None) -> bool:
                delays.append(timeout)
                if len(delays) == 8:
                    self.set()
                return self.is_set()

        subscription._stopped = RecordingStop()

        assert list(subscription) == []

        assert delays[0] == 7.0
        assert 0.5 <= delays[1] <= 2.0
        ceilings = [min(8.0, 2.0 ** failures) for failures in range(2, 8)]
        for delay, ceiling in zip(delays[2:], ceilings):
            assert ceiling / 2 <= delay <= ceiling
        assert max(delays[1:]) <= 8.0


class TestStreamUrl:
    @pytest.mark.parametrize("given, expected", [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1/stream"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1/stream"),
        ("https://example.org/live", "https://example.org/live/v1/stream"),
        ("http://127.0.0.1:8000/v1/stream", "http://127.0.0.1:8000/v1/stream"),
        ("http://127.0.0.1:8000/v1/stream?channel=a", "http://127.0.0.1:8000/v1/stream"),
    ])
    def test_endpoint(self, given, expected):
        assert stream_url(given) == expected

    def test_invalid_scheme(self):
        with pytest.raises(ValueError, match="http"):
            stream_url("ftp://example.org")
