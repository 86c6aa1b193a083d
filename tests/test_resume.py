"""Resuming streams: Last-Event-ID and ?since= across reconnects, gateways and pod kills.

A client that reconnects with the id of the last event it received must get, per
channel, exactly the deltas it missed, in order, or a snapshot when recent history
no longer covers its point. ResumingClient checks that no version arrives twice and
none is skipped without a snapshot, across all of a client's connections.
"""

from __future__ import annotations

import random
import re
import threading
import time
from typing import Any

import httpx
import pytest
import redis

from ingest.publisher import Publisher
from tests.support.clients import (
    ResumingClient, assert_replayed_exactly, split_event_id, versions_by_channel,
)
from tests.support.gateway import Gateway
from tests.support.sse import RawSSEReader
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PREFIX = "resume"
# Gateways of this module trim each channel log to 5 entries when they publish
# (POST /v1/publish). The Publisher of these tests keeps its default of 200. A short
# shutdown window keeps teardown quick.
GATEWAY_ENV = {
    "LIVEGATE_KEY_PREFIX": PREFIX,
    "LIVEGATE_CHANNEL_LOG_LENGTH": "5",
    "LIVEGATE_HEARTBEAT_INTERVAL": "1",
    "LIVEGATE_SHUTDOWN_WINDOW": "0.5",
}
# A long constant field keeps each patch smaller than its document, so that changes
# travel as deltas rather than as snapshots.
PAD = "constant text that makes every patch smaller than its document " * 16


def new_document(channel: str) -> dict[str, Any]:
    return {"channel": channel, "pad": PAD, "n": 0, "score": [0, 0]}


def next_document(document: dict[str, Any]) -> dict[str, Any]:
    n = document["n"] + 1
    return {**document, "n": n, "score": [document["score"][0] + n % 2, document["score"][1] + 1 - n % 2]}


def publish_round(publisher: Publisher, documents: dict[str, Any]) -> str:
    """Publish the next version of every document. Returns the id of the last publish."""
    last_id = ""
    for channel, document in documents.items():
        documents[channel] = next_document(document)
        result = publisher.publish(channel, documents[channel])
        assert result.changed, f"publish to {channel} changed nothing"
        last_id = result.id
    return last_id


def settle(client: ResumingClient, seconds: float = 0.5) -> None:
    """Give late or duplicate events time to arrive, then apply them."""
    time.sleep(seconds)
    client.sync()


@pytest.fixture(scope="module")
def gateways(redis_server_module, tmp_path_factory):
    """Two gateways on one Redis, as two pods of one installation."""
    log_dir = tmp_path_factory.mktemp("gateways")
    first = Gateway(redis_server_module.url, workers=2, env=GATEWAY_ENV, log_dir=log_dir)
    second = Gateway(redis_server_module.url, workers=2, env=GATEWAY_ENV, log_dir=log_dir)
    first.start()
    try:
        second.start()
        yield first, second
    finally:
        second.stop()
        first.stop()


@pytest.fixture(scope="module")
def publisher(redis_server_module):
    return Publisher(redis.Redis.from_url(redis_server_module.url), key_prefix=PREFIX)


@pytest.fixture(scope="module")
def http(gateways):
    with httpx.Client(base_url=gateways[0].url, timeout=10) as client:
        yield client


def seed_from_gateway(client: ResumingClient, http: httpx.Client, channels: list[str]) -> str:
    """Hold each channel's current document as GET /v1/channels/<channel> returns it.

    Returns the greatest id read, which is a resume point for all of them as long as
    nothing is published while they are read.
    """
    ids = []
    for channel in channels:
        body = http.get(f"/v1/channels/{channel}").json()
        client.seed(channel, body["version"], body["data"], body["id"])
        ids.append(body["id"])
    return max(ids, key=lambda event_id: split_event_id(event_id)[1])


