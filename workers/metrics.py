"""Prometheus metrics of a gevent worker.

The hot path only adds to plain integers in ``Hub.stats``; a greenlet
copies the increments into these metrics once a second, so a frame sent
to ten thousand streams costs no metric call per stream. Imported only in
workers, after the master has set PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import json
import logging
import os

import gevent
from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
TOP_CHANNELS = 10

CONNECTIONS = Gauge(
    "livegate_connections", "Open SSE streams, per worker process (pid label).",
    multiprocess_mode="liveall",
)
SUBSCRIPTIONS = Gauge(
    "livegate_subscriptions", "Subscriptions of open streams, by kind: exact or pattern.",
    ["kind"], multiprocess_mode="livesum",
)
WORKER_FRAMES_SENT = Gauge(
    "livegate_worker_frames_sent", "Frames this worker process has written since it started.",
    multiprocess_mode="liveall",
)

# Counter names map to keys of Hub.stats (or the heartbeat loop's count).
COUNTERS = {
    "frames_sent": Counter("livegate_frames_sent_total",
                           "SSE frames written to streams, heartbeats included."),
    "bytes_sent": Counter("livegate_bytes_sent_total",
                          "Bytes of SSE frames written to streams, before any compression."),
    "heartbeats": Counter("livegate_heartbeats_total", "Heartbeat comments queued."),
    "streams_opened": Counter("livegate_streams_opened_total", "SSE streams opened."),
    "slow_consumer_drops": Counter("livegate_slow_consumer_drops_total",
                                   "Streams closed because their queue passed its bound."),
    "snapshots_sent": Counter("livegate_snapshots_sent_total",
                              "Snapshots sent by initial syncs and resyncs."),
    "deltas_replayed": Counter("livegate_deltas_replayed_total",
                               "Missed deltas replayed to resuming streams."),
    "ring_overruns": Counter("livegate_ring_overruns_total",
                             "Times a worker's ring reader was overtaken by the writer."),
    "resyncs": Counter("livegate_resyncs_total",
                       "Resynchronisations of streams requested by the subscriber or an overrun."),
    "alias_switches": Counter("livegate_alias_switches_total",
                              "Alias changes applied from the ring."),
    "view_frames": Counter("livegate_view_frames_total",
                           "View frames built, one per view and change in each worker."),
    "view_resyncs": Counter("livegate_view_resyncs_total",
                            "Times the view streams of a channel resynchronised because a "
                            "delta did not follow the cached document."),
    "compressed_streams_opened": Counter("livegate_compressed_streams_opened_total",
                                         "Streams opened with a gzip response body."),
    "compression_input_bytes": Counter("livegate_compression_input_bytes_total",
                                       "Bytes that gzip streams passed to their compressors."),
    "compression_output_bytes": Counter("livegate_compression_output_bytes_total",
                                        "Bytes that the compressors of gzip streams returned."),
}
RESUMES = Counter("livegate_resumes_total", "Resumed streams, by source: ring or redis.",
                  ["source"])
RESUME_KEYS = {"resumes_from_ring": "ring", "resumes_from_redis": "redis"}


class MetricsExporter:
    """Copies a hub's plain counters into Prometheus metrics once a second.

    Also writes the worker's top channels by subscribers to a small JSON
    file beside the metric files, for the status page: channel names never
    become metric labels, because their number has no bound.
    """

    def __init__(self, hub, metrics_dir: str):
        self._hub = hub
        self._flushed: dict[str, int] = {}
        self._status_path = os.path.join(metrics_dir, f"status_{os.getpid()}.json")

    def run(self) -> None:
        while not self._hub.stopping:
            gevent.sleep(FLUSH_INTERVAL)
            self.flush()

    def flush(self) -> None:
        hub = self._hub
        values = dict(hub.stats)
        values["heartbeats"] = hub.heartbeats_sent
        for key, counter in COUNTERS.items():
            self._add(key, values.get(key, 0), counter)
        for key, source in RESUME_KEYS.items():
            self._add(key, values.get(key, 0), RESUMES.labels(source))
        CONNECTIONS.set(len(hub.streams))
        exact, patterns = hub.subscription_counts()
        SUBSCRIPTIONS.labels("exact").set(exact)
        SUBSCRIPTIONS.labels("pattern").set(patterns)
        WORKER_FRAMES_SENT.set(values.get("frames_sent", 0))
        self._write_status()

    def _add(self, key: str, value: int, counter) -> None:
        increment = value - self._flushed.get(key, 0)
        if increment > 0:
            counter.inc(increment)
            self._flushed[key] = value

    def _write_status(self) -> None:
        status = {
            "pid": os.getpid(),
            "slot": self._hub.slot,
            "top_channels": self._hub.channels_by_subscribers()[:TOP_CHANNELS],
        }
        temporary = self._status_path + ".tmp"
        try:
            with open(temporary, "w") as handle:
                json.dump(status, handle)
            os.replace(temporary, self._status_path)
        except OSError as error:
            log.warning("cannot write status file %s: %s", self._status_path, error)
