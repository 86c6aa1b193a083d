"""Request limits per provider: sliding windows of a minute and of a day.

One RateLimiter exists per provider and every source of that provider
takes its requests from it, so several competitions polled from one
account never exceed the account's quota together. A sliding window
admits a request only when fewer than ``limit`` requests were admitted in
the ``window`` seconds before it. That is stricter than the fixed windows
providers count in (a calendar minute, a UTC day), so a client within the
sliding limit is within the provider's limit too.

The state lives in a store: MemoryRateLimitStore for one process, or
RedisRateLimitStore when two ingest replicas share a provider account.
A 429 response blocks the whole provider until its Retry-After has passed.
"""

from __future__ import annotations

import collections
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import redis

log = logging.getLogger(__name__)

MINUTE = 60.0
DAY = 86_400.0
# Added to every window. A provider counts a request when it arrives, up to
# a network delay after this limiter admitted it. A slightly longer window
# keeps a burst at a window's edge within the provider's count.
WINDOW_MARGIN = 1.0


@dataclass(frozen=True)
class WindowLimit:
    """At most ``limit`` requests in any ``window`` seconds; ``name`` is for logs."""

    name: str
    limit: int
    window: float


def provider_limits(per_minute: int | None, per_day: int | None) -> tuple[WindowLimit, ...]:
    """Return the windows of a provider's configured limits; None means no limit for that window."""
    limits = []
    if per_minute is not None:
        limits.append(WindowLimit("minute", per_minute, MINUTE + WINDOW_MARGIN))
    if per_day is not None:
        limits.append(WindowLimit("day", per_day, DAY + WINDOW_MARGIN))
    return tuple(limits)


class RateLimitStore(Protocol):
    def try_acquire(self, provider: str, limits: tuple[WindowLimit, ...], now: float) -> float:
        """Admit one request and return 0, or admit none and return the seconds to wait."""

    def block_until(self, provider: str, until: float, now: float) -> None:
        """Admit no request of ``provider`` before Unix time ``until``; ``now`` is the caller's clock."""


class MemoryRateLimitStore:
    """Sliding-window state of one process, for any number of providers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._admitted: dict[tuple[str, str], collections.deque] = collections.defaultdict(collections.deque)
        self._blocked: dict[str, float] = {}

    def try_acquire(self, provider: str, limits: tuple[WindowLimit, ...], now: float) -> float:
        with self._lock:
            blocked = self._blocked.get(provider, 0.0)
            if blocked > now:
                return blocked - now
            wait = 0.0
            for limit in limits:
                times = self._admitted[(provider, limit.name)]
                while times and times[0] <= now - limit.window:
                    times.popleft()
                if len(times) >= limit.limit:
                    # The request that must leave the window before one more fits.
                    releasing = times[len(times) - limit.limit]
                    wait = max(wait, releasing + limit.window - now)
            if wait > 0:
                return wait
            for limit in limits:
                self._admitted[(provider, limit.name)].append(now)
            return 0.0

    def block_until(self, provider: str, until: float, now: float) -> None:
        with self._lock:
            self._blocked[provider] = max(self._blocked.get(provider, 0.0), until)


# Admits one request in every window or none. Times are integer milliseconds
# of the callers' clocks: replicas on one host share it, replicas on several
# hosts rely on NTP.
#
# KEYS[1..n-1]  sorted sets of admitted requests, one per window
# KEYS[n]       the provider's "blocked until" time
# ARGV[1]       now (ms)   ARGV[2] unique member for this request
# ARGV[2i+1], ARGV[2i+2]  limit and window (ms) of KEYS[i]
# Returns 0 when admitted, else the milliseconds to wait.
_ACQUIRE_SCRIPT = """
local now = tonumber(ARGV[1])
local blocked = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
if blocked > now then
  return blocked - now
end
local wait = 0
for i = 1, #KEYS - 1 do
  local limit = tonumber(ARGV[2 * i + 1])
  local window = tonumber(ARGV[2 * i + 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    local releasing = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    local until_free = tonumber(releasing[2]) + window - now
    if until_free > wait then
      wait = until_free
    end
  end
end
if wait > 0 then
  return math.ceil(wait)
end
for i = 1, #KEYS - 1 do
  redis.call('ZADD', KEYS[i], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 * i + 2]))
