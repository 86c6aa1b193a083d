"""A worker's table of aliases, and frames renamed from a target to its alias.

The table learns every alias change three ways: from Redis when the hub
starts, from the ALIAS records of the ring, and from the syncs of its
streams. A sync reads the aliases its stream names in the same
transaction as the documents. Each entry keeps the seq of its change, so an older view never
replaces a newer one, whichever way it arrives.
"""

from __future__ import annotations

import orjson

from livegate.frames import FrameError


class AliasTable:
    """Alias -> (target, seq), and target -> aliases. Never yields."""

    def __init__(self) -> None:
        # A removed alias stays as ("", seq), so an older sync result
        # cannot bring it back.
        self._entries: dict[str, tuple[str, int]] = {}
        self._by_target: dict[str, set[str]] = {}
        # Whether the load from Redis at start has finished: until then a
        # resuming stream cannot tell an alias from a channel without Redis.
        self.loaded = False

    def apply(self, alias: str, target: str, seq: int) -> bool:
        """Record that ``alias`` points to ``target`` ("" for none) as of ``seq``.

        Returns whether the table changed.
        """
        current = self._entries.get(alias)
        if current is not None:
            if current[1] >= seq:
                return False
            aliases = self._by_target.get(current[0])
            if aliases is not None:
                aliases.discard(alias)
                if not aliases:
                    del self._by_target[current[0]]
        self._entries[alias] = (target, seq)
        if target:
            self._by_target.setdefault(target, set()).add(alias)
        return current is None or current[0] != target

    def target(self, alias: str) -> str | None:
        entry = self._entries.get(alias)
        return entry[0] or None if entry is not None else None

    def known(self, name: str) -> bool:
        """Return whether ``name`` is or was an alias."""
        return name in self._entries

    def aliases_of(self, target: str) -> set[str] | None:
        return self._by_target.get(target)

    def active(self) -> dict[str, str]:
        return {alias: target for alias, (target, _) in self._entries.items() if target}


def rename_frame(frame: bytes, channel: str, alias: str) -> bytes:
    """Return ``frame`` (a snapshot or delta of ``channel``) as a frame of ``alias``.

    Frames are built by livegate.frames, whose data line starts with the
    channel field, so one replace of that exact prefix renames the frame.
    """
    old = b'data: {"channel":' + orjson.dumps(channel) + b","
    if old not in frame:
        raise FrameError(f"frame of {channel!r} does not start its data with the channel")
    return frame.replace(old, b'data: {"channel":' + orjson.dumps(alias) + b",", 1)