class TestResume:
    @pytest.mark.parametrize("target", ["same", "other"])
    def test_reconnect_replays_missed_deltas(self, gateways, publisher, target):
        first, second = gateways
        channels = [f"resume-{target}/m{i}" for i in range(4)]
        documents = {channel: new_document(channel) for channel in channels}
        for channel, document in documents.items():
            publisher.publish(channel, document)

        client = ResumingClient(channels, name=f"resume-{target}")
        client.connect(first.url)
        assert client.connected
        client.wait_for_documents(documents)
        for _ in range(2):
            publish_round(publisher, documents)
        client.wait_for_documents(documents)
        client.disconnect()
        first_kinds = [event.event for event in client.connection_events()]
        assert first_kinds[:4] == ["snapshot"] * 4
        assert first_kinds[4:] == ["delta"] * 8

        for _ in range(3):
            publish_round(publisher, documents)
        client.connect((first if target == "same" else second).url)
        assert client.connected
        client.wait_for_documents(documents)
        settle(client)

        replayed = client.connection_events()
        assert [event.event for event in replayed] == ["delta"] * 12
        assert versions_by_channel(replayed) == {channel: [4, 5, 6] for channel in channels}
        assert client.violations == []
        assert client.documents() == documents
        client.disconnect()

    def test_since_resumes_first_connect(self, gateways, publisher, http):
        _, second = gateways
        channels = [f"since/m{i}" for i in range(3)]
        documents = {channel: new_document(channel) for channel in channels}
        for channel, document in documents.items():
            publisher.publish(channel, document)
        publish_round(publisher, documents)

        client = ResumingClient(channels, name="since")
        token = seed_from_gateway(client, http, channels)
        client.last_event_id = None
        for _ in range(2):
            publish_round(publisher, documents)

        client.connect(second.url, since=token)
        assert client.connected
        client.wait_for_documents(documents)
        settle(client)

        replayed = client.connection_events()
        assert [event.event for event in replayed] == ["delta"] * 6
        assert versions_by_channel(replayed) == {channel: [3, 4] for channel in channels}
        assert client.violations == []
        client.disconnect()

    def test_header_wins_over_since(self, gateways, publisher, http):
        first, _ = gateways
        channels = [f"header-wins/m{i}" for i in range(3)]
        documents = {channel: new_document(channel) for channel in channels}
        for channel, document in documents.items():
            publisher.publish(channel, document)
        older_token = publish_round(publisher, documents)
        publish_round(publisher, documents)

        client = ResumingClient(channels, name="header-wins")
        newer_token = seed_from_gateway(client, http, channels)
        for _ in range(2):
            publish_round(publisher, documents)

        # The client has version 3, so a replay from the older token would repeat version 3.
        assert client.last_event_id == newer_token
        client.connect(first.url, since=older_token)
        assert client.connected
        client.wait_for_documents(documents)
        settle(client)

        replayed = client.connection_events()
        assert [event.event for event in replayed] == ["delta"] * 6
        assert versions_by_channel(replayed) == {channel: [4, 5] for channel in channels}
        assert client.violations == []
        client.disconnect()


def current_epoch(publisher: Publisher, channel: str) -> tuple[str, int]:
    """Publish once to `channel` and return the epoch and seq of that publish."""
    result = publisher.publish(channel, {"probe": time.monotonic_ns()})
    return split_event_id(result.id)


INVALID_TOKENS = [
    pytest.param("garbage", id="no-separator"),
    pytest.param("-", id="separator-only"),
    pytest.param("abc-", id="no-seq"),
    pytest.param("abc-x1", id="seq-not-digits"),
    pytest.param("ABC-1", id="epoch-uppercase"),
    pytest.param("ab_c-1", id="epoch-underscore"),
    pytest.param("a" * 17 + "-1", id="epoch-too-long"),
    pytest.param("abc-" + "9" * 20, id="seq-too-long"),
    pytest.param("abc--1", id="seq-negative"),
    pytest.param("", id="empty"),
]


@pytest.fixture(scope="module")
def edge_documents(publisher):
    """Three channels at version 2, for tests that expect snapshots of them."""
    names = [f"edge/m{i}" for i in range(3)]
    documents = {name: new_document(name) for name in names}
    for name, document in documents.items():
        publisher.publish(name, document)
    publish_round(publisher, documents)
    return documents


