"""HTTP for the pollers: one httpx.Client per provider, rate limited, with retries.

Per request: the provider's rate limiter admits it first. A timeout, a
connection error or a 5xx is retried with exponential backoff and jitter,
up to ``max_retries`` times and never past the poll's deadline. A 429
blocks every source of the provider until its Retry-After has passed (the
limiter enforces that), and the request is retried after it when that
fits the deadline and ``max_retry_after``. Other 4xx responses are not
retried, because the request itself is wrong (bad key, unknown competition).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Mapping

import httpx
import orjson

from ingest.config import ProviderConfig
from ingest.providers.base import Request
from ingest.ratelimit import RateLimiter, RateLimitTimeout
from ingest.resilience import Backoff, parse_retry_after
from ingest.stats import IngestStats

log = logging.getLogger(__name__)

USER_AGENT = "livegate-ingest/1"


class FetchError(Exception):
    """A request that failed for good within this poll.

    ``status`` is the HTTP status, or None for a timeout or connection
    error. ``kind`` is a short label for logs and state changes
    ("status 503", "timeout", "rate limited").
    """

    def __init__(self, message: str, kind: str, status: int | None = None):
        self.kind = kind
        self.status = status
        super().__init__(message)


class RateLimitedError(FetchError):
    """The provider returned 429, or its rate limiter admits nothing, for longer than the poll can wait.

    ``retry_in`` is the number of seconds until a request can be sent again.
    """

    def __init__(self, message: str, kind: str, status: int | None = None, retry_in: float = 0.0):
        super().__init__(message, kind, status)
        self.retry_in = retry_in


class ShutdownError(Exception):
    """The process is stopping; the poll ends without a result."""


class ProviderClient:
    """Sends the requests of every source of one provider.

    ``transport`` replaces the network in tests. ``stop`` ends waits early
    when the process shuts down.
    """

    def __init__(
        self,
        provider: ProviderConfig,
        limiter: RateLimiter,
        stats: IngestStats,
        stop: threading.Event,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ):
        self.provider = provider
        self.limiter = limiter
        self.stats = stats
        self._stop = stop
        self._backoff = Backoff(provider.backoff_base, provider.backoff_max)
        self._rng = rng or random.Random()
        self._client = httpx.Client(
            base_url=provider.base_url,
            timeout=httpx.Timeout(provider.timeout),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self._stop.wait(seconds):
            raise ShutdownError()

    def get_json(self, source: str, request: Request, headers: Mapping[str, str], deadline: float) -> Any:
        """GET ``request`` and return the parsed JSON body.

        ``deadline`` is a time.monotonic() value after which no new attempt
        starts. Raises FetchError (or RateLimitedError) when every attempt
        failed, and ShutdownError on shutdown.
        """
        name = self.provider.name
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                self.limiter.acquire(max_wait=max(0.0, remaining))
            except RateLimitTimeout as error:
                raise RateLimitedError(
                    f"provider {name}: rate limit admits no request before the poll deadline "
                    f"(next in {error.wait:.1f} s)", "rate limiter", retry_in=error.wait) from None
            except InterruptedError:
                raise ShutdownError() from None
            self.stats.increment("requests_total", source)

            retry_after: float | None = None
            try:
                response = self._client.get(request.path, params=dict(request.params), headers=dict(headers))
            except httpx.TimeoutException as error:
                failure = FetchError(f"GET {request.path} timed out after {self.provider.timeout:g} s "
                                     f"({type(error).__name__})", "timeout")
            except httpx.TransportError as error:
                failure = FetchError(f"GET {request.path} failed: {error!r}", "connection error")
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return orjson.loads(response.content)
                    except orjson.JSONDecodeError as error:
                        raise FetchError(f"GET {request.path}: response is not JSON ({error})",
                                         "invalid JSON", status) from None
                if status == 429:
                    self.stats.increment("responses_429_total", source)
                    retry_after = self._handle_429(source, request, response)
                    failure = RateLimitedError(
                        f"GET {request.path}: 429 Too Many Requests, Retry-After {retry_after:g} s",
                        "status 429", status, retry_in=retry_after)
                elif status >= 500:
                    failure = FetchError(f"GET {request.path}: status {status}", f"status {status}", status)
                else:
                    raise FetchError(f"GET {request.path}: status {status}: {response.text[:200]!r}",
                                     f"status {status}", status)

            if attempt >= self.provider.max_retries:
                raise failure
            remaining = deadline - time.monotonic()
            if retry_after is not None:
                if retry_after > min(remaining, self.provider.max_retry_after):
                    raise failure
                delay = 0.0  # the limiter delays the request until the Retry-After time
            else:
                delay = self._backoff.delay(attempt, self._rng)
                if delay > remaining:
                    raise failure
            attempt += 1
            self.stats.increment("retries_total", source)
            log.debug("source %s: %s; retry %d of %d in %.2f s", source, failure, attempt,
                      self.provider.max_retries, delay)
            self._wait(delay)

    def _handle_429(self, source: str, request: Request, response: httpx.Response) -> float:
        header = response.headers.get("Retry-After")
        retry_after = parse_retry_after(header)
        if retry_after is None:
            # Without a usable Retry-After, wait a full window of the per-minute limit.
            retry_after = 60.0 if self.provider.requests_per_minute else 5.0
        self.limiter.block_until(time.time() + retry_after)
        log.warning("provider %s: 429 on source %s for GET %s; Retry-After %r, so every source of "
                    "the provider pauses %.1f s", self.provider.name, source, request.path, header,
                    retry_after)
        return retry_after
