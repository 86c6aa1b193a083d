"""Redis clients built from settings, and the mapping of channels to Redis.

Every livegate process (gateway workers, the per-pod subscriber, ingest,
the demo feed) builds its Redis clients with ``connect``, so the choice
between a plain ``REDIS_URL`` and Redis Sentinel is made here only.

- Without ``LIVEGATE_REDIS_SENTINELS``, the client reaches the server that
  ``REDIS_URL`` names.
- With it, the client queries the sentinels for the current primary of
  ``LIVEGATE_REDIS_SENTINEL_SERVICE`` whenever it opens a connection. A
  connection that the old primary closes during a failover, or that
  receives READONLY from a demoted primary, is dropped, and the next
  attempt queries the sentinels again.

``client_for_channel`` is the one place that decides which Redis stores a
channel. Today that is always the single primary.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from livegate.settings import SettingError, Settings

log = logging.getLogger(__name__)

DEFAULT_SOCKET_TIMEOUT = 10.0
DEFAULT_SOCKET_CONNECT_TIMEOUT = 5.0
# Seconds a caller waits for a free connection of a full pool.
DEFAULT_POOL_TIMEOUT = 10.0
# Minimum seconds between two queries of a sentinel-backed pool to the sentinels.
PRIMARY_CHECK_INTERVAL = 1.0

# URL parts that name the server. With sentinels, the sentinels name it instead.
_ADDRESS_OPTIONS = ("host", "port", "connection_class")


class _SentinelPool(SentinelConnectionPool):
    """A sentinel-backed pool that notices a new primary within about a second.

    redis-py queries the sentinels only when it opens a connection. After a
    failover the old primary keeps its clients' connections and accepts
    writes until the sentinels demote it, which took about 10 s with
    Redis 7.0.15, and those writes are lost when it resynchronises from
    the new primary. So this pool queries the sentinels again, at most
    every PRIMARY_CHECK_INTERVAL seconds, when a connection is taken. When the
    primary moved, redis-py closes the idle connections and drops the busy
    ones when they come back, so new commands go to the new primary.

    Other callers do not wait for such a periodic query and may still reach
    the old primary until it returns. After ``request_primary_check``, by
    contrast, every caller waits for one fresh query before it takes a
    connection.

    It also closes its sentinel connections on ``Redis.close()``, which
    calls ``disconnect()`` with the default ``inuse_connections=True``.
    redis-py calls it with False when the primary moved, which must keep
    them.
    """

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any):
        super().__init__(service_name, sentinel_manager, **kwargs)
        self._next_check = 0.0
        self._check_failed = False
        self._check_requested = False
        # Created here, after gevent's monkey patching, so that under gevent
        # it blocks a greenlet, not the whole worker.
        self._check_lock = threading.Lock()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._check_requested:
            # The flag stays set until the query returns, so that callers
            # arriving meanwhile wait here instead of using old connections.
            with self._check_lock:
                if self._check_requested:
                    self._check_primary()
                    self._check_requested = False
        elif time.monotonic() >= self._next_check:
            self._check_primary()
        return super().get_connection(*args, **kwargs)

    def request_check(self) -> None:
        """Make the next caller query the sentinels, and the callers after it wait for that."""
        self._check_requested = True

    def _check_primary(self) -> None:
        # Set first, so that concurrent callers skip a periodic check.
        self._next_check = time.monotonic() + PRIMARY_CHECK_INTERVAL
        before = self.master_address
        try:
            after = self.get_master_address()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            # During a failover the sentinels name no primary for a moment.
            # Existing connections stay in use meanwhile.
            if not self._check_failed:
                log.warning("querying the sentinels for the primary of %r failed: %s. The "
                            "current connections stay in use until the next query, within "
                            "%.0f s", self.service_name, error, PRIMARY_CHECK_INTERVAL)
            self._check_failed = True
            return
        if self._check_failed:
            log.info("the sentinels name %s:%s as the primary of %r again",
                     *after, self.service_name)
            self._check_failed = False
        if before is not None and after != before:
            log.warning("the primary of %r moved from %s:%s to %s:%s, reconnecting",
                        self.service_name, *before, *after)

    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        if inuse_connections:
            self.sentinel_manager.close()


class BlockingSentinelConnectionPool(_SentinelPool, redis.BlockingConnectionPool):
    """A sentinel-backed pool that waits for a free connection instead of failing.

    redis-py 8.1 ships only a non-blocking SentinelConnectionPool, which
    raises ConnectionError("Too many connections") when all are in use.
    In a gevent worker thousands of greenlets share one pool, so they must
    queue for up to ``timeout`` seconds, as with BlockingConnectionPool.
    """

    def release(self, connection: Any) -> None:
        owned = self.owns_connection(connection)
        super().release(connection)
        if not owned:
            # BlockingConnectionPool puts an empty slot back for a connection
            # to the old primary, but it keeps the object in ``_connections``.
            # Without this, every failover would leave up to max_connections
            # dead connection objects behind.
            try:
                self._connections.remove(connection)
            except ValueError:
                pass


def connect(
    settings: Settings,
    *,
    max_connections: int | None = None,
    blocking: bool = True,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    socket_timeout: float | None = DEFAULT_SOCKET_TIMEOUT,
    socket_connect_timeout: float | None = DEFAULT_SOCKET_CONNECT_TIMEOUT,
    **options: Any,
) -> redis.Redis:
    """Build a client of the Redis primary that the settings name.

    ``max_connections`` bounds the client's pool. With ``blocking``, a caller
    that finds every connection in use waits up to ``pool_timeout`` seconds
    before ConnectionError. Without ``blocking``, it gets ConnectionError at
    once. Without ``max_connections`` the pool is unbounded. ``options`` go
    to every connection to the primary (``health_check_interval``, say).
    Options in the query string of ``REDIS_URL`` override all of these, as
    in ``redis.Redis.from_url``.

    Raises SettingError when ``REDIS_URL`` is invalid or is a ``unix://``
    URL together with sentinels.
    """
    options.update(socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout)
    if settings.redis_sentinels:
        return _connect_sentinel(settings, max_connections, blocking, pool_timeout, options)
    try:
        if max_connections is None:
            return redis.Redis.from_url(settings.redis_url, **options)
        if blocking:
            pool = redis.BlockingConnectionPool.from_url(
                settings.redis_url, max_connections=max_connections, timeout=pool_timeout,
                **options,
            )
        else:
            pool = redis.ConnectionPool.from_url(
                settings.redis_url, max_connections=max_connections, **options
            )
    except ValueError as error:
        raise SettingError(f"invalid REDIS_URL: {error}") from None
    return redis.Redis.from_pool(pool)


def _connect_sentinel(
    settings: Settings,
    max_connections: int | None,
    blocking: bool,
    pool_timeout: float,
    options: dict[str, Any],
) -> redis.Redis:
    try:
        url_options = parse_url(settings.redis_url)
    except ValueError as error:
        raise SettingError(f"invalid REDIS_URL: {error}") from None
    if url_options.get("connection_class") is UnixDomainSocketConnection:
        raise SettingError(
            "REDIS_URL is a unix:// URL, but LIVEGATE_REDIS_SENTINELS is set: the sentinels "
            "name the primary by host and port. Use a redis:// or rediss:// URL, or unset "
            "LIVEGATE_REDIS_SENTINELS."
        )
    tls = url_options.get("connection_class") is SSLConnection
    tls_options = {name: value for name, value in url_options.items() if name.startswith("ssl_")}

    pool_class: type[SentinelConnectionPool] = _SentinelPool
    primary_options: dict[str, Any] = {}
    if max_connections is not None:
        primary_options["max_connections"] = max_connections
        if blocking:
            pool_class = BlockingSentinelConnectionPool
            primary_options["timeout"] = pool_timeout
    primary_options.update(options)
    # Options in the URL's query string win, as in Redis.from_url.
    primary_options.update(
        (name, value) for name, value in url_options.items() if name not in _ADDRESS_OPTIONS
    )

    sentinel_options: dict[str, Any] = {
        "socket_timeout": options["socket_timeout"],
        "socket_connect_timeout": options["socket_connect_timeout"],
        # One attempt per sentinel: discovery moves on to the next sentinel
        # at once, and the connection to the primary retries the discovery.
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.redis_sentinel_password:
        sentinel_options["password"] = settings.redis_sentinel_password
    if tls:
        # NOTE: this assumes that the sentinels accept TLS with the same
        # options as the primary. No test runs this path against TLS servers.
        sentinel_options.update(ssl=True, **tls_options)
        primary_options["ssl"] = True

    sentinel = Sentinel(list(settings.redis_sentinels), sentinel_kwargs=sentinel_options)
    return sentinel.master_for(
        settings.redis_sentinel_service, connection_pool_class=pool_class, **primary_options
    )


def request_primary_check(client: redis.Redis) -> None:
    """Make ``client`` query the sentinels before its next command, and hold other commands.

    Call it when something else has seen a failover, for example when the
    pod's subscriber reports that Redis lost updates. Until the sentinels
    demote it, the old primary still serves reads from its own stale data.
    Does nothing for a client without sentinels.

    NOTE: the query takes the answer of the first sentinel that replies. With
    several sentinels, one that has not yet learned of the failover (they
    exchange it within seconds) can still name the old primary.
    """
    pool = client.connection_pool
    if isinstance(pool, _SentinelPool):
        pool.request_check()


def client_for_channel(client: redis.Redis, channel: str) -> redis.Redis:
    """Return the client of the Redis that stores ``channel``'s keys and carries its updates.

    Every channel lives on the single primary that ``client`` reaches, so
    this returns ``client``. Code that reads or writes one channel's keys
    calls this first, so that sharding changes this function and its
    callers' client type, not every call site.

    With Redis Cluster and sharded Pub/Sub (SSUBSCRIBE and SPUBLISH, Redis
    7.0 or newer), this function would map the channel to its shard and
    return a client of that shard's primary. The keys of one publish must
    then hash to one slot, so the key names would gain a hash tag per shard
    (``lg:{s3}:seq``), and the global ``seq``, the epoch, the global log and
    the bus would exist once per shard. docs/scaling.md describes the step.
    """
    del channel  # One shard: every channel maps to the same primary.
    return client
