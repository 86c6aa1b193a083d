"""The ingest process's HTTP server: Prometheus export of the counters, /healthz and /readyz."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ingest.health import MIN_STALL_SECONDS, HealthMonitor, stall_limit
from ingest.metrics import IngestCollector, serve_metrics
from ingest.replay import MockApiProcess, ReplayOptions, replay_config
from ingest.stats import COUNTERS, IngestStats
from tests.ingest_fixtures.samples import write_timeline
from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]


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


# --- /healthz and /readyz ---------------------------------------------------------------

REPLICA = "ingest-0:7:ab12cd34"
OTHER_REPLICA = "ingest-1:7:ef56ab78"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stop_event() -> threading.Event:
    return threading.Event()


def monitor_with(clock: FakeClock, stop_event: threading.Event, *sources: str,
                 stall_after: float = 60.0) -> HealthMonitor:
    monitor = HealthMonitor(REPLICA, stop_event, clock=clock)
    for source in sources:
        monitor.add_source(source, poll_interval=15.0, stall_after=stall_after)
    return monitor


class TestStallLimit:
    def test_short_interval_gets_floor(self):
        assert stall_limit(poll_interval=1.0, request_timeout=2.0) == MIN_STALL_SECONDS

    def test_long_interval_scales(self):
        assert stall_limit(poll_interval=120.0, request_timeout=10.0) == 260.0

    def test_limit_exceeds_one_poll(self):
        for interval, timeout in [(0.1, 0.1), (15.0, 10.0), (60.0, 30.0), (600.0, 10.0)]:
            assert stall_limit(interval, timeout) > interval + timeout


class TestLiveness:
    def test_live_before_start(self, clock, stop_event):
        verdict = monitor_with(clock, stop_event, "fd-today").liveness()

        assert verdict.ok
        assert verdict.body["status"] == "starting"
        assert verdict.body["replica"] == REPLICA

    def test_ticking_poller_stays_live(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        for _ in range(10):
            clock.advance(30.0)
            monitor.tick("fd-today")

        verdict = monitor.liveness()

        assert verdict.ok
        assert verdict.body["status"] == "ok"
        assert verdict.body["sources"]["fd-today"]["last_tick_seconds_ago"] == 0.0

    def test_standby_without_lease_stays_live(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        monitor.lease_observed("fd-today", held=False, holder=OTHER_REPLICA)
        clock.advance(59.0)
        monitor.tick("fd-today")
        clock.advance(59.0)

        verdict = monitor.liveness()

        assert verdict.ok
        assert verdict.body["sources"]["fd-today"]["role"] == "standby"
        assert verdict.body["sources"]["fd-today"]["lease_holder"] == OTHER_REPLICA

    def test_stalled_poller_fails(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today", "af-live")
        monitor.mark_started()
        monitor.lease_observed("fd-today", held=True, holder=REPLICA)
        clock.advance(61.0)
        monitor.tick("af-live")

        verdict = monitor.liveness()

        assert not verdict.ok
        assert verdict.body["error"] == "not_live"
        message = verdict.body["message"]
        assert "source fd-today (holder)" in message
        assert "last ticked 61.0 s ago" in message
        assert "limit of 60 s" in message
        assert "poll interval 15 s" in message
        assert "af-live" not in message
        assert verdict.body["replica"] == REPLICA

    def test_stall_counts_from_start(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        clock.advance(600.0)
        monitor.mark_started()
        clock.advance(30.0)

        assert monitor.liveness().ok

    def test_exited_poller_fails(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        monitor.poller_exited("fd-today")

        verdict = monitor.liveness()

        assert not verdict.ok
        assert "source fd-today: poller thread exited" in verdict.body["message"]

    def test_stopping_process_stays_live(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        stop_event.set()
        monitor.poller_exited("fd-today")
        clock.advance(600.0)

        verdict = monitor.liveness()

        assert verdict.ok
        assert verdict.body["status"] == "stopping"

    def test_failure_logged_once_then_recovery(self, clock, stop_event, caplog):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        clock.advance(61.0)
        with caplog.at_level(logging.INFO, logger="ingest.health"):
            monitor.liveness()
            monitor.liveness()
            monitor.tick("fd-today")
            monitor.liveness()

        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert REPLICA in errors[0].getMessage()
        assert "source fd-today" in errors[0].getMessage()
        assert caplog.records[-1].getMessage() == f"replica {REPLICA}: live again"


class TestReadiness:
    def test_not_ready_before_start(self, clock, stop_event):
        verdict = monitor_with(clock, stop_event, "fd-today").readiness()

        assert not verdict.ok
        assert verdict.body["error"] == "not_ready"
        assert verdict.body["message"] == "the pollers have not started yet"

    def test_not_ready_until_redis_answers(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()

        verdict = monitor.readiness()

        assert not verdict.ok
        assert "source fd-today: no Redis operation has succeeded yet" in verdict.body["message"]

    def test_lease_holder_ready(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        monitor.redis_succeeded("fd-today")
        monitor.lease_observed("fd-today", held=True, holder=REPLICA)

        verdict = monitor.readiness()

        assert verdict.ok
        assert verdict.body["status"] == "ready"
        assert verdict.body["sources"]["fd-today"]["role"] == "holder"
        assert verdict.body["sources"]["fd-today"]["lease_holder"] == REPLICA

    def test_standby_ready(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        monitor.redis_succeeded("fd-today")
        monitor.lease_observed("fd-today", held=False, holder=OTHER_REPLICA)

        verdict = monitor.readiness()

        assert verdict.ok
        assert verdict.body["sources"]["fd-today"]["role"] == "standby"
        assert verdict.body["sources"]["fd-today"]["lease_holder"] == OTHER_REPLICA

    def test_redis_failure_names_action(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today", "af-live")
        monitor.mark_started()
        monitor.redis_succeeded("fd-today")
        monitor.redis_succeeded("af-live")
        monitor.redis_failed("fd-today", "publishing", redis.ConnectionError("Connection refused"))
        clock.advance(4.0)
        monitor.redis_failed("fd-today", "the lease check", redis.ConnectionError("Connection refused"))

        verdict = monitor.readiness()

        assert not verdict.ok
        message = verdict.body["message"]
        assert "source fd-today (standby): Redis failed during the lease check" in message
        assert "Connection refused" in message
        assert "failing for 4.0 s" in message
        assert "af-live" not in message
        assert verdict.body["sources"]["fd-today"]["redis_error"].startswith("Redis failed during")

    def test_ready_again_after_redis_recovers(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        monitor.redis_failed("fd-today", "the lease check", redis.TimeoutError("Timeout reading"))
        assert not monitor.readiness().ok

        monitor.redis_succeeded("fd-today")

        verdict = monitor.readiness()
        assert verdict.ok
        assert verdict.body["sources"]["fd-today"]["redis_error"] is None

    def test_stale_redis_success_fails(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        monitor.redis_succeeded("fd-today")
        clock.advance(61.0)
        monitor.tick("fd-today")

        verdict = monitor.readiness()

        assert not verdict.ok
        assert "last successful Redis operation 61.0 s ago" in verdict.body["message"]

    def test_stalled_poller_not_ready(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        monitor.redis_succeeded("fd-today")
        clock.advance(61.0)

        verdict = monitor.readiness()

        assert not verdict.ok
        assert "last ticked 61.0 s ago" in verdict.body["message"]

    def test_stopping_process_not_ready(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        monitor.redis_succeeded("fd-today")
        stop_event.set()

        verdict = monitor.readiness()

        assert not verdict.ok
        assert verdict.body["message"] == "the process is stopping"

    def test_failure_logged_as_warning(self, clock, stop_event, caplog):
        monitor = monitor_with(clock, stop_event, "fd-today")
        monitor.mark_started()
        monitor.redis_succeeded("fd-today")
        with caplog.at_level(logging.INFO, logger="ingest.health"):
            monitor.readiness()
            monitor.redis_failed("fd-today", "publishing", redis.ConnectionError("Connection reset"))
            monitor.readiness()
            monitor.readiness()

        assert [r.levelno for r in caplog.records] == [logging.INFO, logging.WARNING]
        assert f"replica {REPLICA}: not ready: source fd-today" in caplog.records[1].getMessage()


class TestProbeServer:
    @pytest.fixture
    def server(self, clock, stop_event):
        monitor = monitor_with(clock, stop_event, "fd-today")
        stats = IngestStats()
        stats.increment("polls_total", "fd-today")
        started = serve_metrics(stats, 0, "127.0.0.1", health=monitor)
        url = f"http://127.0.0.1:{started.server_address[1]}"
        try:
            yield url, monitor
        finally:
            started.shutdown()
            started.server_close()

    def test_probes_return_json(self, server):
        url, monitor = server
        monitor.mark_started()
        monitor.redis_succeeded("fd-today")

        live = httpx.get(f"{url}/healthz", timeout=5)
        ready = httpx.get(f"{url}/readyz", timeout=5)

        assert live.status_code == 200
        assert live.headers["content-type"] == "application/json"
        assert live.json()["status"] == "ok"
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"

    def test_failing_probe_returns_503(self, server):
        url, _ = server

        response = httpx.get(f"{url}/readyz", timeout=5)

        assert response.status_code == 503
        assert response.json()["error"] == "not_ready"
        assert response.json()["message"] == "the pollers have not started yet"

    def test_metrics_still_served(self, server):
        url, _ = server

        response = httpx.get(f"{url}/metrics", timeout=5)

        assert response.status_code == 200
        assert 'livegate_ingest_polls_total{source="fd-today"} 1.0' in response.text

    def test_unknown_path_returns_404(self, server):
        url, _ = server
        for path in ("/", "/health", "/healthz/x", "/metrics/x"):
            response = httpx.get(f"{url}{path}", timeout=5)
            assert response.status_code == 404, path
            assert response.json()["error"] == "not_found", path

    def test_post_to_probe_returns_405(self, server):
        url, _ = server

        response = httpx.post(f"{url}/healthz", timeout=5)

        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"

    def test_head_returns_status_only(self, server):
        url, _ = server

        response = httpx.head(f"{url}/healthz", timeout=5)

        assert response.status_code == 200
        assert response.content == b""

    def test_server_without_monitor_has_no_probes(self):
        started = serve_metrics(IngestStats(), 0, "127.0.0.1")
        try:
            response = httpx.get(f"http://127.0.0.1:{started.server_address[1]}/healthz", timeout=5)
        finally:
            started.shutdown()
            started.server_close()

        assert response.status_code == 404


# --- the real process ---------------------------------------------------------------------

SOURCES = ("football-data-today", "api-football-live")


class IngestProcess:
    """``python -m ingest`` with its metrics and probe server on a free port of 127.0.0.1."""

    def __init__(self, name: str, config: Path, redis_url: str, folder: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / f"{name}.log"
        environment = {**os.environ, "REDIS_URL": redis_url, "LIVEGATE_KEY_PREFIX": "probe",
                       "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ingest", "--config", str(config),
                 "--metrics-port", str(self.port), "--metrics-address", "127.0.0.1"],
                cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def get(self, path: str) -> httpx.Response | None:
        """GET ``path``, or return None while the server does not accept connections yet."""
        assert self.process.poll() is None, f"ingest exited early:\n{self.log_tail()}"
        try:
            return httpx.get(f"{self.url}{path}", timeout=5)
        except httpx.TransportError:
            return None

    def probe_body(self, path: str, status: int) -> dict | None:
        response = self.get(path)
        return response.json() if response is not None and response.status_code == status else None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def roles(body: dict | None) -> set[str]:
    return {state["role"] for state in body["sources"].values()} if body else set()


@pytest.mark.integration
@pytest.mark.slow
def test_probes_of_holder_and_standby(tmp_path, redis_server):
    write_timeline(tmp_path / "data")
    mock = MockApiProcess(tmp_path / "data", speed=60, start="2030-06-01T15:10:00Z",
                          extra_args=["--fd-per-minute", "0", "--af-per-minute", "0", "--af-per-day", "0"],
                          log_path=tmp_path / "mockapi.log").start()
    replicas: list[IngestProcess] = []
    try:
        config = tmp_path / "ingest.toml"
        config.write_text(replay_config(mock.url, mock.matches(), ReplayOptions(
            poll_interval=0.2, requests_per_minute=6000, lease_ttl=2.0)))

        # The first replica takes both leases and reports itself as their holder.
        holder = IngestProcess("holder", config, redis_server.url, tmp_path)
        replicas.append(holder)
        wait_for(lambda: roles(holder.probe_body("/readyz", 200)) == {"holder"}, timeout=15,
                 message="the first replica to be ready with both leases")
        ready = holder.probe_body("/readyz", 200)
        assert ready["status"] == "ready"
        assert f":{holder.process.pid}:" in ready["replica"]
        assert set(ready["sources"]) == set(SOURCES)
        for source in SOURCES:
            assert ready["sources"][source]["lease_holder"] == ready["replica"]
            assert ready["sources"][source]["redis_error"] is None
        live = holder.get("/healthz")
        assert live.status_code == 200
        assert live.json()["status"] == "ok"
        metrics = holder.get("/metrics")
        assert metrics.status_code == 200
        assert 'livegate_ingest_polls_total{source="football-data-today"}' in metrics.text
        assert holder.get("/status").status_code == 404

        # The second replica holds no lease and is ready and live all the same.
        standby = IngestProcess("standby", config, redis_server.url, tmp_path)
        replicas.append(standby)
        wait_for(lambda: roles(standby.probe_body("/readyz", 200)) == {"standby"}, timeout=15,
                 message="the second replica to be ready as a standby")
        standby_ready = standby.probe_body("/readyz", 200)
        assert f":{standby.process.pid}:" in standby_ready["replica"]
        for source in SOURCES:
            assert standby_ready["sources"][source]["lease_holder"] == ready["replica"]
        assert standby.get("/healthz").status_code == 200

        # Without Redis both replicas turn unready, name the failure, and stay live.
        redis_server.stop()
        for replica in replicas:
            failing = wait_for(lambda: replica.probe_body("/readyz", 503), timeout=30,
                               message=f"{replica.log_path.stem} to fail readiness without Redis")
            assert failing["error"] == "not_ready"
            assert "Redis failed during" in failing["message"]
            assert failing["replica"] in (ready["replica"], standby_ready["replica"])
            assert replica.get("/healthz").status_code == 200

        # Redis back (empty): both are ready again, and one of them holds each lease.
        redis_server.start()

        def holders_per_source() -> dict[str, int] | None:
            bodies = [replica.probe_body("/readyz", 200) for replica in replicas]
            if None in bodies:
                return None
            counts = {source: sum(body["sources"][source]["role"] == "holder" for body in bodies)
                      for source in SOURCES}
            return counts if set(counts.values()) == {1} else None

        wait_for(holders_per_source, timeout=30, message="both replicas to be ready again, one holder per source")
    finally:
        for replica in replicas:
            stop_process(replica.process, timeout=15)
        mock.stop()
    for replica in replicas:
        assert replica.process.returncode == 0, replica.log_tail()
