"""Units of the pollers' failure handling: rate limiter, Retry-After, backoff, circuit breaker."""

from __future__ import annotations

import random
import threading

import pytest

from ingest.ratelimit import (
    DAY, MINUTE, WINDOW_MARGIN, MemoryRateLimitStore, RateLimiter, RateLimitTimeout, RedisRateLimitStore,
    WindowLimit, provider_limits,
)
from ingest.resilience import CLOSED, HALF_OPEN, OPEN, Backoff, CircuitBreaker, format_http_date, parse_retry_after
from ingest.stats import COUNTERS, IngestStats


class FakeClock:
    """A clock for the limiter: sleep() advances time instead of waiting."""

    def __init__(self, start: float = 1_000_000.0):
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return False


def limiter_with(limits, clock: FakeClock, store=None, waits=None) -> RateLimiter:
    return RateLimiter("prov", limits, store or MemoryRateLimitStore(), clock=clock.time, sleep=clock.sleep,
                       on_wait=None if waits is None else waits.append)


# --- rate limiter -----------------------------------------------------------------


def test_limiter_admits_up_to_limit_without_waiting():
    clock = FakeClock()
    limiter = limiter_with(provider_limits(5, None), clock)
    for _ in range(5):
        assert limiter.acquire() == 0
    assert clock.sleeps == []


def test_limiter_waits_for_oldest_to_leave_window():
    clock = FakeClock()
    waits: list[float] = []
    limiter = limiter_with(provider_limits(3, None), clock, waits=waits)
    admitted = []
    for step in range(3):
        admitted.append(clock.now)
        limiter.acquire()
        clock.now += 10
    waited = limiter.acquire()
    # The first request was at t0; the fourth may go once a minute (plus
    # the margin for network delay) has passed.
    window = limiter.limits[0].window
    assert window == MINUTE + WINDOW_MARGIN
    assert clock.now >= admitted[0] + window
    assert waited == pytest.approx(window - 30, abs=0.01)
    assert len(waits) == 1


def test_limiter_never_exceeds_limit_in_any_window():
    clock = FakeClock()
    limiter = limiter_with(provider_limits(10, 50), clock)
    rng = random.Random(3)
    times = []
    for _ in range(400):
        limiter.acquire()
        times.append(clock.now)
        clock.now += rng.choice([0.0, 0.1, 1.0, 5.0, 30.0])
    for index, start in enumerate(times):
        in_minute = [t for t in times[index:] if t < start + MINUTE]
        in_day = [t for t in times[index:] if t < start + DAY]
        assert len(in_minute) <= 10
        assert len(in_day) <= 50


def test_limiter_shared_by_two_sources():
    clock = FakeClock()
    store = MemoryRateLimitStore()
    limits = provider_limits(4, None)
    first = limiter_with(limits, clock, store)
    second = limiter_with(limits, clock, store)
    for _ in range(2):
        first.acquire()
        second.acquire()
    with pytest.raises(RateLimitTimeout):
        first.acquire(max_wait=1.0)
    with pytest.raises(RateLimitTimeout):
        second.acquire(max_wait=1.0)


def test_limiter_max_wait_raises_without_sleeping():
    clock = FakeClock()
    waits: list[float] = []
    limiter = limiter_with(provider_limits(1, None), clock, waits=waits)
    limiter.acquire()
    with pytest.raises(RateLimitTimeout) as raised:
        limiter.acquire(max_wait=5.0)
    assert raised.value.wait == pytest.approx(MINUTE + WINDOW_MARGIN)
    assert clock.sleeps == []
    assert waits == [0.0]


def test_limiter_block_until_holds_every_request():
    clock = FakeClock()
    limiter = limiter_with((), clock)
    limiter.block_until(clock.now + 7.5)
    limiter.acquire()
    assert sum(clock.sleeps) >= 7.5


def test_limiter_interrupted_by_shutdown():
    store = MemoryRateLimitStore()
    stop = threading.Event()
    stop.set()
    limiter = RateLimiter("prov", provider_limits(1, None), store, sleep=stop.wait)
    limiter.acquire()
    with pytest.raises(InterruptedError):
        limiter.acquire()


@pytest.mark.integration
def test_redis_limiter_shared_between_clients(redis_server):
    clock = FakeClock(start=5_000.0)
    limits = (WindowLimit("minute", 3, MINUTE),)
    first = limiter_with(limits, clock, RedisRateLimitStore(redis_server.client(), "t1"))
    second = limiter_with(limits, clock, RedisRateLimitStore(redis_server.client(), "t1"))
    first.acquire()
    second.acquire()
    first.acquire()
    with pytest.raises(RateLimitTimeout) as raised:
        second.acquire(max_wait=1.0)
    assert raised.value.wait == pytest.approx(MINUTE, abs=0.01)
    clock.now += MINUTE
    assert second.acquire(max_wait=1.0) == 0


