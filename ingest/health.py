"""Liveness and readiness of the ingest process, for ``/healthz`` and ``/readyz``.

The poller threads record what they do (``tick``, lease and Redis
outcomes) and the HTTP server's threads read a verdict built from it. No
I/O happens here, so a probe never waits on Redis or a partner API, and
the rules can be tested with a fake clock.

Liveness: every source poller's loop has ticked within its stall limit,
and no poller thread has exited while the process is running. A poller
ticks at every step of its loop, before every request and at least once
a second while it waits for the lease or its next poll, so a replica
that polls nothing (a standby, or a holder waiting out a Retry-After)
stays live. Waits inside a poll (rate limiter, retry backoff) end at the
poll's deadline and do not tick.

Readiness: the configuration is loaded (the server starts after it is),
the pollers have started and are not stopping, and each poller's latest
Redis operation (lease check, renewal, rate limiter, publish) succeeded,
within its stall limit. Holding a lease is not required: a standby that
reaches Redis is ready to take over. Partner API failures do not count,
because another replica would fail the same way, and the poll error
counters report them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

# Shortest stall limit, whatever the poll interval. A poller's Redis
# command can block for its socket timeout (5 s), and a loaded node can
# delay a thread for seconds, so short intervals get this floor.
MIN_STALL_SECONDS = 60.0

HOLDER = "holder"
STANDBY = "standby"


def stall_limit(poll_interval: float, request_timeout: float) -> float:
    """Return the seconds without a tick after which a poller counts as stalled.

    A poll ends at its deadline, one poll interval after it started, but
    a request sent just before the deadline may run for one more request
    timeout. Twice that sum leaves room for a slow Redis and a loaded host.
    """
    # NOTE: an estimate of the longest gap between two ticks of a healthy
    # poller, not a measured bound.
    return max(MIN_STALL_SECONDS, 2.0 * (poll_interval + request_timeout))


@dataclass
class SourceHealth:
    """The last reported state of one source's poller, with times in monotonic seconds."""

    poll_interval: float
    stall_after: float
    last_tick: float | None = None
    exited: bool = False
    role: str = STANDBY
    lease_holder: str | None = None
    last_redis_success: float | None = None
    redis_error: str | None = None
    redis_failed_at: float | None = None


@dataclass(frozen=True)
class Verdict:
    """A probe's result: ``ok`` selects 200 or 503, ``body`` is the JSON object to send."""

    ok: bool
    body: dict


