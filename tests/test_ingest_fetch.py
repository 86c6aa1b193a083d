"""The pollers' HTTP client: retries with backoff, 429 and Retry-After, rate limits, connection reuse."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import httpx
import pytest

from ingest.config import parse_config
from ingest.fetch import FetchError, ProviderClient, RateLimitedError, ShutdownError
from ingest.mockapi.server import API_FOOTBALL, FOOTBALL_DATA, MockServer, MockState, Quota, SimulatedClock
from ingest.mockapi.timeline import load_timelines
from ingest.providers.base import Request
from ingest.ratelimit import MemoryRateLimitStore, RateLimiter, provider_limits
from ingest.resilience import format_http_date
from ingest.stats import IngestStats
from tests.ingest_fixtures.samples import write_timeline

REQUEST = Request("/v4/matches", {})


def provider(**overrides):
    table = {"type": "football-data-v4", "base_url": "http://127.0.0.1:9", "max_retries": 3,
             "backoff_base": 0.01, "backoff_max": 0.05, "timeout": 0.5, **overrides}
    return parse_config({"providers": {"p": table}, "sources": [{"name": "s", "provider": "p"}]}).providers["p"]


def client_for(handler, stop=None, stats=None, **overrides):
    config = provider(**overrides)
    limiter = RateLimiter("p", provider_limits(config.requests_per_minute, None), MemoryRateLimitStore(),
                          sleep=(stop or threading.Event()).wait)
    return ProviderClient(config, limiter, stats or IngestStats(), stop or threading.Event(),
                          transport=httpx.MockTransport(handler), rng=random.Random(1))


def scripted(*answers):
    """A transport handler that plays ``answers`` in order; each is a Response or an exception."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((time.monotonic(), request))
        answer = answers[min(len(calls) - 1, len(answers) - 1)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    handler.calls = calls
    return handler


def ok(body=None):
    return httpx.Response(200, json=body if body is not None else {"matches": []})


def test_server_errors_retried_then_success():
    stats = IngestStats()
    handler = scripted(httpx.Response(503), httpx.Response(502), ok({"matches": [1]}))
    client = client_for(handler, stats=stats)
    assert client.get_json("s", REQUEST, {}, time.monotonic() + 5) == {"matches": [1]}
    assert len(handler.calls) == 3
    assert stats.get("retries_total", "s") == 2
    assert stats.get("requests_total", "s") == 3
    gaps = [b[0] - a[0] for a, b in zip(handler.calls, handler.calls[1:])]
    assert all(gap >= 0.005 for gap in gaps)  # backoff, not a tight loop


def test_timeouts_retried_then_give_up():
    handler = scripted(httpx.ReadTimeout("slow"))
    client = client_for(handler, max_retries=2)
    with pytest.raises(FetchError) as raised:
        client.get_json("s", REQUEST, {}, time.monotonic() + 5)
    assert raised.value.kind == "timeout"
    assert len(handler.calls) == 3


def test_client_errors_not_retried():
    handler = scripted(httpx.Response(403, json={"message": "restricted"}))
    client = client_for(handler)
    with pytest.raises(FetchError) as raised:
        client.get_json("s", REQUEST, {}, time.monotonic() + 5)
    assert (raised.value.status, raised.value.kind) == (403, "status 403")
    assert len(handler.calls) == 1


def test_invalid_json_is_an_error():
    client = client_for(scripted(httpx.Response(200, content=b"<html>")))
    with pytest.raises(FetchError, match="not JSON"):
        client.get_json("s", REQUEST, {}, time.monotonic() + 5)


def test_retry_after_seconds_honoured():
    stats = IngestStats()
    handler = scripted(httpx.Response(429, headers={"Retry-After": "1"}), ok())
    client = client_for(handler, stats=stats)
    client.get_json("s", REQUEST, {}, time.monotonic() + 5)
    assert handler.calls[1][0] - handler.calls[0][0] >= 1.0
    assert stats.get("responses_429_total", "s") == 1


def test_retry_after_http_date_honoured():
    handler = scripted(httpx.Response(429, headers={"Retry-After": format_http_date(time.time() + 2)}), ok())
    client = client_for(handler)
    client.get_json("s", REQUEST, {}, time.monotonic() + 5)
    # An HTTP date has whole seconds, so the wait is between 1 and 2 s.
    assert handler.calls[1][0] - handler.calls[0][0] >= 1.0


def test_retry_after_blocks_other_sources_of_provider():
    handler = scripted(httpx.Response(429, headers={"Retry-After": "30"}), ok())
    client = client_for(handler)
    with pytest.raises(RateLimitedError) as raised:
        client.get_json("s", REQUEST, {}, time.monotonic() + 2)
    assert raised.value.retry_in == 30
    with pytest.raises(RateLimitedError):
        client.get_json("other-source", REQUEST, {}, time.monotonic() + 2)
    assert len(handler.calls) == 1


def test_rate_limit_defers_request_beyond_deadline():
    handler = scripted(ok())
    client = client_for(handler, requests_per_minute=2)
    deadline = time.monotonic() + 1
    client.get_json("s", REQUEST, {}, deadline)
    client.get_json("s", REQUEST, {}, deadline)
    with pytest.raises(RateLimitedError) as raised:
        client.get_json("s", REQUEST, {}, deadline)
    assert raised.value.retry_in > 50
    assert len(handler.calls) == 2


def test_shutdown_ends_backoff_wait():
    stop = threading.Event()
    handler = scripted(httpx.Response(500))
    client = client_for(handler, stop=stop, backoff_base=5.0, backoff_max=5.0)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(ShutdownError):
        client.get_json("s", REQUEST, {}, time.monotonic() + 30)
    assert time.monotonic() - started < 2


@pytest.mark.integration
def test_one_connection_reused_for_many_requests(tmp_path):
    write_timeline(tmp_path / "data")
    timelines = load_timelines(tmp_path / "data")
    state = MockState(timelines, SimulatedClock(timelines[0].kickoff - timedelta(minutes=1), 1.0),
                      {FOOTBALL_DATA: Quota(None, None), API_FOOTBALL: Quota(None, None)},
                      {FOOTBALL_DATA: None, API_FOOTBALL: None}, None)
    server = MockServer(state).start()
    try:
        config = provider(base_url=server.url)
        client = ProviderClient(config, RateLimiter("p", (), MemoryRateLimitStore()), IngestStats(),
                                threading.Event())
        for _ in range(20):
            assert client.get_json("s", REQUEST, {}, time.monotonic() + 5)["resultSet"]["count"] == 3
        client.close()
        ports = {entry["client_port"] for entry in state.requests}
        assert len(state.requests) == 20
        assert len(ports) == 1
    finally:
        server.stop()
