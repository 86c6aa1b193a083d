"""Aliases: channel names that point to another channel, switched at run time.

An alias lives in the Redis hash ``P:aliases`` as JSON ``{"target",
"seq", "ts"}``, where ``seq`` is the global seq its last change took. Every
change runs ``alias.lua``, which also publishes an alias envelope on the
bus, so every gateway applies the change at the same point of the seq
order as the documents around it. Subscribers to an alias receive its
target's snapshots and deltas under the alias name.

Rules that keep aliases simple to reason about, checked in the script:
an alias name is never a channel with a document, a target is never an
alias (no chains), and an alias never points to itself.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson
import redis

from livegate.channels import validate_channel
from livegate.ids import format_event_id
from livegate.wire import Keys

log = logging.getLogger(__name__)

SCRIPT_PATH = Path(__file__).with_name("alias.lua")


class AliasError(ValueError):
    """A change of an alias that cannot be made; ``code`` names the reason."""

    def __init__(self, code: str, message: str, status: int = 409):
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Alias:
    name: str
    target: str
    # Global seq of the alias's last change.
    seq: int
    # Unix milliseconds of the alias's last change.
    ts: int

    def as_json(self) -> dict:
        return {"alias": self.name, "target": self.target, "seq": self.seq, "ts": self.ts}


@dataclass(frozen=True)
class AliasChange:
    alias: str
    target: str
    previous: str
    # Event id of the change; None when nothing changed.
    id: str | None
    changed: bool


def parse_entry(name: str, raw: bytes | str) -> Alias | None:
    """Decode one ``P:aliases`` value; None (and a log line) when it is damaged."""
    try:
        entry = orjson.loads(raw)
        return Alias(name, str(entry["target"]), int(entry["seq"]), int(entry.get("ts", 0)))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        log.error("alias %r has an invalid stored value (%s); it is ignored", name, error)
        return None


class AliasStore:
    """Reads and changes aliases in Redis. One per process is enough."""

    def __init__(self, client: redis.Redis, keys: Keys, global_log_length: int):
        self._client = client
        self._keys = keys
        self._global_log_length = global_log_length
        self._script = client.register_script(SCRIPT_PATH.read_text())

    def get(self, name: str) -> Alias | None:
        raw = self._client.hget(self._keys.aliases, name)
        return None if raw is None else parse_entry(name, raw)

    def all(self) -> list[Alias]:
        aliases = []
        for name, raw in self._client.hgetall(self._keys.aliases).items():
            alias = parse_entry(name.decode("utf-8", "replace"), raw)
            if alias is not None:
                aliases.append(alias)
        return sorted(aliases, key=lambda alias: alias.name)

    def set(self, name: str, target: str) -> AliasChange:
        """Point ``name`` at ``target``; raises AliasError and InvalidChannelError."""
        validate_channel(name)
        validate_channel(target)
        if name == target:
            raise AliasError("alias_is_target", f"alias {name!r} cannot point to itself", 400)
        return self._run(name, target)

    def remove(self, name: str) -> AliasChange:
        validate_channel(name)
        return self._run(name, "")

    def _run(self, name: str, target: str) -> AliasChange:
        keys = self._keys
        status, seq, epoch, previous = self._script(
            keys=[keys.epoch, keys.seq, keys.aliases, keys.global_log, keys.channels],
            args=[name, target, secrets.token_hex(6), self._global_log_length, keys.bus],
        )
        previous = _text(previous)
        if status == -1:
            raise AliasError("alias_is_channel",
                             f"{name!r} is a channel with a document, so it cannot be an alias")
        if status == -2:
            raise AliasError("target_is_alias",
                             f"target {target!r} is itself an alias; point to a channel")
        if status == -3:
            raise AliasError("alias_not_found", f"there is no alias {name!r}", 404)
        if status == 0:
            return AliasChange(name, target, previous, None, False)
        event_id = format_event_id(_text(epoch), int(seq))
        if target:
            log.info("alias %s now points to %s (was %s), id %s", name, target,
                     previous or "unset", event_id)
        else:
            log.info("alias %s removed (pointed to %s), id %s", name, previous, event_id)
        return AliasChange(name, target, previous, event_id, True)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