class HealthMonitor:
    """The state behind ``/healthz`` and ``/readyz``, safe to update and read from any thread.

    ``replica`` is the owner token that this process writes into the
    leases, so a body names the same id as the lease keys and the logs.
    ``stop_event`` is the service's: once it is set, pollers that exit
    are expected and readiness fails.
    """

    def __init__(self, replica: str, stop_event: threading.Event,
                 clock: Callable[[], float] = time.monotonic):
        self.replica = replica
        self._stop_event = stop_event
        self._clock = clock
        self._lock = threading.Lock()
        self._sources: dict[str, SourceHealth] = {}
        self._started_at: float | None = None
        # The last verdicts, so that only changes are logged.
        self._live = True
        self._ready = False

    # --- updates from the service and the pollers ----------------------------------

    def add_source(self, source: str, poll_interval: float, stall_after: float) -> None:
        with self._lock:
            self._sources[source] = SourceHealth(poll_interval, stall_after)

    def mark_started(self) -> None:
        with self._lock:
            now = self._clock()
            self._started_at = now
            # A poller's stall limit counts from the start, not from its first tick.
            for state in self._sources.values():
                state.last_tick = now

    def tick(self, source: str) -> None:
        with self._lock:
            self._sources[source].last_tick = self._clock()

    def poller_exited(self, source: str) -> None:
        """Record that the source's poller thread ended while the process runs, which fails liveness."""
        with self._lock:
            self._sources[source].exited = True

    def lease_observed(self, source: str, held: bool, holder: str | None) -> None:
        """Record whether this replica holds the source's lease, and its holder (None if free or unknown)."""
        with self._lock:
            state = self._sources[source]
            state.role = HOLDER if held else STANDBY
            state.lease_holder = self.replica if held else holder

    def redis_succeeded(self, source: str) -> None:
        with self._lock:
            state = self._sources[source]
            state.last_redis_success = self._clock()
            state.redis_error = None
            state.redis_failed_at = None

    def redis_failed(self, source: str, action: str, error: BaseException) -> None:
        with self._lock:
            state = self._sources[source]
            if state.redis_error is None:
                state.redis_failed_at = self._clock()
            state.redis_error = f"Redis failed during {action}: {error}"

    # --- verdicts ---------------------------------------------------------------------

    def liveness(self) -> Verdict:
        with self._lock:
            now = self._clock()
            if self._stop_event.is_set():
                status, problems = "stopping", []
            else:
                status = "ok" if self._started_at is not None else "starting"
                problems = self._stall_problems(now)
            verdict = _verdict(problems, "not_live", self._body(now, status))
        self._log_liveness(verdict.ok, problems)
        return verdict

    def readiness(self) -> Verdict:
        with self._lock:
            now = self._clock()
            if self._started_at is None:
                problems = ["the pollers have not started yet"]
            elif self._stop_event.is_set():
                problems = ["the process is stopping"]
            else:
                problems = self._stall_problems(now) + self._redis_problems(now)
            verdict = _verdict(problems, "not_ready", self._body(now, "ready"))
        self._log_readiness(verdict.ok, problems)
        return verdict

    # --- helpers; the caller holds the lock -------------------------------------------

    def _stall_problems(self, now: float) -> list[str]:
        if self._started_at is None:
            return []
        problems = []
        for source, state in self._sources.items():
            if state.exited:
                problems.append(f"source {source}: poller thread exited while the process runs")
                continue
            age = now - (state.last_tick if state.last_tick is not None else self._started_at)
            if age > state.stall_after:
                problems.append(
                    f"source {source} ({state.role}): poller loop last ticked {age:.1f} s ago, "
                    f"more than its limit of {state.stall_after:g} s (poll interval {state.poll_interval:g} s)")
        return problems

    def _redis_problems(self, now: float) -> list[str]:
        problems = []
        for source, state in self._sources.items():
            if state.redis_error is not None:
                assert state.redis_failed_at is not None
                problems.append(f"source {source} ({state.role}): {state.redis_error} "
                                f"(failing for {now - state.redis_failed_at:.1f} s)")
            elif state.last_redis_success is None:
                problems.append(f"source {source}: no Redis operation has succeeded yet")
            elif now - state.last_redis_success > state.stall_after:
                problems.append(f"source {source} ({state.role}): last successful Redis operation "
                                f"{now - state.last_redis_success:.1f} s ago, more than "
                                f"{state.stall_after:g} s")
        return problems

    def _body(self, now: float, status: str) -> dict:
        sources = {}
        for source, state in self._sources.items():
            sources[source] = {
                "role": state.role,
                "lease_holder": state.lease_holder,
                "last_tick_seconds_ago": _age(now, state.last_tick),
                "stall_after_seconds": state.stall_after,
                "last_redis_success_seconds_ago": _age(now, state.last_redis_success),
                "redis_error": state.redis_error,
            }
        return {"status": status, "replica": self.replica, "sources": sources}

    # --- logs, once per change of verdict ---------------------------------------------

    def _log_liveness(self, ok: bool, problems: list[str]) -> None:
        with self._lock:
            changed, self._live = self._live != ok, ok
        if not changed:
            return
        if ok:
            log.info("replica %s: live again", self.replica)
        else:
            log.error("replica %s: not live, so a liveness probe restarts the process: %s",
                      self.replica, "; ".join(problems))

    def _log_readiness(self, ok: bool, problems: list[str]) -> None:
        with self._lock:
            changed, self._ready = self._ready != ok, ok
        if not changed:
            return
        if ok:
            log.info("replica %s: ready", self.replica)
        else:
            # A stop is routine; anything else needs an operator's look.
            level = logging.INFO if self._stop_event.is_set() else logging.WARNING
            log.log(level, "replica %s: not ready: %s", self.replica, "; ".join(problems))


def _verdict(problems: list[str], error: str, body: dict) -> Verdict:
    """Build a 200 verdict from ``body``, or a 503 one whose message lists every problem."""
    if not problems:
        return Verdict(True, body)
    failed = {"error": error, "message": "; ".join(problems)}
    failed.update((key, value) for key, value in body.items() if key != "status")
    return Verdict(False, failed)


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(now - then, 3)
