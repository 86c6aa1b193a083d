"""View frames of one worker: each view's frame built once per change.

For every channel that a view stream of this worker reads, the worker
keeps the channel's whole document, moved forward by each ring record.
On a change it projects the document before and after once per view in
use and diffs the two projections. The result is one frame that all the
view's streams share: a delta of the projection, a snapshot of it when
the delta would be larger, or nothing when the change fell outside the view.

A view skips the versions whose changes fell outside it, so its deltas
carry ``base_version``: the projection was the same at every version from
``base_version`` to ``version - 1``, and a client holding any of them
applies the patch (docs/protocol.md).

Documents enter the cache from the syncs of view streams, which read
them from Redis, and from snapshot records. A delta record that does not
follow the cached version (a gap, or a channel this worker has not read
yet) cannot be applied: the caller then resynchronises the view streams
of that channel, and their syncs fill the cache again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer
import orjson

from ingest.diff import diff
from livegate.frames import delta_data, encode_frame, snapshot_data
from livegate.views import View

# Past this many cached documents the least recently changed one is dropped;
# its view streams resynchronise if it changes again.
MAX_CACHED_DOCUMENTS = 20_000


class ViewGapError(Exception):
    """A ring frame that the cached document cannot take; the channel's view streams resync."""


@dataclass
class Change:
    """One change of a channel's document, as the views need it."""

    channel: str
    version: int
    event_id: str
    # Whether the document before the change is known to this worker.
    before_known: bool
    before: Any
    after: Any


def parse_frame(payload: bytes) -> tuple[bytes, dict, str]:
    """Split a ring frame into its event name, decoded data and id."""
    event_end = payload.index(b"\n")
    event = payload[len(b"event: "):event_end]
    data_start = event_end + len(b"\ndata: ")
    data_end = payload.index(b"\n", data_start)
    data = orjson.loads(payload[data_start:data_end])
    id_start = payload.index(b"id: ", data_end) + len(b"id: ")
    event_id = payload[id_start:payload.index(b"\n", id_start)].decode("ascii")
    return event, data, event_id


class ViewCache:
    """Documents of the channels read through views. Never yields."""

    def __init__(self) -> None:
        self._documents: dict[str, tuple[int, Any]] = {}
        # channel -> the first version of an unbroken run of cached versions,
        # and per view the last version whose change altered its projection.
        self._since: dict[str, int] = {}
        self._view_changed: dict[str, dict[str, int]] = {}

    def __len__(self) -> int:
        return len(self._documents)

    def remember(self, channel: str, version: int, document: Any) -> None:
        """Store a document that a sync read, unless the cache has a newer version."""
        cached = self._documents.get(channel)
        if cached is None or cached[0] < version:
            self._store(channel, version, document, continues=False)

    def forget(self, channel: str) -> None:
        self._documents.pop(channel, None)
        self._since.pop(channel, None)
        self._view_changed.pop(channel, None)

    def advance(self, channel: str, version: int, payload: bytes) -> Change | None:
        """Move the cached document of ``channel`` forward by one ring frame.

        Returns the change, or None when a sync already read a later
        version (the streams get that version's projection as a snapshot
        with the next change). Raises ViewGapError when the frame cannot
        be applied.
        """
        try:
            event, data, event_id = parse_frame(payload)
        except (ValueError, orjson.JSONDecodeError) as error:
            self.forget(channel)
            raise ViewGapError(f"ring frame of {channel} version {version} cannot be "
                               f"read: {error}") from None
        cached = self._documents.get(channel)
        if cached is not None and cached[0] >= version:
            # A sync already read this version or a later one.
            return None if cached[0] > version else Change(
                channel, version, event_id, False, None, cached[1])
        before_known = cached is not None and cached[0] == version - 1
        before = cached[1] if before_known else None
        if event == b"snapshot":
            after = data["data"]
        elif before_known:
            try:
                after = jsonpatch.apply_patch(before, data["patch"], in_place=False)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
                self.forget(channel)
                raise ViewGapError(f"delta of {channel} version {version} does not apply "
                                   f"to the cached document: {error}") from None
        else:
            self.forget(channel)
            raise ViewGapError(f"delta of {channel} version {version} does not follow the "
                               f"cached version {cached[0] if cached else 'none'}")
        self._store(channel, version, after, continues=before_known)
        return Change(channel, version, event_id, before_known, before, after)

    def frame(self, view: View, change: Change, snapshot_only: bool = False) -> bytes | None:
        """Build the frame of ``view`` for ``change``; None when the view did not change."""
        after = view.project(change.after)
        after_json = orjson.dumps(after)
        changed = self._view_changed.setdefault(change.channel, {})
        if change.before_known:
            before = view.project(change.before)
            patch = diff(before, after)
            if not patch:
                return None
            # Unchanged since its last change, or since the cache's run began.
            base = max(changed.get(view.name, 0), self._since.get(change.channel, 0))
            changed[view.name] = change.version
            patch_json = orjson.dumps(patch)
            if not snapshot_only and len(patch_json) < len(after_json):
                data = delta_data(change.channel, change.version, patch_json)
                if base < change.version - 1:
                    data = data[:-1] + b',"base_version":%d}' % base
                return encode_frame(b"delta", data, change.event_id)
        changed[view.name] = change.version
        return encode_frame(b"snapshot", snapshot_data(change.channel, change.version,
                                                       after_json), change.event_id)

    def _store(self, channel: str, version: int, document: Any, continues: bool) -> None:
        self._documents.pop(channel, None)
        if len(self._documents) >= MAX_CACHED_DOCUMENTS:
            self.forget(next(iter(self._documents)))
        self._documents[channel] = (version, document)
        if not continues:
            self._since[channel] = version
            self._view_changed.pop(channel, None)

