"""Prometheus export of the ingest process's counters.

``python -m ingest --metrics-port P`` serves them on ``/metrics``. The
values are read from ``IngestStats`` at scrape time, so polling code keeps
one set of counters. Labels are source or provider names from the
configuration, so their number is bounded by the configuration; limiter
waits carry the provider's name in the ``source`` label. Counters whose
breakdown is by match id have no such bound and are exported as totals.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily

from ingest.stats import COUNTERS, IngestStats

PREFIX = "livegate_ingest_"
# Broken down by match id in IngestStats; exported without the breakdown.
TOTAL_ONLY = frozenset({"provider_switches_total"})


class IngestCollector:
    def __init__(self, stats: IngestStats):
        self._stats = stats

    def collect(self):
        snapshot = self._stats.snapshot()
        for name, help_text in COUNTERS.items():
            # prometheus_client adds the "_total" suffix to counter samples.
            family = CounterMetricFamily(PREFIX + name.removesuffix("_total"),
                                         help_text[0].upper() + help_text[1:] + ".",
                                         labels=["source"])
            by_label = {} if name in TOTAL_ONLY else snapshot["by_label"].get(name, {})
            if by_label:
                for label, value in sorted(by_label.items()):
                    family.add_metric([label], value)
            else:
                family.add_metric(["all"], snapshot["totals"][name])
            yield family


def serve_metrics(stats: IngestStats, port: int, address: str = "0.0.0.0") -> None:
    """Serve the counters on ``address:port/metrics`` from a daemon thread."""
    registry = CollectorRegistry()
    registry.register(IngestCollector(stats))
    start_http_server(port, addr=address, registry=registry)
