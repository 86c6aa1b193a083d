"""The subscriber notices a subscription that silently stopped delivering.

A proxy between the gateway and Redis freezes the subscriber's Pub/Sub
connection without closing it: no error reaches either side, only the
subscriber's own probe stops coming back.
"""

from __future__ import annotations

import pytest
import redis

from ingest.publisher import Publisher
from tests.support.gateway import Gateway
from tests.support.mirror import Mirror
from tests.support.proxy import FreezingProxy
from tests.support.sse import SSEClient

pytestmark = pytest.mark.integration


def test_frozen_subscription_is_replaced(redis_server, tmp_path):
    with FreezingProxy(redis_server.port) as proxy:
        gateway = Gateway(proxy.url, workers=1, log_dir=tmp_path,
                          env={"LIVEGATE_PROBE_INTERVAL": "0.5", "LIVEGATE_PROBE_TIMEOUT": "1"})
        gateway.start()
        try:
            publisher = Publisher(redis.Redis.from_url(redis_server.url))
            document = {"team": "a constant team name that keeps patches small", "n": 0}
            publisher.publish("probe/a", document)
            client = SSEClient(f"{gateway.url}/v1/stream", params=[("channel", "probe/a")])
            client.start()
            client.wait_for_count(1)

            frozen = proxy.freeze(lambda sent: b"SUBSCRIBE" in sent.upper())
            assert frozen == 1
            for n in range(1, 6):
                document = {**document, "n": n}
                publisher.publish("probe/a", document)

            def caught_up(events):
                mirror = Mirror()
                mirror.apply_events(events)
                return mirror.documents().get("probe/a") == document and mirror

            mirror = client.wait_for(caught_up, timeout=10)
            versions = [v for run in mirror.channels["probe/a"].runs for v in run]
            assert versions == list(range(1, 7))
            gateway.wait_for_log("did not come back through Pub/Sub", timeout=5)
            gateway.wait_for_log("redis connection restored", timeout=5)
            client.close()
        finally:
            gateway.stop()