class TestEventIdEdgeCases:
    def assert_snapshots(self, client: ResumingClient, documents: dict[str, Any]) -> None:
        client.wait_for_documents(documents, timeout=5)
        settle(client, 0.3)
        received = client.connection_events()
        assert [event.event for event in received] == ["snapshot"] * len(documents)
        assert sorted(event.channel for event in received) == sorted(documents)
        assert client.violations == []

    @pytest.mark.parametrize("send", ["header", "since"])
    @pytest.mark.parametrize("token", INVALID_TOKENS)
    def test_invalid_token_gets_snapshots(self, gateways, edge_documents, token, send):
        client = ResumingClient(list(edge_documents), last_event_id=token if send == "header" else None)
        client.connect(gateways[0].url, since=token if send == "since" else None)
        assert client.connected
        try:
            self.assert_snapshots(client, edge_documents)
        finally:
            client.disconnect()

    @pytest.mark.parametrize("send", ["header", "since"])
    def test_unknown_epoch_gets_snapshots(self, gateways, publisher, edge_documents, send):
        epoch, seq = current_epoch(publisher, "edge/probe")
        other_epoch = ("z" if epoch[0] != "z" else "y") + epoch[1:]
        token = f"{other_epoch}-{seq}"
        client = ResumingClient(list(edge_documents), last_event_id=token if send == "header" else None)
        client.connect(gateways[1].url, since=token if send == "since" else None)
        assert client.connected
        try:
            self.assert_snapshots(client, edge_documents)
        finally:
            client.disconnect()

    @pytest.mark.parametrize("send", ["header", "since"])
    def test_future_seq_gets_snapshots(self, gateways, publisher, edge_documents, send):
        epoch, seq = current_epoch(publisher, "edge/probe")
        token = f"{epoch}-{seq + 1000}"
        client = ResumingClient(list(edge_documents), last_event_id=token if send == "header" else None)
        client.connect(gateways[0].url, since=token if send == "since" else None)
        assert client.connected
        try:
            self.assert_snapshots(client, edge_documents)
        finally:
            client.disconnect()

    def test_current_token_waits_for_update(self, gateways, publisher, http):
        channel = "edge/current"
        documents = {channel: new_document(channel)}
        publisher.publish(channel, documents[channel])
        publish_round(publisher, documents)
        client = ResumingClient([channel], name="current")
        seed_from_gateway(client, http, [channel])

        client.connect(gateways[1].url)
        assert client.connected
        settle(client, 1.0)
        assert client.connection_events() == []

        publish_round(publisher, documents)
        client.wait_for_documents(documents, timeout=5)
        received = client.connection_events()
        assert [(event.event, event.version) for event in received] == [("delta", 3)]
        assert client.violations == []
        client.disconnect()

    def test_heartbeat_has_no_id(self, gateways, publisher):
        channel = "edge/heartbeat"
        documents = {channel: new_document(channel)}
        publisher.publish(channel, documents[channel])
        reader = RawSSEReader(f"{gateways[0].url}/v1/stream", params={"channel": channel})
        reader.start()
        try:
            reader.wait_for_bytes(b"event: snapshot")
            publish_round(publisher, documents)
            reader.wait_for_bytes(b"event: delta")
            # The gateway's heartbeat interval is 1 s, so two idle seconds bring comments.
            raw = reader.wait_for(lambda body: body.count(b": heartbeat") >= 2 and body, timeout=6)
        finally:
            reader.close()

        blocks = raw.decode().split("\n\n")
        comment_blocks = [block for block in blocks if block.startswith(":")]
        event_blocks = [block for block in blocks if block.startswith("event:")]
        assert len(comment_blocks) >= 2
        assert len(event_blocks) == 2
        for block in comment_blocks:
            assert not re.search(r"^id:", block, re.MULTILINE), block
        for block in event_blocks:
            assert re.search(r"^id: [a-z0-9]+-\d+$", block, re.MULTILINE), block

    def test_token_older_than_log_gets_snapshot(self, gateways, http, redis_server_module, gateway_factory):
        channel = "edge/short-log"
        document = new_document(channel)
        published = []
        for _ in range(12):
            response = http.post(f"/v1/publish/{channel}", json=document)
            assert response.status_code == 200, response.text
            published.append((response.json(), document))
            document = next_document(document)
        final = published[-1][1]
        # The gateway publishes with LIVEGATE_CHANNEL_LOG_LENGTH=5.
        assert redis_server_module.client().zcard(f"{PREFIX}:log:{channel}") == 5

        # The gateways that were running hold these frames in their rings and may
        # replay them from there. A gateway started now reads the Redis log instead,
        # once its one worker has dispatched a later frame.
        fresh = gateway_factory(redis_server_module.url, workers=1, env=GATEWAY_ENV)
        tick = ResumingClient(["edge/tick"], name="tick")
        tick.connect(fresh.url)
        tick_document = {"tick": time.monotonic_ns()}
        http.post("/v1/publish/edge/tick", json=tick_document)
        tick.wait_for_documents({"edge/tick": tick_document})
        tick.disconnect()

        stale = ResumingClient([channel], name="stale")
        old_result, old_document = published[1]
        stale.seed(channel, old_result["version"], old_document, old_result["id"])
        stale.connect(fresh.url)
        assert stale.connected
        stale.wait_for_documents({channel: final})
        settle(stale, 0.3)
        assert [(event.event, event.version) for event in stale.connection_events()] == [("snapshot", 12)]
        assert stale.violations == []
        stale.disconnect()

        recent = ResumingClient([channel], name="recent")
        recent_result, recent_document = published[8]
        recent.seed(channel, recent_result["version"], recent_document, recent_result["id"])
        recent.connect(fresh.url)
        assert recent.connected
        recent.wait_for_documents({channel: final})
        settle(recent, 0.3)
        received = [(event.event, event.version) for event in recent.connection_events()]
        assert received == [("delta", 10), ("delta", 11), ("delta", 12)]
        assert recent.violations == []
        recent.disconnect()


