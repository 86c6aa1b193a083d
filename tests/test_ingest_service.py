"""The ingest service against the mock API and a private Redis: changes only, fallback, limits, 429."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
import redis

from ingest.document import match_document_problems
from ingest.mockapi.server import Quota
from tests.ingest_fixtures.harness import (
    KEY_PREFIX, config_data, current_document, start_mock, start_service, wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def running(tmp_path, redis_server):
    """Yield a function start(mock options, config overrides) -> (mock, service); stops both after the test."""
    started = []

    def start(minutes_after_kickoff=1.0, speed=10.0, fd_quota=None, af_quota=None, **overrides):
        mock = start_mock(tmp_path / "data", minutes_after_kickoff, speed, fd_quota, af_quota)
        started.append(mock)
        data = config_data(mock.url, mock.state.timelines, **overrides)
        service = start_service(data, redis_server.url)
        started.append(service)
        return mock, service

    yield start
    for thing in reversed(started):
        thing.stop()


def requests_of(mock, provider: str) -> list[dict]:
    return [entry for entry in list(mock.state.requests) if entry["provider"] == provider]


def test_replay_publishes_only_changes(running, redis_server):
    mock, service = running(minutes_after_kickoff=100, speed=240.0)
    client = redis.Redis.from_url(redis_server.url)

    def finished():
        document = current_document(redis_server.url, "sport-livescore/m0")
        return document is not None and document["status"] == "FINISHED" and document

    document = wait_until(finished, timeout=10, message="match m0 to finish")
    assert match_document_problems(document) == []
    assert (document["score"]["home"], document["score"]["away"]) == (2, 1)
    assert [(e["team"], e["minute"], e.get("stoppage")) for e in document["events"]] == \
        [("home", 10, None), ("away", 45, 1), ("home", 90, 3)]
    assert document["provider"] == "football-data"
    versions_then = int(client.hget(f"{KEY_PREFIX}:state:sport-livescore/m0", "version"))
    polls_then = service.stats.get("polls_total", "fd-today")
    time.sleep(0.5)
    # More polls of the finished match, and not one more version.
    assert service.stats.get("polls_total", "fd-today") > polls_then
    assert int(client.hget(f"{KEY_PREFIX}:state:sport-livescore/m0", "version")) == versions_then
    stats = service.stats.snapshot()["totals"]
    assert stats["publishes_total"] > stats["changes_total"] > 0
    assert stats["poll_errors_total"] == 0
    competition = current_document(redis_server.url, "sport-livescore-competition/TESTCUP2030")
    assert competition["code"] == "TESTCUP2030"
    assert "m0" not in [entry["id"] for entry in competition["matches"]]


def test_competition_channel_lists_live_matches(running, redis_server):
    running(minutes_after_kickoff=20, speed=10.0)

    def listed():
        document = current_document(redis_server.url, "sport-livescore-competition/TESTCUP2030")
        return document and [entry["id"] for entry in document["matches"]] == ["m0", "m1"] and document

    document = wait_until(listed, timeout=5, message="the competition channel to list m0 and m1")
    entry = document["matches"][0]
    assert entry["status"] == "IN_PLAY"
    assert entry["score"] == {"home": 1, "away": 0}
    assert entry["teams"]["home"]["name"] == "Alpha"


def test_primary_failure_switches_to_fallback_and_back(running, redis_server, caplog):
    caplog.set_level(logging.INFO, logger="ingest.service")
    mock, service = running(minutes_after_kickoff=1.0, speed=10.0, switch_back_after=1.5)

    def provider_now():
        document = current_document(redis_server.url, "sport-livescore/m0")
        return document["provider"] if document else None

    wait_until(lambda: provider_now() == "football-data", timeout=5, message="the primary to publish")
    # The fallback may answer first at start, so a switch to the primary can
    # happen before the fault; only switches after it count.
    switches_before = service.stats.get("provider_switches_total", "m0")
    fault_started = time.time()
    history = [(fault_started, "football-data")]
    httpx.post(f"{mock.url}/admin/faults", json={"provider": "football-data", "status": 503, "duration": 1.5})
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        provider = provider_now()
        if provider != history[-1][1]:
            history.append((time.time(), provider))
        if len(history) >= 3:
            break
        time.sleep(0.01)
    assert [provider for _, provider in history] == ["football-data", "api-football", "football-data"], history
    switched_away, switched_back = history[1][0], history[2][0]
    assert switched_away - fault_started < 1.0

    first_success = min(entry["time"] for entry in requests_of(mock, "football-data")
                        if entry["status"] == 200 and entry["time"] > fault_started + 1.0)
    # Back only once the primary has been healthy for switch_back_after, and not much later.
    assert switched_back - first_success >= 1.5
    assert switched_back - first_success < 2.5
    time.sleep(0.5)
    assert provider_now() == "football-data"

    switches = [r.getMessage() for r in caplog.records
                if r.created >= fault_started and r.getMessage().startswith("match m0: provider switched")]
    assert len(switches) == 2
    assert "football-data -> api-football" in switches[0]
    assert "api-football -> football-data" in switches[1]
    failures = [r.getMessage() for r in caplog.records if "poll failed" in r.getMessage()]
    assert len(failures) == 1  # logged once for the state change, not per failed poll
    assert "fd-today" in failures[0]
    assert "503" in failures[0]
    assert service.stats.get("poll_errors_total", "fd-today") >= 2
    assert service.stats.get("provider_switches_total", "m0") - switches_before == 2


def test_rate_limit_never_exceeded(tmp_path, redis_server):
    limit = 6
    mock = start_mock(tmp_path / "data", 1.0, 10.0, fd_quota=Quota(limit, None))
    data = config_data(mock.url, mock.state.timelines, fd={"requests_per_minute": limit}, poll_interval=0.05)
    # Two sources of one provider: the day's list and the competition endpoint.
    data["sources"].append({"name": "fd-competition", "provider": "football-data", "endpoint": "competition",
                            "competitions": ["TESTCUP2030"]})
    service = start_service(data, redis_server.url)
    try:
        time.sleep(2.0)
    finally:
        service.stop()
        mock.stop()
    football_data = requests_of(mock, "football-data")
    assert len(football_data) == limit
    assert not any(entry.get("rate_limited") for entry in football_data)
    assert {entry["path"] for entry in football_data} == {"/v4/matches", "/v4/competitions/TESTCUP2030/matches"}
    assert service.stats.get("limiter_waits_total", "football-data") >= 1
    assert service.stats.get("responses_429_total") == 0
    assert len(requests_of(mock, "api-football")) > 2 * limit  # the other provider is not held back


def test_retry_after_honoured(running):
    mock, service = running(minutes_after_kickoff=1.0, speed=10.0, poll_interval=0.05)
    wait_until(lambda: len(requests_of(mock, "football-data")) >= 3, timeout=5, message="first polls")
    httpx.post(f"{mock.url}/admin/faults",
               json={"provider": "football-data", "status": 429, "retry_after": "1", "count": 1})
    limited = wait_until(lambda: [e for e in requests_of(mock, "football-data") if e["status"] == 429],
                         timeout=5, message="the injected 429")[0]
    wait_until(lambda: [e for e in requests_of(mock, "football-data") if e["seq"] > limited["seq"]],
               timeout=5, message="a request after the 429")
    after = [e for e in requests_of(mock, "football-data") if e["seq"] > limited["seq"]]
    assert after[0]["time"] - limited["time"] >= 0.95
    during = [e for e in requests_of(mock, "api-football") if limited["time"] < e["time"] < limited["time"] + 0.9]
    assert len(during) >= 5  # only the provider that returned 429 waits
    assert service.stats.get("responses_429_total", "fd-today") == 1


def test_provider_quota_429_stops_requests(running):
    mock, service = running(minutes_after_kickoff=1.0, speed=10.0, poll_interval=0.05,
                            fd_quota=Quota(3, None))
    wait_until(lambda: any(e["status"] == 429 for e in requests_of(mock, "football-data")), timeout=5,
               message="the quota's 429")
    time.sleep(1.5)
    football_data = requests_of(mock, "football-data")
    # Three succeed, the fourth gets 429 with Retry-After of about a minute, then no more requests.
    assert [e["status"] for e in football_data] == [200, 200, 200, 429]
    assert service.stats.get("responses_429_total") == 1
