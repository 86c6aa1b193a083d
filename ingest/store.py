"""Shared ingest state in Redis, so that replicas polling different sources agree.

Keys (``P`` is the key prefix):

- ``P:ingest:feed:{match}``: hash, one field per provider with the last
  document it delivered for the match, the source and the fetch time.
- ``P:ingest:select:{match}``: the match's selection state (active
  provider, healthy periods), see ``ingest/selection.py``.
- ``P:ingest:health:{source}``: whether the source's polls currently fail.
- ``P:ingest:competition:{code}``: hash of the competition's live matches.
- ``P:ingest:lock:{name}``: short locks around read-decide-publish steps.

Everything expires after ``STATE_TTL_SECONDS`` without writes, so matches
of past days leave nothing behind.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import contextmanager
from typing import Iterator

import orjson
import redis

from ingest.selection import FeedEntry, SelectionState

log = logging.getLogger(__name__)

STATE_TTL_SECONDS = 86_400
# A lock guards a few Redis round trips; a replica that dies holding one
# blocks the match for at most this long.
LOCK_TTL_MS = 2_000

_UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LockTimeout(Exception):
    """A lock stayed held by someone else for longer than the caller waits."""


class IngestStore:
    def __init__(self, client: redis.Redis, key_prefix: str = "lg"):
        self.client = client
        self.prefix = key_prefix
        self._unlock = client.register_script(_UNLOCK_SCRIPT)

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}:ingest:{kind}:{name}"

    # --- feeds ------------------------------------------------------------------

    def write_feed(self, match_id: str, entry: FeedEntry) -> None:
        key = self._key("feed", match_id)
        value = orjson.dumps({"source": entry.source, "fetched_at": entry.fetched_at,
                              "document": entry.document})
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(key, entry.provider, value)
            pipe.expire(key, STATE_TTL_SECONDS)
            pipe.execute()

    def read_match(self, match_id: str, sources: list[str]) -> tuple[dict[str, FeedEntry], SelectionState, dict[str, bool]]:
        """Return the match's feeds, its selection state and the health of ``sources``."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._key("feed", match_id))
            pipe.get(self._key("select", match_id))
            for source in sources:
                pipe.get(self._key("health", source))
            raw_feeds, raw_state, *raw_health = pipe.execute()
        feeds = {}
        for provider, value in raw_feeds.items():
            data = orjson.loads(value)
            name = provider.decode() if isinstance(provider, bytes) else provider
            feeds[name] = FeedEntry(name, data["source"], float(data["fetched_at"]), data["document"])
        state = SelectionState.from_json(orjson.loads(raw_state) if raw_state else None)
        health = {}
        for source, value in zip(sources, raw_health):
            if value is not None:
                health[source] = bool(orjson.loads(value).get("ok", True))
        return feeds, state, health

    def write_state(self, match_id: str, state: SelectionState) -> None:
        self.client.set(self._key("select", match_id), orjson.dumps(state.to_json()), ex=STATE_TTL_SECONDS)

    # --- source health ----------------------------------------------------------

    def write_health(self, source: str, ok: bool, since: float, reason: str) -> None:
        self.client.set(self._key("health", source),
                        orjson.dumps({"ok": ok, "since": since, "reason": reason}), ex=STATE_TTL_SECONDS)

    # --- competitions -----------------------------------------------------------

    def update_competition(self, code: str, match_id: str, entry: dict | None) -> list[dict]:
        """Store or remove the match's entry; return every entry of the competition."""
        key = self._key("competition", code)
        with self.client.pipeline(transaction=False) as pipe:
            if entry is None:
                pipe.hdel(key, match_id)
            else:
                pipe.hset(key, match_id, orjson.dumps(entry))
            pipe.expire(key, STATE_TTL_SECONDS)
            pipe.hgetall(key)
            *_, entries = pipe.execute()
        return [orjson.loads(value) for value in entries.values()]

    # --- locks --------------------------------------------------------------------

    @contextmanager
    def lock(self, name: str, wait: float = 2.5) -> Iterator[None]:
        """Hold ``P:ingest:lock:{name}`` for the block; raises LockTimeout after ``wait`` seconds.

        The key expires after LOCK_TTL_MS, so a replica that dies while it
        has the lock blocks the match for at most that long.
        """
        key = self._key("lock", name)
        token = secrets.token_hex(8)
        deadline = time.monotonic() + wait
        while not self.client.set(key, token, nx=True, px=LOCK_TTL_MS):
            if time.monotonic() >= deadline:
                raise LockTimeout(f"lock {key} stayed held for {wait:g} s")
            time.sleep(0.005)
        try:
            yield
        finally:
            try:
                self._unlock(keys=[key], args=[token])
            except redis.RedisError as error:
                log.warning("releasing lock %s failed (%s); it expires within %d ms", key, error, LOCK_TTL_MS)
