"""``GET /metrics``: Prometheus text for the whole pod.

Counters and gauges of every worker and of the subscriber come from the
multiprocess files, so any worker reports all of them and the totals
stay right when a worker restarts. Ring positions are read from the ring
header at scrape time.
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from fanout import ring as ring_layout
from workers import hub as worker_hub

metrics = Blueprint("metrics", __name__)


class RingCollector:
    """Ring and subscriber state from the shared ring header."""

    def __init__(self, ring: ring_layout.Ring):
        self._ring = ring

    def collect(self):
        ring = self._ring
        yield GaugeMetricFamily("livegate_ring_capacity_bytes", "Data capacity of the ring.",
                                value=ring.capacity)
        commit = ring.commit_pos
        yield GaugeMetricFamily("livegate_ring_write_position_bytes",
                                "Bytes written into the ring since the pod started.",
                                value=commit)
        lag = GaugeMetricFamily("livegate_ring_reader_lag_bytes",
                                "Bytes each worker's ring reader is behind the writer.",
                                labels=["slot"])
        for index, _ in ring.active_slots():
            slot = ring.slot_status(index)
            lag.add_metric([str(index)], max(0, commit - slot.read_pos))
        yield lag
        status = ring.subscriber_status()
        up = status.state == ring_layout.SUBSCRIBER_CONNECTED
        yield GaugeMetricFamily("livegate_subscriber_connected",
                                "1 when the subscriber is connected to Redis.", value=int(up))
        yield GaugeMetricFamily("livegate_subscriber_heartbeat_age_seconds",
                                "Seconds since the subscriber's last sign of life.",
                                value=max(0.0, time.time() - status.heartbeat))
        yield GaugeMetricFamily("livegate_subscriber_last_seq",
                                "Last global seq the subscriber wrote into the ring.",
                                value=status.last_seq)


def pod_registry() -> CollectorRegistry:
    """Build a registry with every process's metrics and the ring's state."""
    registry = CollectorRegistry()
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        MultiProcessCollector(registry, path=path)
    hub = worker_hub.current()
    if hub is not None:
        registry.register(RingCollector(hub.ring))
    return registry


@metrics.get("/metrics")
def prometheus_metrics():
    # Set as a header: as a mimetype Werkzeug would add a second charset.
    return Response(generate_latest(pod_registry()), headers={"Content-Type": CONTENT_TYPE_LATEST})
