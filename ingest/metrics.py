"""The ingest process's HTTP server: Prometheus counters and Kubernetes probes.

``python -m ingest --metrics-port P`` serves ``/metrics``, ``/healthz``
(liveness) and ``/readyz`` (readiness, see ``ingest/health.py``) on one
port, and 404 on any other path. The counter values are read from
``IngestStats`` at scrape time, so polling code keeps one set of
counters. Labels are source or provider names from the configuration,
so their number is bounded by the configuration; limiter waits carry the
provider's name in the ``source`` label. Counters whose breakdown is by
match id have no such bound and are exported as totals.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily

from ingest.health import HealthMonitor, Verdict
from ingest.stats import COUNTERS, IngestStats

log = logging.getLogger(__name__)

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


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # A probe must not wait behind a slow scrape, and request threads must
    # not keep the process alive at exit.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """Request handler that logs through this module's logger at debug level, not to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def make_app(registry: CollectorRegistry, health: HealthMonitor | None) -> Callable:
    """Build the WSGI application that routes the three paths. Without ``health``, the probe paths return 404."""
    metrics_app = make_wsgi_app(registry)
    probes: dict[str, Callable[[], Verdict]] = {}
    if health is not None:
        probes = {"/healthz": health.liveness, "/readyz": health.readiness}

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        probe = probes.get(path)
        if probe is None:
            return _json(start_response, "404 Not Found",
                         {"error": "not_found",
                          "message": f"{path} not found: this server serves /metrics, /healthz and /readyz"})
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return _json(start_response, "405 Method Not Allowed",
                         {"error": "method_not_allowed", "message": f"{path} accepts GET and HEAD"},
                         [("Allow", "GET, HEAD")])
        verdict = probe()
        status = "200 OK" if verdict.ok else "503 Service Unavailable"
        body = _json(start_response, status, verdict.body, [("Cache-Control", "no-store")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else body

    return app


def _json(start_response: Callable, status: str, body: dict,
          headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                            *(headers or [])])
    return [data]


def serve_metrics(stats: IngestStats, port: int, address: str = "0.0.0.0",
                  health: HealthMonitor | None = None) -> WSGIServer:
    """Serve ``/metrics`` and, given ``health``, ``/healthz`` and ``/readyz`` on ``address:port``.

    The server runs in a daemon thread, and the caller may stop it with
    ``shutdown()``. Raises OSError when the address cannot be bound.
    """
    registry = CollectorRegistry()
    registry.register(IngestCollector(stats))
    # Bind an IPv6 address such as "::" with the matching address family.
    family, _, _, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]

    class Server(_ThreadingServer):
        address_family = family

    server = make_server(sockaddr[0], port, make_app(registry, health), Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="ingest-http", daemon=True).start()
    return server
