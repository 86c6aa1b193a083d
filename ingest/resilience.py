"""Failure handling of the pollers: Retry-After, backoff with jitter, circuit breaker.

Each piece takes its clock and random source as arguments, so tests drive
time by hand.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

log = logging.getLogger(__name__)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the delay in seconds that a Retry-After header requests.

    The header is either delay-seconds ("120") or an HTTP date ("Wed, 21
    Oct 2015 07:28:00 GMT"), as RFC 9110 section 10.2.3 defines. A date in
    the past gives 0. Returns None for a missing or unparseable value, so
    the caller falls back to its own backoff. ``now`` is Unix time (default
    ``time.time()``).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # Not RFC syntax, but some servers send "1.5"; a negative value is invalid.
        return seconds if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; parsedate gives a naive value for "-0000".
        when = when.replace(tzinfo=timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def format_http_date(unix_time: float) -> str:
    """Format ``unix_time`` as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT")."""
    return email.utils.format_datetime(datetime.fromtimestamp(unix_time, timezone.utc), usegmt=True)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter.

    Attempt n (0-based) waits a random time in [base * 2**n / 2, base * 2**n],
    capped at ``maximum``. Half the delay is fixed so that retries never
    come back at once, and half is random so that many pollers spread out.
    """

    base: float = 0.5
    maximum: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        ceiling = min(self.maximum, self.base * (2 ** min(attempt, 32)))
        source = rng or random
        return ceiling / 2 + source.random() * ceiling / 2


CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class CircuitBreaker:
    """Stops polling a failing source for a while, then tries once.

    closed: every poll runs; ``failure_threshold`` failures in a row open it.
    open: polls are skipped until ``open_seconds`` have passed, then it is
    half-open. half-open: one trial poll runs; success closes the breaker,
    failure opens it again with the open time doubled, up to
    ``max_open_seconds``. Every state change is logged once, with the source
    name and the error that caused it.
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 3,
        open_seconds: float = 30.0,
        max_open_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str, str], None] | None = None,
    ):
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self.max_open_seconds = max_open_seconds
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._current_open_seconds = open_seconds

    @property
    def state(self) -> str:
        with self._lock:
            self._advance()
            return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def _advance(self) -> None:
        if self._state == OPEN and self._clock() - self._opened_at >= self._current_open_seconds:
            self._set(HALF_OPEN, "open time elapsed; the next poll is a trial")

    def _set(self, state: str, reason: str) -> None:
        previous, self._state = self._state, state
        if previous == state:
            return
        log.info("source %s: circuit breaker %s -> %s (%s)", self.name, previous, state, reason)
        if self._on_change is not None:
            self._on_change(previous, state, reason)

    def allow(self) -> bool:
        """Return whether a poll may run now."""
        with self._lock:
            self._advance()
            return self._state != OPEN

    def seconds_until_trial(self) -> float:
        """Return the time until an open breaker lets a trial poll through (0 if not open)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self._current_open_seconds - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._current_open_seconds = self.open_seconds
            self._set(CLOSED, "poll succeeded")

    def record_failure(self, reason: str) -> None:
        with self._lock:
            self._advance()
            self._failures += 1
            if self._state == HALF_OPEN:
                self._current_open_seconds = min(self.max_open_seconds, self._current_open_seconds * 2)
                self._opened_at = self._clock()
                self._set(OPEN, f"trial poll failed: {reason}")
            elif self._state == CLOSED and self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._set(OPEN, f"{self._failures} polls failed in a row, last: {reason}")