@pytest.mark.integration
def test_redis_limiter_block_until(redis_server):
    clock = FakeClock(start=9_000.0)
    store = RedisRateLimitStore(redis_server.client(), "t2")
    limiter = limiter_with(provider_limits(100, None), clock, store)
    limiter.block_until(clock.now + 3.0)
    with pytest.raises(RateLimitTimeout) as raised:
        limiter.acquire(max_wait=1.0)
    assert raised.value.wait == pytest.approx(3.0, abs=0.01)


# --- Retry-After --------------------------------------------------------------------


@pytest.mark.parametrize("header, expected", [
    ("120", 120.0), (" 5 ", 5.0), ("0", 0.0), ("1.5", 1.5), ("-3", None), ("soon", None),
    ("", None), (None, None),
])
def test_retry_after_seconds(header, expected):
    assert parse_retry_after(header, now=0.0) == expected


def test_retry_after_http_date():
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=now) == pytest.approx(30.0)
    assert parse_retry_after(format_http_date(now + 90), now=now) == pytest.approx(90.0)


def test_retry_after_date_in_past_is_zero():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1_445_412_480.0 + 60) == 0.0


# --- backoff -------------------------------------------------------------------------


def test_backoff_grows_and_caps():
    backoff = Backoff(base=0.5, maximum=8.0)
    rng = random.Random(1)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0), (200, 8.0)]:
        for _ in range(50):
            delay = backoff.delay(attempt, rng)
            assert ceiling / 2 <= delay <= ceiling


def test_backoff_jitter_spreads_delays():
    backoff = Backoff(base=1.0, maximum=60.0)
    rng = random.Random(2)
    delays = {round(backoff.delay(3, rng), 6) for _ in range(20)}
    assert len(delays) > 10


def test_backoff_rejects_negative_attempt():
    with pytest.raises(ValueError):
        Backoff().delay(-1)


# --- circuit breaker -------------------------------------------------------------------


class Ticker:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold():
    clock = Ticker()
    changes = []
    breaker = CircuitBreaker("src", failure_threshold=3, open_seconds=10, clock=clock,
                             on_change=lambda old, new, why: changes.append((old, new)))
    breaker.record_failure("503")
    breaker.record_failure("503")
    assert breaker.state == CLOSED
    breaker.record_failure("503")
    assert breaker.state == OPEN
    assert not breaker.allow()
    assert changes == [(CLOSED, OPEN)]


def test_breaker_half_open_then_closed():
    clock = Ticker()
    breaker = CircuitBreaker("src", failure_threshold=1, open_seconds=10, clock=clock)
    breaker.record_failure("timeout")
    clock.now = 9.9
    assert not breaker.allow()
    assert breaker.seconds_until_trial() == pytest.approx(0.1)
    clock.now = 10.0
    assert breaker.allow()
    assert breaker.state == HALF_OPEN
    breaker.record_success()
    assert breaker.state == CLOSED
    assert breaker.consecutive_failures == 0


def test_breaker_failed_trial_doubles_open_time():
    clock = Ticker()
    breaker = CircuitBreaker("src", failure_threshold=1, open_seconds=10, max_open_seconds=25, clock=clock)
    breaker.record_failure("x")
    clock.now = 10
    assert breaker.allow()
    breaker.record_failure("x")
    assert breaker.state == OPEN
    clock.now = 29.9
    assert not breaker.allow()
    clock.now = 30
    assert breaker.allow()
    breaker.record_failure("x")
    clock.now = 54.9  # capped at 25 s, not 40 s
    assert not breaker.allow()
    clock.now = 55
    assert breaker.allow()


def test_breaker_success_resets_failure_count():
    breaker = CircuitBreaker("src", failure_threshold=2, clock=Ticker())
    breaker.record_failure("x")
    breaker.record_success()
    breaker.record_failure("x")
    assert breaker.state == CLOSED


def test_breaker_logs_each_state_change_once(caplog):
    caplog.set_level("INFO", logger="ingest.resilience")
    breaker = CircuitBreaker("src-a", failure_threshold=1, clock=Ticker())
    for _ in range(5):
        breaker.record_failure("status 503")
    messages = [r.getMessage() for r in caplog.records if "circuit breaker" in r.getMessage()]
    assert len(messages) == 1
    assert "src-a" in messages[0]
    assert "status 503" in messages[0]


# --- stats -------------------------------------------------------------------------------


def test_stats_counts_totals_and_labels():
    stats = IngestStats()
    stats.increment("polls_total", "a")
    stats.increment("polls_total", "b")
    stats.increment("polls_total", "a")
    assert stats.get("polls_total") == 3
    assert stats.get("polls_total", "a") == 2
    snapshot = stats.snapshot()
    assert set(snapshot["totals"]) == set(COUNTERS)
    assert snapshot["by_label"]["polls_total"] == {"a": 2, "b": 1}


def test_stats_rejects_unknown_counter():
    with pytest.raises(KeyError):
        IngestStats().increment("polls")
