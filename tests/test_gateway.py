"""End-to-end: publish -> Redis -> subscriber -> ring -> gevent workers -> SSE.

Real redis-server, real gunicorn with two gevent workers, real SSE clients.
"""

from __future__ import annotations

import random
import signal
import time

import httpx
import pytest
import redis

from ingest.publisher import Publisher
from tests.support.gateway import Gateway
from tests.support.mirror import Mirror
from tests.support.sse import RawSSEReader, SSEClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(redis_server_module, tmp_path_factory):
    server = Gateway(
        redis_server_module.url, workers=2,
        env={"LIVEGATE_KEY_PREFIX": "gw", "LIVEGATE_HEARTBEAT_INTERVAL": "1"},
        log_dir=tmp_path_factory.mktemp("gateway"),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def publisher(redis_server_module):
    return Publisher(redis.Redis.from_url(redis_server_module.url), key_prefix="gw")


def stream(gateway, *channels, **options) -> SSEClient:
    client = SSEClient(f"{gateway.url}/v1/stream", params=[("channel", c) for c in channels],
                       **options)
    client.start()
    assert client.status_code == 200, client.body
    return client


def random_document(rng: random.Random, channel: str) -> dict:
    return {
        "channel": channel,
        "score": [rng.randint(0, 5), rng.randint(0, 5)],
        "minute": rng.randint(0, 90),
        "events": [{"id": i, "minute": rng.randint(0, 90)} for i in range(rng.randint(0, 6))],
        "note": rng.choice([None, "line one\nline two", "quote \" and \u2028", "plain"]),
        "stats": {"shots": rng.randint(0, 20), "flags": [rng.random() < 0.5 for _ in range(3)]},
    }


def mutate_document(rng: random.Random, document: dict) -> dict:
    changed = {**document, "stats": dict(document["stats"])}
    choice = rng.randrange(4)
    if choice == 0:
        changed["score"] = [document["score"][0] + 1, document["score"][1]]
    elif choice == 1:
        changed["minute"] = document["minute"] + 1
    elif choice == 2:
        changed["events"] = document["events"] + [{"id": len(document["events"]), "minute": 1}]
    else:
        changed["stats"]["shots"] += 1
    return changed


class TestSnapshotThenDeltas:
    def test_clients_end_with_published_documents(self, gateway, publisher):
        rng = random.Random(7)
        channels = [f"e2e/m{i}" for i in range(20)]
        documents = {}
        # Half the channels exist before the clients connect.
        for channel in channels[:10]:
            documents[channel] = random_document(rng, channel)
            publisher.publish(channel, documents[channel])

        subscriptions = [("e2e/*",)] * 4 + [tuple(rng.sample(channels, 5)) for _ in range(6)]
        clients = [stream(gateway, *wanted) for wanted in subscriptions]
        try:
            for _ in range(300):
                channel = rng.choice(channels)
                if channel in documents and rng.random() < 0.8:
                    documents[channel] = mutate_document(rng, documents[channel])
                else:
                    documents[channel] = random_document(rng, channel)
                publisher.publish(channel, documents[channel])

            for client, wanted in zip(clients, subscriptions):
                expected = {
                    c: documents[c] for c in documents if c in wanted or "e2e/*" in wanted
                }

                def caught_up(events, client=client, expected=expected):
                    mirror = Mirror()
                    mirror.apply_events(events)
                    return mirror.documents() == expected and mirror

                try:
                    mirror = client.wait_for(caught_up, timeout=20)
                except TimeoutError:
                    mirror = Mirror()
                    mirror.apply_events(client.events)
                    got = mirror.documents()
                    diff = {c: (got.get(c), expected.get(c)) for c in set(got) | set(expected)
                            if got.get(c) != expected.get(c)}
                    raise AssertionError(f"{wanted}: {len(diff)} differ: {diff}"[:3000])
                assert mirror.deltas > 0
                for channel, state in mirror.channels.items():
                    # Live snapshots (a change larger than its patch) continue
                    # the version sequence; nothing is skipped or repeated.
                    versions = [version for run in state.runs for version in run]
                    assert versions == list(range(versions[0], versions[0] + len(versions)))
        finally:
            for client in clients:
                client.close()

        with httpx.Client(base_url=gateway.url) as http:
            for channel, document in documents.items():
                body = http.get(f"/v1/channels/{channel}").json()
                assert body["data"] == document

    def test_unchanged_publish_sends_nothing(self, gateway):
        with httpx.Client(base_url=gateway.url) as http:
            first = http.post("/v1/publish/same/doc", json={"a": 1}).json()
            client = stream(gateway, "same/doc")
            try:
                client.wait_for_count(1)
                second = http.post("/v1/publish/same/doc", json={"a": 1}).json()
                assert second["changed"] is False
                assert second["version"] == first["version"]
                http.post("/v1/publish/same/doc", json={"a": 2, "pad": "x" * 50})
                events = client.wait_for_count(2)
                assert [e.event for e in events] == ["snapshot", "snapshot"] or \
                    events[1].json()["version"] == first["version"] + 1
                assert len(client.events) == 2
            finally:
                client.close()


class TestPatterns:
    def test_star_matches_one_whole_segment(self, gateway, publisher):
        client = stream(gateway, "pat/*")
        try:
            publisher.publish("pat/b/c", {"deep": True})
            publisher.publish("patx/c", {"prefix": True})
            publisher.publish("pat", {"parent": True})
            publisher.publish("pat/b", {"match": True})
            events = client.wait_for_count(1)
            time.sleep(0.5)
            channels = [e.json()["channel"] for e in client.events]
            assert channels == ["pat/b"]
            assert events[0].event == "snapshot"
        finally:
            client.close()

    def test_new_channel_arrives_as_snapshot_then_deltas(self, gateway, publisher):
        client = stream(gateway, "late/**")
        try:
            # The stream's initial sync runs after its headers; a first event
            # shows it is done, so the channel below is created after it.
            publisher.publish("late/marker", {"ready": True})
            client.wait_for_count(1)
            base = {"team": "a fairly long team name", "score": [0, 0]}
            publisher.publish("late/x/1", base)
            publisher.publish("late/x/1", {**base, "score": [1, 0]})
            publisher.publish("late/x/1", {**base, "score": [2, 0]})
            events = client.wait_for_count(4)[1:]
            assert [e.json()["channel"] for e in events] == ["late/x/1"] * 3
            assert [e.event for e in events] == ["snapshot", "delta", "delta"]
            assert [e.json()["version"] for e in events] == [1, 2, 3]
        finally:
            client.close()


class TestHeartbeat:
    def test_idle_stream_receives_comments(self, gateway):
        reader = RawSSEReader(f"{gateway.url}/v1/stream", params={"channel": "idle/none"})
        reader.start()
        try:
            reader.wait_for(lambda raw: raw.count(b": heartbeat") >= 3, timeout=6)
            comments = reader.comment_lines()
            assert len(comments) >= 3
            assert "id:" not in reader.text
            times = [t for t, chunk in reader.chunks if b"heartbeat" in chunk]
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert all(0.7 <= gap <= 2.0 for gap in gaps), gaps
        finally:
            reader.close()

    def test_retry_comes_first_with_headers(self, gateway):
        reader = RawSSEReader(f"{gateway.url}/v1/stream", params={"channel": "idle/none"})
        reader.start()
        try:
            first = reader.wait_for(lambda raw: raw if raw else None, timeout=3)
            assert first.startswith(b"retry: ")
            headers = reader.response_headers
            assert headers["content-type"].startswith("text/event-stream")
            assert headers["cache-control"] == "no-cache"
            assert headers["x-accel-buffering"] == "no"
        finally:
            reader.close()


BAD_SUBSCRIPTIONS = [
    "", "a//b", "/a", "a/", "foo*", "a/b*", "**/a", "x" * 201,
    "a\x01b", "a\nb", "a\r\nevent: x", "caf\u00e9", "a b",
]


class TestBadInput:
    @pytest.mark.parametrize("value", BAD_SUBSCRIPTIONS)
    def test_bad_subscription_answers_400(self, gateway, value):
        with httpx.Client(base_url=gateway.url) as http:
            response = http.get("/v1/stream", params={"channel": value})
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert body["error"] == "invalid_channel"
        assert body["value"] == value[:200] + ("..." if len(value) > 200 else "")

    def test_bad_publish_channel_answers_400(self, gateway):
        with httpx.Client(base_url=gateway.url) as http:
            response = http.post("/v1/publish/a%0Ab", json={"a": 1})
        assert response.status_code == 400
        assert response.json()["value"] == "a\nb"

    def test_missing_channel_answers_400(self, gateway):
        with httpx.Client(base_url=gateway.url) as http:
            response = http.get("/v1/stream")
        assert response.status_code == 400
        assert response.json()["error"] == "missing_channel"

    def test_unknown_channel_answers_404(self, gateway):
        with httpx.Client(base_url=gateway.url) as http:
            response = http.get("/v1/channels/never/published")
        assert response.status_code == 404


class TestSubscriberRestart:
    def test_killed_subscriber_restarts_without_loss(self, gateway, publisher):
        client = stream(gateway, "restart/a")
        document = {"team": "a long enough team name", "n": 0}
        publisher.publish("restart/a", document)
        try:
            client.wait_for_count(1)
            old_pid = gateway.subscriber_pid()
            killed_at = time.monotonic()
            import os

            os.kill(old_pid, signal.SIGKILL)
            # Updates published while no subscriber runs are repaired from the log.
            for n in range(1, 6):
                document = {**document, "n": n}
                publisher.publish("restart/a", document)
            new_pid = wait_for(
                lambda: (pid := gateway.subscriber_pid()) not in (None, old_pid) and pid,
                timeout=5, interval=0.05,
            )
            assert time.monotonic() - killed_at < 2.5
            assert new_pid != old_pid
            for n in range(6, 9):
                document = {**document, "n": n}
                publisher.publish("restart/a", document)

            def caught_up(events):
                mirror = Mirror()
                mirror.apply_events(events)
                return mirror.documents().get("restart/a") == document and mirror

            mirror = client.wait_for(caught_up, timeout=10)
            versions = [v for run in mirror.channels["restart/a"].runs for v in run]
            assert versions == list(range(1, 10))
            gateway.wait_for_log("restarting", timeout=5)
        finally:
            client.close()

    def test_readyz_fails_while_subscriber_is_stopped(self, gateway):
        with httpx.Client(base_url=gateway.url, timeout=5) as http:
            assert http.get("/readyz").status_code == 200
            pid = gateway.subscriber_pid()
            import os

            os.kill(pid, signal.SIGSTOP)
            try:
                wait_for(lambda: http.get("/readyz").status_code == 503, timeout=8)
            finally:
                os.kill(pid, signal.SIGCONT)
            wait_for(lambda: http.get("/readyz").status_code == 200, timeout=8)