class TestPodKill:
    def test_client_resumes_on_other_pod(self, redis_server, gateway_factory):
        first = gateway_factory(redis_server.url, env=GATEWAY_ENV)
        second = gateway_factory(redis_server.url, env=GATEWAY_ENV)
        publisher = Publisher(redis_server.client(), key_prefix=PREFIX)
        channels = [f"pod/m{i}" for i in range(3)]
        documents = {channel: new_document(channel) for channel in channels}
        for channel, document in documents.items():
            publisher.publish(channel, document)
        publish_round(publisher, documents)

        client = ResumingClient(channels, name="pod-kill")
        client.connect(first.url)
        assert client.connected
        client.wait_for_documents(documents)

        first.kill()
        publish_round(publisher, documents)
        # Orphaned workers see that their master is gone within about a second.
        wait_for(lambda: client.sse.finished, timeout=10, message="stream of the killed pod to end")
        client.disconnect()
        versions_before = client.mirror.versions()
        for _ in range(3):
            publish_round(publisher, documents)

        client.connect(second.url)
        assert client.connected
        client.wait_for_documents(documents)
        settle(client)
        assert_replayed_exactly(client, versions_before, client.mirror.versions())
        assert client.mirror.versions() == {channel: 6 for channel in channels}
        assert client.violations == []
        client.disconnect()

    def test_client_resumes_on_restarted_pod(self, redis_server, gateway_factory):
        first = gateway_factory(redis_server.url, env=GATEWAY_ENV)
        publisher = Publisher(redis_server.client(), key_prefix=PREFIX)
        channels = [f"restarted/m{i}" for i in range(3)]
        documents = {channel: new_document(channel) for channel in channels}
        for channel, document in documents.items():
            publisher.publish(channel, document)
        publish_round(publisher, documents)

        client = ResumingClient(channels, name="restarted-pod")
        client.connect(first.url)
        assert client.connected
        client.wait_for_documents(documents)
        first.kill()
        wait_for(lambda: client.sse.finished, timeout=10, message="stream of the killed pod to end")
        client.disconnect()
        first.cleanup()
        versions_before = client.mirror.versions()
        for _ in range(3):
            publish_round(publisher, documents)

        # The replacement pod starts after the missed updates and nothing is
        # published while the client resumes on it. Debug logs show where the
        # resume was served from.
        restarted = gateway_factory(
            redis_server.url, env={**GATEWAY_ENV, "LIVEGATE_LOG_LEVEL": "debug"}, port=first.port
        )
        client.connect(restarted.url)
        assert client.connected
        client.wait_for_documents(documents, timeout=5)
        settle(client)
        assert_replayed_exactly(client, versions_before, client.mirror.versions())
        assert client.violations == []
        client.disconnect()

    @pytest.mark.slow
    def test_random_reconnects_and_kills(self, redis_server, gateway_factory):
        seed = 20240611
        print(f"seed {seed}")
        env = {**GATEWAY_ENV, "LIVEGATE_HEARTBEAT_INTERVAL": "2"}
        gateways = [gateway_factory(redis_server.url, env=env) for _ in range(2)]
        ports = [gateway.port for gateway in gateways]
        # A short channel log makes long absences end in snapshots, so both the
        # replay path and the snapshot path are taken.
        publisher = Publisher(redis_server.client(), key_prefix=PREFIX, channel_log_length=30)
        channels = [f"chaos/c{i}" for i in range(6)]
        documents = {channel: new_document(channel) for channel in channels}
        for channel, document in documents.items():
            publisher.publish(channel, document)

        subscriptions = [
            ["chaos/*"],
            ["chaos/c0", "chaos/c1", "chaos/c2"],
            ["chaos/**"],
            ["chaos/c3", "chaos/c4", "chaos/c5", "chaos/c0"],
        ]
        clients = [ResumingClient(channel_list, name=f"client{i}") for i, channel_list in enumerate(subscriptions)]
        errors: list[BaseException] = []
        # Clients keep reconnecting while updates or kills are still to come.
        publisher_done = threading.Event()
        killer_done = threading.Event()
        update_count = 1000
        kills: list[int] = []

        def publish_updates() -> None:
            rng = random.Random(seed)
            try:
                for _ in range(update_count):
                    channel = rng.choice(channels)
                    documents[channel] = next_document(documents[channel])
                    publisher.publish(channel, documents[channel])
                    time.sleep(rng.uniform(0, 0.02))
            except BaseException as error:
                errors.append(error)
            finally:
                publisher_done.set()

        def kill_gateways() -> None:
            rng = random.Random(seed + 100)
            try:
                for _ in range(3):
                    time.sleep(rng.uniform(0.5, 1.5))
                    index = rng.randrange(len(gateways))
                    victim = gateways[index]
                    victim.kill()
                    victim.cleanup()
                    kills.append(victim.port)
                    time.sleep(rng.uniform(0, 0.5))
                    gateways[index] = gateway_factory(redis_server.url, env=env, port=victim.port)
            except BaseException as error:
                errors.append(error)
            finally:
                killer_done.set()

        def run_client(client: ResumingClient, number: int) -> None:
            rng = random.Random(seed + number)
            try:
                for _ in range(300):
                    if publisher_done.is_set() and killer_done.is_set():
                        break
                    client.connect(f"http://127.0.0.1:{rng.choice(ports)}")
                    if not client.connected:
                        time.sleep(0.1)
                        continue
                    time.sleep(rng.uniform(0.05, 1.0))
                    client.disconnect()
                    time.sleep(rng.uniform(0, 0.3))
                client.disconnect()
            except BaseException as error:
                errors.append(error)

        threads = [
            threading.Thread(target=publish_updates, name="publisher"),
            threading.Thread(target=kill_gateways, name="killer"),
        ] + [
            threading.Thread(target=run_client, args=(client, number), name=client.name)
            for number, client in enumerate(clients)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        run_seconds = time.monotonic() - started

        def any_gateway() -> str:
            return f"http://127.0.0.1:{random.choice(ports)}"

        # Every client catches up at once, in its own thread, from a quiet system.
        unfinished: dict[str, str] = {}

        def catch_up(client: ResumingClient) -> None:
            expected = {
                channel: document
                for channel, document in documents.items()
                if any(
                    channel == subscription or (subscription.endswith("*") and channel.startswith("chaos/"))
                    for subscription in client.channels
                )
            }
            try:
                client.follow(any_gateway, expected, timeout=20)
            except TimeoutError as error:
                unfinished[client.name] = str(error)
            finally:
                client.disconnect()

        catch_up_threads = [threading.Thread(target=catch_up, args=(client,)) for client in clients]
        for thread in catch_up_threads:
            thread.start()
        for thread in catch_up_threads:
            thread.join(timeout=40)
        assert not any(thread.is_alive() for thread in catch_up_threads)
        for client in clients:
            print(
                f"{client.name}: {client.connections} connections, {client.failed_connects} failed, "
                f"{client.mirror.snapshots} snapshots, {client.mirror.deltas} deltas, "
                f"{len(client.violations)} violations, first: {client.violations[:3]}"
            )

        print(f"{update_count} updates in {run_seconds:.1f} s, gateways killed on ports {kills}")
        for client in clients:
            assert client.violations == [], client.name
        assert unfinished == {}
        assert len(kills) == 3
        for client in clients:
            assert client.connections > 5, client.name
