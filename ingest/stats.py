"""Counters of the ingest process, kept in one place.

Every counter only goes up. Names follow Prometheus conventions
(``_total`` for counts, ``_seconds_total`` for summed durations) so that a
later exporter can publish them as they are. Each counter has a total and
a breakdown by source or provider.
"""

from __future__ import annotations

import threading
from collections import defaultdict

COUNTERS = {
    "polls_total": "poll cycles run, one per source per interval",
    "poll_errors_total": "poll cycles that failed after their retries",
    "polls_skipped_total": "poll cycles skipped because the circuit breaker was open",
    "requests_total": "HTTP requests sent to providers",
    "retries_total": "requests repeated after a timeout, a connection error or a 5xx",
    "responses_429_total": "responses with status 429 Too Many Requests",
    "limiter_waits_total": "requests the provider's rate limiter delayed, or deferred to a later poll",
    "limiter_wait_seconds_total": "seconds spent waiting for rate limiters",
    "matches_parsed_total": "match documents built from provider responses",
    "matches_invalid_total": "match documents dropped because they broke the schema",
    "changes_total": "publishes that changed a channel",
    "publishes_total": "publish calls made, changed or not",
    "publish_errors_total": "publish calls that failed",
    "provider_switches_total": "matches switched between primary and fallback provider",
    "lease_acquired_total": "source leases won",
    "lease_lost_total": "source leases lost while held",
}


class IngestStats:
    """Thread-safe counters with a per-label breakdown (a source or provider name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, float] = {name: 0 for name in COUNTERS}
        self._by_label: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def increment(self, name: str, label: str | None = None, amount: float = 1) -> None:
        if name not in COUNTERS:
            raise KeyError(f"unknown ingest counter {name!r}; add it to COUNTERS")
        with self._lock:
            self._totals[name] += amount
            if label is not None:
                self._by_label[name][label] += amount

    def get(self, name: str, label: str | None = None) -> float:
        with self._lock:
            if label is None:
                return self._totals[name]
            return self._by_label.get(name, {}).get(label, 0)

    def snapshot(self) -> dict:
        """Return {"totals": {name: value}, "by_label": {name: {label: value}}}."""
        with self._lock:
            return {
                "totals": dict(self._totals),
                "by_label": {name: dict(labels) for name, labels in self._by_label.items()},
            }
