"""/metrics and /status against a real gateway with two workers."""

from __future__ import annotations

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from ingest.publisher import Publisher
from tests.support.gateway import Gateway
from tests.support.sse import SSEClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def scrape(gateway) -> dict[str, float]:
    """Return every sample of /metrics summed by name (labels dropped)."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


@pytest.fixture
def gateway(redis_server, tmp_path):
    server = Gateway(redis_server.url, workers=2, log_dir=tmp_path,
                     env={"LIVEGATE_HEARTBEAT_INTERVAL": "60"})
    server.start()
    yield server
    server.stop()


class TestMetrics:
    def test_counters_match_what_clients_received(self, gateway, redis_server):
        publisher = Publisher(redis.Redis.from_url(redis_server.url))
        document = {"team": "a constant team name that keeps patches small", "n": 0}
        publisher.publish("metrics/a", document)
        clients = []
        for index in range(6):
            channel = "metrics/*" if index % 2 else "metrics/a"
            client = SSEClient(f"{gateway.url}/v1/stream", params=[("channel", channel)])
            client.start()
            clients.append(client)
        try:
            for n in range(1, 11):
                document = {**document, "n": n}
                publisher.publish("metrics/a", document)
            for client in clients:
                client.wait_for(lambda events: any(e.json()["version"] == 11 for e in events))
            received = sum(len(client.events) for client in clients)

            def flushed():
                values = scrape(gateway)
                return values.get("livegate_frames_sent_total") == received and values

            values = wait_for(flushed, timeout=5, interval=0.3)
            assert values["livegate_connections"] == 6
            assert values["livegate_streams_opened_total"] == 6
            assert values["livegate_subscriptions"] == 6
            assert values["livegate_snapshots_sent_total"] == 6
            assert values["livegate_bytes_sent_total"] > 0
            assert values["livegate_subscriber_frames_written_total"] == 11
            assert values["livegate_publish_to_write_seconds_count"] == 11
            assert values["livegate_subscriber_connected"] == 1
            assert values["livegate_ring_write_position_bytes"] > 0
            assert values["livegate_ring_reader_lag_bytes"] == 0
        finally:
            for client in clients:
                client.close()

    def test_no_channel_names_in_labels(self, gateway, redis_server):
        publisher = Publisher(redis.Redis.from_url(redis_server.url))
        publisher.publish("secret-channel/1", {"a": 1})
        client = SSEClient(f"{gateway.url}/v1/stream", params=[("channel", "secret-channel/1")])
        client.start()
        try:
            client.wait_for_count(1)
            text = wait_for(
                lambda: (t := httpx.get(f"{gateway.url}/metrics").text)
                and "livegate_connections" in t and t,
                timeout=5,
            )
            assert "secret-channel" not in text
        finally:
            client.close()


class TestStatus:
    def test_status_json_lists_workers_and_channels(self, gateway, redis_server):
        publisher = Publisher(redis.Redis.from_url(redis_server.url))
        publisher.publish("status/top", {"a": 1})
        clients = [SSEClient(f"{gateway.url}/v1/stream", params=[("channel", "status/top")])
                   for _ in range(3)]
        for client in clients:
            client.start()
        try:
            def top_listed():
                body = httpx.get(f"{gateway.url}/status.json", timeout=5).json()
                return body["top_channels"] == [["status/top", 3]] and body

            body = wait_for(top_listed, timeout=6, interval=0.3)
            assert body["subscriber"]["ready"] is True
            assert body["redis"]["ok"] is True
            assert len(body["workers"]) == 2
            assert sum(worker["connections"] for worker in body["workers"]) == 3
            page = httpx.get(f"{gateway.url}/status", timeout=5)
            assert page.status_code == 200
            assert "livegate status" in page.text
        finally:
            for client in clients:
                client.close()
