"""Leases in Redis that elect one poller per source among ingest replicas.

A lease is the key ``{prefix}:ingest:lease:{source}`` holding the owner's
token, with a TTL. It is taken with SET NX PX, renewed by a Lua script
that extends the TTL only while the key still holds the owner's token, and
released on exit by a script that deletes it under the same check. A
holder that dies stops renewing, so the key expires at most one TTL after
its last renewal and a standby takes it over.

Safety rests on the holder's own deadline: it polls only while fewer than
``ttl`` seconds (less a margin) have passed since the last successful
acquire or renew, measured from before the request was sent. A paused
process (a long GC, a stopped VM) therefore stops polling before another
replica can have acquired the key.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from typing import Callable

import redis

log = logging.getLogger(__name__)

_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(key_prefix: str, source: str) -> str:
    return f"{key_prefix}:ingest:lease:{source}"


def owner_token() -> str:
    """Return a token naming this process: host, PID and a random part for restarts with the same PID."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """One source's lease, as seen by one replica.

    ``try_acquire`` and ``renew`` return whether this replica has the
    lease afterwards. ``valid`` returns whether it may act on it now.
    """

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        source: str,
        ttl: float,
        token: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        safety_margin: float | None = None,
    ):
        if ttl <= 0:
            raise ValueError(f"lease ttl must be > 0 seconds, got {ttl}")
        self.source = source
        self.key = lease_key(key_prefix, source)
        self.ttl = ttl
        self.token = token or owner_token()
        self._client = client
        self._clock = clock
        # The holder stops acting this long before the key can expire, to
        # cover clock drift between this process and Redis.
        self._margin = min(ttl / 10, 1.0) if safety_margin is None else safety_margin
        self._valid_until = 0.0
        self._renew = client.register_script(_RENEW_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)

    @property
    def held(self) -> bool:
        return self._valid_until > 0.0

    def valid(self) -> bool:
        """Return whether this replica holds the lease and its deadline has not passed."""
        return self._valid_until > 0.0 and self._clock() < self._valid_until

    def seconds_left(self) -> float:
        return max(0.0, self._valid_until - self._clock()) if self.held else 0.0

    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def try_acquire(self) -> bool:
        """Take the lease if it is free, or renew it if this replica holds it."""
        if self.held:
            return self.renew()
        sent_at = self._clock()
        if self._client.set(self.key, self.token, nx=True, px=self._ttl_ms()):
            self._valid_until = sent_at + self.ttl - self._margin
            log.info("source %s: lease acquired by %s (ttl %.1f s)", self.source, self.token, self.ttl)
            return True
        return False

    def renew(self) -> bool:
        """Extend the held lease; on failure the lease counts as lost."""
        sent_at = self._clock()
        if self._renew(keys=[self.key], args=[self.token, self._ttl_ms()]) == 1:
            self._valid_until = sent_at + self.ttl - self._margin
            return True
        if self.held:
            log.warning("source %s: lease lost by %s because it expired or another replica took it",
                        self.source, self.token)
        self._valid_until = 0.0
        return False

    def mark_lost(self) -> None:
        """Forget the lease locally, for example after Redis errors outlasted its deadline."""
        if self.held:
            log.warning("source %s: lease of %s treated as lost", self.source, self.token)
        self._valid_until = 0.0

    def release(self) -> None:
        """Delete the key if it still contains this replica's token, so a standby takes over at once."""
        if not self.held:
            return
        self._valid_until = 0.0
        try:
            released = self._release(keys=[self.key], args=[self.token])
        except redis.RedisError as error:
            log.warning("source %s: lease release failed (%s); it expires within %.1f s",
                        self.source, error, self.ttl)
            return
        if released:
            log.info("source %s: lease released by %s", self.source, self.token)

    def holder(self) -> str | None:
        """Return the token of the replica that holds the lease in Redis, or None when it is free."""
        token = self._client.get(self.key)
        if token is None:
            return None
        return token.decode("utf-8", "replace") if isinstance(token, bytes) else str(token)

    def time_until_free(self) -> float | None:
        """Return the seconds until the key expires, 0 if it is free, or None if it has no TTL."""
        remaining = self._client.pttl(self.key)
        if remaining == -2:
            return 0.0
        if remaining < 0:
            return None
        return remaining / 1000.0
