"""Prometheus export of the ingest counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ingest.metrics import IngestCollector
from ingest.stats import COUNTERS, IngestStats


def scrape(stats: IngestStats) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(IngestCollector(stats))
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                samples[(sample.name, sample.labels["source"])] = sample.value
    return samples


class TestIngestCollector:
    def test_every_counter_exported(self):
        samples = scrape(IngestStats())
        names = {name for name, _ in samples}
        assert names == {f"livegate_ingest_{name}" for name in COUNTERS}

    def test_breakdown_by_source(self):
        stats = IngestStats()
        stats.increment("polls_total", "football-data-pl")
        stats.increment("polls_total", "football-data-pl")
        stats.increment("polls_total", "api-football-live")
        stats.increment("responses_429_total", "api-football")

        samples = scrape(stats)

        assert samples[("livegate_ingest_polls_total", "football-data-pl")] == 2
        assert samples[("livegate_ingest_polls_total", "api-football-live")] == 1
        assert samples[("livegate_ingest_responses_429_total", "api-football")] == 1

    def test_counter_without_breakdown_reports_total(self):
        stats = IngestStats()
        stats.increment("changes_total")

        samples = scrape(stats)

        assert samples[("livegate_ingest_changes_total", "all")] == 1