end
return 0
"""

_BLOCK_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ms = tonumber(ARGV[1])
if until_ms > current then
  redis.call('SET', KEYS[1], until_ms, 'PX', math.max(1, until_ms - tonumber(ARGV[2])))
end
return 0
"""


class RedisRateLimitStore:
    """Sliding-window state in Redis, shared by every ingest replica with the same key prefix.

    Keys: ``{prefix}:ingest:ratelimit:{provider}:{window name}`` (sorted
    sets that expire with their window) and
    ``{prefix}:ingest:ratelimit:{provider}:blocked``.
    """

    def __init__(self, client: redis.Redis, key_prefix: str = "lg"):
        self._client = client
        self._prefix = key_prefix
        self._acquire = client.register_script(_ACQUIRE_SCRIPT)
        self._block = client.register_script(_BLOCK_SCRIPT)

    def _key(self, provider: str, part: str) -> str:
        return f"{self._prefix}:ingest:ratelimit:{provider}:{part}"

    def try_acquire(self, provider: str, limits: tuple[WindowLimit, ...], now: float) -> float:
        keys = [self._key(provider, limit.name) for limit in limits] + [self._key(provider, "blocked")]
        now_ms = int(now * 1000)
        args: list = [now_ms, f"{now_ms}-{secrets.token_hex(6)}"]
        for limit in limits:
            args.extend([limit.limit, int(limit.window * 1000)])
        wait_ms = int(self._acquire(keys=keys, args=args))
        return wait_ms / 1000.0

    def block_until(self, provider: str, until: float, now: float) -> None:
        self._block(keys=[self._key(provider, "blocked")],
                    args=[int(math.ceil(until * 1000)), int(now * 1000)])


class RateLimitTimeout(Exception):
    """A request could not be admitted within the time the caller allowed."""

    def __init__(self, provider: str, wait: float):
        self.provider = provider
        self.wait = wait
        super().__init__(f"provider {provider}: rate limit admits no request for {wait:.1f} s")


class RateLimiter:
    """The limiter of one provider, shared by all of its sources.

    ``clock`` returns Unix time and ``sleep(seconds)`` waits, returning
    True when the wait was cut short by shutdown; both are injectable for
    tests. ``on_wait(seconds)`` is called once per request that had to
    wait, with the time it waited, and once per request deferred because
    its wait would exceed ``max_wait``.
    """

    def __init__(
        self,
        provider: str,
        limits: tuple[WindowLimit, ...],
        store: RateLimitStore,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], bool] | None = None,
        on_wait: Callable[[float], None] | None = None,
    ):
        self.provider = provider
        self.limits = limits
        self._store = store
        self._clock = clock
        self._sleep = sleep or _plain_sleep
        self._on_wait = on_wait

    def acquire(self, max_wait: float | None = None) -> float:
        """Wait until one request is admitted and return the seconds waited.

        Raises RateLimitTimeout, without waiting, when the next admission is
        further away than ``max_wait`` seconds, and InterruptedError when
        ``sleep`` reports shutdown.
        """
        started = self._clock()
        waited = False
        while True:
            now = self._clock()
            wait = self._store.try_acquire(self.provider, self.limits, now)
            if wait <= 0:
                total = now - started
                if waited and self._on_wait is not None:
                    self._on_wait(total)
                return total
            if max_wait is not None and (now - started) + wait > max_wait:
                if self._on_wait is not None:
                    self._on_wait(now - started)
                raise RateLimitTimeout(self.provider, wait)
            if not waited:
                log.debug("provider %s: rate limit reached, waiting %.2f s", self.provider, wait)
            waited = True
            # A short extra delay, so the window has surely moved on when we ask again.
            if self._sleep(wait + 0.005):
                raise InterruptedError(f"provider {self.provider}: shutdown while waiting for the rate limit")

    def block_until(self, until: float) -> None:
        """Admit no request before Unix time ``until`` (after a 429 with Retry-After)."""
        self._store.block_until(self.provider, until, self._clock())


def _plain_sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False
