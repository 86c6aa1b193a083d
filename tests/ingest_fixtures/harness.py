"""An in-process mock API and ingest service against a private Redis, for integration tests."""

from __future__ import annotations

import copy
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis

from ingest.config import parse_config
from ingest.mockapi import render
from ingest.mockapi.server import API_FOOTBALL, FOOTBALL_DATA, MockServer, MockState, Quota, SimulatedClock
from ingest.mockapi.timeline import Timeline, load_timelines
from ingest.publisher import Publisher
from ingest.service import IngestService
from livegate.settings import Settings
from tests.ingest_fixtures.samples import write_timeline

KEY_PREFIX = "it"


def start_mock(directory: Path, minutes_after_kickoff: float, speed: float,
               fd_quota: Quota | None = None, af_quota: Quota | None = None) -> MockServer:
    """Serve the hand-made timeline with the clock ``minutes_after_kickoff`` into its first match."""
    write_timeline(directory)
    timelines = load_timelines(directory)
    start = timelines[0].kickoff + timedelta(minutes=minutes_after_kickoff)
    quotas = {FOOTBALL_DATA: fd_quota or Quota(None, None), API_FOOTBALL: af_quota or Quota(None, None)}
    state = MockState(timelines, SimulatedClock(start, speed), quotas, {FOOTBALL_DATA: None, API_FOOTBALL: None},
                      None)
    return MockServer(state).start()


def provider_table(kind: str, url: str, **overrides: Any) -> dict:
    table = {"type": kind, "base_url": url, "requests_per_minute": 6000, "max_retries": 0,
             "backoff_base": 0.01, "backoff_max": 0.05, "timeout": 2.0, "failure_threshold": 2,
             "breaker_open_seconds": 0.3}
    table.update(overrides)
    return table


def config_data(url: str, timelines: list[Timeline], fd: dict | None = None, af: dict | None = None,
                **ingest: Any) -> dict:
    """A configuration polling both formats of the mock at ``url``, every match mapped."""
    return {
        "ingest": {"poll_interval": 0.1, "stale_after": 1.0, "switch_back_after": 1.5, "lease_ttl": 5.0,
                   "stats_interval": 60.0, **ingest},
        "providers": {
            "football-data": provider_table("football-data-v4", url, **(fd or {})),
            "api-football": provider_table("api-football-v3", url, **(af or {})),
        },
        "sources": [
            {"name": "fd-today", "provider": "football-data"},
            {"name": "af-live", "provider": "api-football"},
        ],
        "competitions": {timelines[0].competition.code: {
            "name": timelines[0].competition.name,
            "provider_ids": {"football-data": timelines[0].competition.code,
                             "api-football": timelines[0].competition.af_id}}},
        "matches": [
            {"id": f"m{timeline.index}", "primary": "football-data", "fallback": "api-football",
             "provider_ids": {"football-data": render.fd_match_id(timeline),
                              "api-football": render.af_fixture_id(timeline)}}
            for timeline in timelines
        ],
    }


def start_service(data: dict, redis_url: str) -> IngestService:
    config = parse_config(copy.deepcopy(data), environ={})
    settings = Settings.from_env({"REDIS_URL": redis_url, "LIVEGATE_KEY_PREFIX": KEY_PREFIX})
    service = IngestService(config, settings, client=redis.Redis.from_url(redis_url))
    service.start()
    return service


def current_document(redis_url: str, channel: str) -> Any:
    return Publisher(redis.Redis.from_url(redis_url), key_prefix=KEY_PREFIX).current(channel)[1]


def wait_until(predicate, timeout: float, interval: float = 0.02, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}; last value {value!r}")
        time.sleep(interval)
