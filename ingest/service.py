"""The ingest process: one polling thread per source, publishing canonical documents.

Each source thread polls only while it holds the source's lease
(``ingest/lease.py``), so two replicas never poll the same source. A poll
fetches the source's list, fetches by id the matches that left the list
before they finished, turns every match into a canonical document and
stores it as that provider's feed for the match in Redis. Then, under a
per-match lock, it chooses the provider to publish from
(``ingest/selection.py``) and publishes that provider's document through
the Publisher, whose auto-compare sends nothing when nothing changed. A
changed match also updates its competition's channel.

Threads, not gevent or asyncio: the process is I/O bound on a handful of
sources, and plain threads keep httpx, redis-py and the limiter simple.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import redis

from ingest.config import IngestConfig, ProviderConfig, SourceConfig
from ingest.document import (
    LIVE_STATUSES, competition_channel, competition_document, competition_entry,
    match_channel, match_document_problems, reconcile_event_ids,
)
from ingest.fetch import FetchError, ProviderClient, RateLimitedError, ShutdownError
from ingest.health import HealthMonitor, stall_limit
from ingest.lease import Lease, owner_token
from ingest.normalise import MatchIdentity, canonical_document, match_identity
from ingest.providers import ADAPTERS, ProviderError, ProviderMatch, ProviderRateLimited
from ingest.publisher import PublishError, Publisher
from ingest.ratelimit import RateLimiter, RedisRateLimitStore, provider_limits
from ingest.resilience import CircuitBreaker
from ingest.selection import FeedEntry, choose_provider
from ingest.stats import IngestStats
from ingest.store import IngestStore, LockTimeout
from livegate.redis_client import connect
from livegate.settings import Settings

log = logging.getLogger(__name__)

# A thread that is not polling checks for shutdown at least this often.
MAX_IDLE_STEP = 1.0


class SourcePoller:
    """The thread that polls one source while this replica holds its lease."""

    def __init__(self, service: "IngestService", source: SourceConfig):
        self.service = service
        self.source = source
        self.provider: ProviderConfig = service.config.providers[source.provider]
        self.client: ProviderClient = service.clients[source.provider]
        self.adapter = ADAPTERS[self.provider.type](source.name, self.provider.options, source.options)
        self.lease = Lease(service.redis, service.settings.key_prefix, source.name,
                           service.config.lease_ttl, token=service.token)
        self.breaker = CircuitBreaker(
            source.name, self.provider.failure_threshold, self.provider.breaker_open_seconds,
            max_open_seconds=max(self.provider.breaker_open_seconds, 300.0),
        )
        # Provider ids of matches seen live or scheduled and not yet final.
        self.tracked: set[str] = set()
        self.failing_kind: str | None = None
        self.failed_polls = 0
        self.redis_failing = False
        self._health_known = False
        service.health.add_source(source.name, source.poll_interval,
                                  stall_limit(source.poll_interval, self.provider.timeout))
        self.thread = threading.Thread(target=self.run, name=f"poll-{source.name}", daemon=True)

    @property
    def _stop(self) -> threading.Event:
        return self.service.stop_event

    # --- lease --------------------------------------------------------------------

    def _redis_failed(self, action: str, error: Exception) -> None:
        self.service.health.redis_failed(self.source.name, action, error)
        if not self.redis_failing:
            log.warning("source %s: Redis failed during %s: %s; retrying, logged again when it recovers",
                        self.source.name, action, error)
            self.redis_failing = True

    def _lease_observed(self, holder: str | None) -> None:
        self.service.health.lease_observed(self.source.name, self.lease.valid(), holder)

    def _redis_ok(self) -> None:
        self.service.health.redis_succeeded(self.source.name)
        if self.redis_failing:
            log.info("source %s: Redis reachable again", self.source.name)
            self.redis_failing = False

    def _hold_lease(self) -> bool:
        """Return whether this replica may poll now; waits a little when it may not."""
        lease = self.lease
        ttl = lease.ttl
        try:
            if lease.held:
                if lease.seconds_left() < ttl * 2 / 3:
                    lease.renew()
                self._redis_ok()
                if lease.valid():
                    return True
                if lease.held:
                    lease.mark_lost()
                self.service.stats.increment("lease_lost_total", self.source.name)
                self._lease_observed(None)
                return False
            if lease.try_acquire():
                self._redis_ok()
                self.service.stats.increment("lease_acquired_total", self.source.name)
                self._health_known = False
                self._lease_observed(self.service.token)
                return True
            wait = lease.time_until_free()
            self._lease_observed(lease.holder())
            self._redis_ok()
        except redis.RedisError as error:
            self._redis_failed("the lease check", error)
            if lease.held and not lease.valid():
                lease.mark_lost()
                self.service.stats.increment("lease_lost_total", self.source.name)
                self._lease_observed(None)
            self._stop.wait(min(MAX_IDLE_STEP, ttl / 3))
            return lease.valid()
        # Sleep until the holder's key can expire, but look again at least
        # every third of a TTL in case it was renewed with a shorter one.
        step = ttl / 3 if wait is None else min(max(wait, 0.01), ttl / 3)
        self._stop.wait(min(step, MAX_IDLE_STEP))
        return False

    def _idle_until(self, until: float) -> None:
        """Wait until the monotonic time ``until``, renewing the lease on the way."""
        while not self._stop.is_set():
            self.service.health.tick(self.source.name)
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            if self.lease.held and self.lease.seconds_left() < self.lease.ttl * 2 / 3:
                try:
                    renewed = self.lease.renew()
                except redis.RedisError as error:
                    self._redis_failed("a lease renewal", error)
                    if not self.lease.valid():
                        self.lease.mark_lost()
                        self.service.stats.increment("lease_lost_total", self.source.name)
                        self._lease_observed(None)
                        return
                else:
                    # Reported here too, because a long Retry-After keeps the
                    # poller in this loop for many renewals.
                    self._redis_ok()
                    if not renewed:
                        self.service.stats.increment("lease_lost_total", self.source.name)
                        self._lease_observed(None)
                        return
            self._stop.wait(min(remaining, self.lease.ttl / 6, MAX_IDLE_STEP))

    # --- the loop -----------------------------------------------------------------

    def run(self) -> None:
        name, interval = self.source.name, self.source.poll_interval
        log.info("source %s (provider %s): poller started; it polls every %g s while this replica "
                 "has the lease %s", name, self.provider.name, interval, self.lease.key)
        try:
            while not self._stop.is_set():
                self.service.health.tick(name)
                try:
                    self._step(interval)
                except Exception:  # noqa: BLE001 - the thread must outlive any bug in one step
                    log.exception("source %s: poller step failed unexpectedly; continuing in 1 s", name)
                    self._stop.wait(MAX_IDLE_STEP)
        finally:
            if not self._stop.is_set():
                self.service.health.poller_exited(name)
            self.lease.release()
            log.info("source %s: poller stopped after %d failed polls in a row", name, self.failed_polls)

    def _step(self, interval: float) -> None:
        """Take or keep the lease, then poll once and wait for the next poll."""
        if not self._hold_lease():
            return
        if not self.breaker.allow():
            self.service.stats.increment("polls_skipped_total", self.source.name)
            self._idle_until(time.monotonic() + min(interval, max(self.breaker.seconds_until_trial(), 0.01)))
            return
        started = time.monotonic()
        # The poll ends before the lease can expire, so a replica that takes
        # the lease over does not overlap with this one's requests (except a
        # request already in flight, whose results are then dropped).
        deadline = started + min(interval, max(0.0, self.lease.seconds_left()))
        resume_in = self.poll_once(deadline)
        self._idle_until(started + max(interval, resume_in))

    def poll_once(self, deadline: float) -> float:
        """Run one poll; every error is caught, counted and logged once per state change.

        Returns the seconds after the poll's start before the next poll
        may run: 0 normally, longer when the provider's rate limit or a
        Retry-After admits no request before then.
        """
        stats, name = self.service.stats, self.source.name
        stats.increment("polls_total", name)
        try:
            matches = self._fetch_all(deadline)
        except ShutdownError:
            return 0.0
        except ProviderRateLimited as error:
            self.client.limiter.block_until(time.time() + error.retry_after)
            self._failed("rate limited", str(error), trip_breaker=False)
            return error.retry_after
        except RateLimitedError as error:
            self._failed(error.kind, str(error), trip_breaker=False)
            return error.retry_in
        except FetchError as error:
            self._failed(error.kind, str(error))
            return 0.0
        except ProviderError as error:
            self._failed("invalid response", str(error))
            return 0.0
        except redis.RedisError as error:
            # The rate limiter lives in Redis; this is not the provider's fault.
            self._redis_failed("the rate limiter", error)
            return 0.0
        except Exception as error:  # noqa: BLE001 - a poller must survive any adapter bug
            log.exception("source %s: poll failed with an unexpected error", name)
            self._failed("internal error", repr(error))
            return 0.0
        self._succeeded()
        if not self.lease.valid():
            log.warning("source %s: lease expired during the poll; its %d matches are not published",
                        name, len(matches))
            return 0.0
        try:
            self.service.handle_matches(self.source, self.provider, matches, time.time())
            self._redis_ok()
        except (redis.RedisError, LockTimeout, PublishError) as error:
            stats.increment("publish_errors_total", name)
            self._redis_failed("publishing", error)
        return 0.0

    def _fetch(self, request, deadline: float) -> list[ProviderMatch]:
        self.service.health.tick(self.source.name)
        headers = self.adapter.auth_headers(self.provider.api_key)
        payload = self.client.get_json(self.source.name, request, headers, deadline)
        self.adapter.check_errors(payload)
        return self.adapter.parse(payload)

    def _fetch_all(self, deadline: float) -> list[ProviderMatch]:
        matches: list[ProviderMatch] = []
        for request in self.adapter.list_requests():
            matches.extend(self._fetch(request, deadline))
        listed = {match.provider_id for match in matches}
        missing = sorted(self.tracked - listed)
        if missing:
            by_id: list[ProviderMatch] = []
            for request in self.adapter.by_ids_requests(missing):
                by_id.extend(self._fetch(request, deadline))
            returned = {match.provider_id for match in by_id}
            for provider_id in missing:
                if provider_id not in returned:
                    log.info("source %s: match %s left the list and is not found by id; no longer tracked",
                             self.source.name, provider_id)
            # Keep following a match outside the list only while it is live.
            self.tracked -= set(missing)
            for match in by_id:
                if match.document["status"] in LIVE_STATUSES:
                    self.tracked.add(match.provider_id)
            matches.extend(by_id)
        for match in matches:
            if match.provider_id in listed:
                if match.final:
                    self.tracked.discard(match.provider_id)
                else:
                    self.tracked.add(match.provider_id)
        return matches

    def _failed(self, kind: str, message: str, trip_breaker: bool = True) -> None:
        self.failed_polls += 1
        self.service.stats.increment("poll_errors_total", self.source.name)
        if trip_breaker:
            self.breaker.record_failure(message)
        if self.failing_kind == kind:
            return
        log.warning("source %s (provider %s): poll failed (%s): %s; further failures of this kind "
                    "are counted, not logged", self.source.name, self.provider.name, kind, message)
        self.failing_kind = kind
        self._write_health(False, message)

    def _succeeded(self) -> None:
        self.breaker.record_success()
        if self.failing_kind is not None:
            log.info("source %s (provider %s): polls succeed again after %d failed polls (last failure: %s)",
                     self.source.name, self.provider.name, self.failed_polls, self.failing_kind)
            self.failing_kind = None
            self.failed_polls = 0
            self._write_health(True, "recovered")
        elif not self._health_known:
            self._write_health(True, "first poll after taking the lease")

    def _write_health(self, ok: bool, reason: str) -> None:
        try:
            self.service.store.write_health(self.source.name, ok, time.time(), reason)
            self._health_known = True
        except redis.RedisError as error:
            self._redis_failed("the health update", error)


class IngestService:
    """Every source poller of one configuration, with shared clients, limiters and state."""

    def __init__(
        self,
        config: IngestConfig,
        settings: Settings,
        client: redis.Redis | None = None,
        stats: IngestStats | None = None,
        transport_factory: Callable[[ProviderConfig], httpx.BaseTransport | None] | None = None,
        stats_file: str | os.PathLike | None = None,
    ):
        self.config = config
        self.settings = settings
        self.redis = client or connect(
            settings, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
        self.publisher = Publisher.from_settings(settings, self.redis)
        self.store = IngestStore(self.redis, settings.key_prefix)
        self.stats = stats or IngestStats()
        self.stop_event = threading.Event()
        self.token = owner_token()
        self.health = HealthMonitor(self.token, self.stop_event)
        self.stats_file = Path(stats_file) if stats_file else None
        self._invalid_reported: set[tuple[str, str]] = set()

        rate_store = RedisRateLimitStore(self.redis, settings.key_prefix)
        self.clients: dict[str, ProviderClient] = {}
        for name, provider in config.providers.items():
            limiter = RateLimiter(
                name, provider_limits(provider.requests_per_minute, provider.requests_per_day), rate_store,
                sleep=self.stop_event.wait, on_wait=lambda seconds, name=name: self._limiter_waited(name, seconds),
            )
            transport = transport_factory(provider) if transport_factory else None
            self.clients[name] = ProviderClient(provider, limiter, self.stats, self.stop_event, transport)
        self.pollers = [SourcePoller(self, source) for source in config.sources]
        self._stats_thread = threading.Thread(target=self._report_stats, name="ingest-stats", daemon=True)

    def _limiter_waited(self, provider: str, seconds: float) -> None:
        self.stats.increment("limiter_waits_total", provider)
        self.stats.increment("limiter_wait_seconds_total", provider, seconds)

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        log.info("ingest started: %d sources, %d providers, replica %s, key prefix %s",
                 len(self.pollers), len(self.clients), self.token, self.settings.key_prefix)
        self.health.mark_started()
        for poller in self.pollers:
            poller.thread.start()
        self._stats_thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every poller, release their leases and close the HTTP clients."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for poller in self.pollers:
            poller.thread.join(max(0.0, deadline - time.monotonic()))
            if poller.thread.is_alive():
                log.warning("source %s: poller did not stop within %g s", poller.source.name, timeout)
        for client in self.clients.values():
            client.close()
        self._write_stats()
        log.info("ingest stopped: %s", self._stats_line())

    def wait(self) -> None:
        while not self.stop_event.wait(MAX_IDLE_STEP):
            pass

    # --- matches --------------------------------------------------------------------

    def handle_matches(self, source: SourceConfig, provider: ProviderConfig,
                       matches: list[ProviderMatch], fetched_at: float) -> None:
        for match in matches:
            self.stats.increment("matches_parsed_total", source.name)
            identity = match_identity(self.config, provider, match.provider_id)
            document = canonical_document(self.config, provider, match, identity)
            if self.config.validate_documents:
                problems = match_document_problems(document)
                if problems:
                    self.stats.increment("matches_invalid_total", source.name)
                    if (source.name, identity.match_id) not in self._invalid_reported:
                        self._invalid_reported.add((source.name, identity.match_id))
                        log.warning("source %s: match %s (provider id %s) dropped, the document is "
                                    "invalid: %s", source.name, identity.match_id, match.provider_id,
                                    "; ".join(problems[:5]))
                    continue
            self.store.write_feed(identity.match_id, FeedEntry(provider.name, source.name, fetched_at, document))
            self.select_and_publish(identity)

    def select_and_publish(self, identity: MatchIdentity) -> None:
        """Choose the match's provider and publish its document (nothing leaves if unchanged)."""
        match_id = identity.match_id
        sources = [source.name for source in self.config.sources if source.provider in identity.providers]
        with self.store.lock(f"match:{match_id}"):
            feeds, state, health = self.store.read_match(match_id, sources)
            feeds = {provider: entry for provider, entry in feeds.items() if provider in identity.providers}
            decision = choose_provider(identity.providers, feeds, health, state, time.time(),
                                       self.config.stale_after, self.config.switch_back_after)
            if decision.state != state:
                self.store.write_state(match_id, decision.state)
            if decision.switched:
                self.stats.increment("provider_switches_total", match_id)
                log.info("match %s: provider switched %s -> %s: %s", match_id, state.active,
                         decision.provider, decision.reason)
            if decision.provider is None:
                return
            document = feeds[decision.provider].document
            channel = match_channel(match_id)
            _, published = self.publisher.current(channel)
            if not isinstance(published, dict):
                published = None
            if published is not None:
                document = {**document, "events": reconcile_event_ids(published.get("events"), document["events"])}
            result = self.publisher.publish(channel, document)
        self.stats.increment("publishes_total", decision.provider)
        if result.changed:
            self.stats.increment("changes_total", decision.provider)
            self._update_competition(document)
            previous_competition = (published or {}).get("competition") or {}
            if previous_competition.get("code") not in (None, document["competition"]["code"]):
                # The fallback provider files the match under another code.
                self._update_competition(published, remove=True)

    def _update_competition(self, document: dict, remove: bool = False) -> None:
        """Store (or remove) the match's entry and publish its competition's document."""
        code, name = document["competition"]["code"], document["competition"]["name"]
        live = document["status"] in LIVE_STATUSES and not remove
        entry = competition_entry(document) if live else None
        with self.store.lock(f"competition:{code}"):
            entries = self.store.update_competition(code, document["id"], entry)
            result = self.publisher.publish(competition_channel(code), competition_document(code, name, entries))
        self.stats.increment("publishes_total", "competition")
        if result.changed:
            self.stats.increment("changes_total", "competition")

    # --- stats ----------------------------------------------------------------------

    def _stats_line(self) -> str:
        totals = self.stats.snapshot()["totals"]
        return " ".join(f"{name}={value:g}" for name, value in totals.items())

    def _write_stats(self) -> None:
        if self.stats_file is None:
            return
        temporary = self.stats_file.with_name(self.stats_file.name + ".tmp")
        try:
            temporary.write_text(json.dumps({"time": time.time(), **self.stats.snapshot()}, indent=1))
            temporary.replace(self.stats_file)
        except OSError as error:
            log.warning("writing the stats file %s failed: %s", self.stats_file, error)

    def _report_stats(self) -> None:
        interval = self.config.stats_interval
        next_log = time.monotonic() + interval
        while not self.stop_event.wait(min(1.0, interval)):
            self._write_stats()
            if time.monotonic() >= next_log:
                log.info("ingest stats: %s", self._stats_line())
                next_log = time.monotonic() + interval
