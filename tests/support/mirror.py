"""A client-side copy of channel documents, built from SSE events.

It applies snapshots and patches the way a livegate client must, and
records every version it saw per channel, so tests can check that
versions arrive without gaps or repeats (a snapshot starts a new run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import jsonpatch


class VersionError(AssertionError):
    """A delta that does not follow the version the mirror holds."""


@dataclass
class ChannelMirror:
    document: Any = None
    version: int = 0
    # Every version received, in order; a snapshot starts a new run.
    runs: list[list[int]] = field(default_factory=list)


class Mirror:
    def __init__(self) -> None:
        self.channels: dict[str, ChannelMirror] = {}
        self.snapshots = 0
        self.deltas = 0

    def apply_events(self, events: Iterable) -> None:
        for event in events:
            self.apply(event.event, event.json() if event.data else None)

    def apply(self, event: str, data: dict | None) -> None:
        if event == "snapshot":
            channel = self.channels.setdefault(data["channel"], ChannelMirror())
            channel.document = data["data"]
            channel.version = data["version"]
            channel.runs.append([data["version"]])
            self.snapshots += 1
        elif event == "delta":
            channel = self.channels.get(data["channel"])
            if channel is None:
                raise VersionError(f"delta for {data['channel']} before any snapshot")
            base = data.get("base_version", data["version"] - 1)
            if not base <= channel.version < data["version"]:
                raise VersionError(
                    f"{data['channel']}: delta version {data['version']} after {channel.version}"
                )
            channel.document = jsonpatch.apply_patch(channel.document, data["patch"])
            channel.version = data["version"]
            channel.runs[-1].append(data["version"])
            self.deltas += 1

    def documents(self) -> dict[str, Any]:
        return {name: channel.document for name, channel in self.channels.items()}

    def versions(self) -> dict[str, int]:
        return {name: channel.version for name, channel in self.channels.items()}
