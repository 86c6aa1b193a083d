"""Prometheus metrics of the subscriber process.

Imported only after the gunicorn master has set PROMETHEUS_MULTIPROC_DIR,
so the values land in files that the workers' /metrics aggregates.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

UPDATES_WRITTEN = Counter(
    "livegate_subscriber_frames_written_total",
    "Snapshot and delta frames the subscriber wrote into the ring.",
)
INVALID_MESSAGES = Counter(
    "livegate_subscriber_invalid_messages_total",
    "Bus messages skipped as invalid, by reason.",
    ["reason"],
)
GAP_REPAIRS = Counter(
    "livegate_subscriber_gap_repairs_total",
    "Gaps in the seq sequence, by how they were closed: from the log or by resync.",
    ["result"],
)
REDIS_RECONNECTS = Counter(
    "livegate_redis_reconnects_total",
    "Reconnections of the subscriber to Redis after an error or a lost probe.",
)
REDIS_OUTAGE_SECONDS = Counter(
    "livegate_redis_outage_seconds_total",
    "Seconds the subscriber spent without a working Redis subscription.",
)
PROBES_LOST = Counter(
    "livegate_subscriber_probes_lost_total",
    "Delivery probes that did not come back through Pub/Sub in time.",
)
ROLLBACKS = Counter(
    "livegate_subscriber_rollbacks_total",
    "Times Redis was found behind updates already written (a failover that lost "
    "writes), each followed by a new epoch.",
)
PUBLISH_TO_WRITE = Histogram(
    "livegate_publish_to_write_seconds",
    "Delay from the publish in Redis to the frame's write into the ring.",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)
