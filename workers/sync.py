"""Initial sync of a stream: snapshots, or the deltas it missed.

One Redis transaction reads the epoch, the global seq ``G`` and, for every
channel the stream's subscriptions match, its state and (when resuming)
its log after the client's seq ``S``. Because the transaction is atomic,
everything it returns is exactly the state as of ``G``: the stream then
takes live frames from the ring with seq above ``G`` and nothing is lost
or sent twice.

Per channel the stream gets, in this order:

1. the missed deltas of every channel whose log still covers ``S``, all
   merged by seq, so the ids a client sees only grow;
2. a snapshot, with id ``G``, of every other channel: unknown token,
   another epoch, a log that no longer reaches back to ``S``, a channel
   created after ``S``, or missed deltas larger in bytes than the snapshot.

An exact subscription may name an alias: the same transaction reads the
aliases, and the stream gets its target's frames under the alias name,
as a snapshot when the alias changed after ``S``. A stream with a view
gets projections of the documents, always as snapshots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import gevent
import redis

import orjson

from livegate.aliases import Alias, parse_entry
from livegate.auth import ChannelAccess
from livegate.channels import Pattern
from livegate.frames import FrameError, compact_json, encode_snapshot_body, id_suffix
from livegate.ids import format_event_id, parse_event_id
from livegate.views import View
from livegate.wire import InvalidEnvelopeError, Keys, decode_envelope
from fanout.subscriber import build_frame
from workers.aliases import rename_frame

log = logging.getLogger(__name__)

# A stream whose patterns keep matching newly created channels between two
# reads gives up after this many reads and takes what the last one found.
MAX_READS = 4
SNAPSHOT_CACHE_ENTRIES = 4096
# Building frames is CPU work; the sync yields to the worker's other
# greenlets after this many frames so that no stream waits long on it.
FRAMES_PER_YIELD = 200


@dataclass
class SyncResult:
    epoch: str | None
    seq: int
    frames: list[bytes] = field(default_factory=list)
    snapshots: int = 0
    deltas: int = 0
    # The aliases among the exact subscriptions, as read.
    aliases: dict[str, Alias] = field(default_factory=dict)
    # For a view stream: channel -> (version, decoded document), for the view cache.
    documents: dict[str, tuple[int, object]] = field(default_factory=dict)


class SnapshotCache:
    """Encoded snapshot bodies by (epoch, channel, version), shared by a worker's streams.

    Each body is validated and encoded once per version instead of once
    per connecting client. Entries are evicted oldest first.
    """

    def __init__(self, max_entries: int = SNAPSHOT_CACHE_ENTRIES):
        self._entries: dict[tuple[str, str, str, int, str], bytes] = {}
        self._max_entries = max_entries

    def body(self, epoch: str, channel: str, version: int, document_json: bytes,
             view: View | None = None, name: str | None = None) -> bytes:
        """Return the body of ``channel``'s snapshot, under ``name`` (an alias) when given."""
        name = name or channel
        # The channel is part of the key: an alias's name may carry another
        # channel's document at the same version after a switch.
        key = (epoch, channel, name, version, view.name if view else "")
        cached = self._entries.get(key)
        if cached is None:
            if view is None:
                document = compact_json(document_json)
            else:
                try:
                    document = orjson.dumps(view.project(orjson.loads(document_json)))
                except orjson.JSONDecodeError as error:
                    raise FrameError(f"invalid JSON text: {error}") from None
            cached = encode_snapshot_body(name, version, document)
            if len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = cached
        return cached


class Synchronizer:
    """Reads what a stream needs from Redis. One per worker."""

    def __init__(self, client: redis.Redis, keys: Keys, max_replay: int = 1000):
        self._client = client
        self._keys = keys
        self._max_replay = max_replay
        self._cache = SnapshotCache()

    def sync(
        self,
        subscriptions: tuple[Pattern, ...],
        since: str | None,
        allowed: ChannelAccess | None = None,
        view: View | None = None,
    ) -> SyncResult:
        """Read what a stream needs; ``allowed``, when given, drops the channels it may not read."""
        token = parse_event_id(since)
        exact = {s.text for s in subscriptions if s.is_exact}
        if allowed is not None:
            exact = {channel for channel in exact if allowed.permits(channel)}
        patterns = [s for s in subscriptions if not s.is_exact]
        candidates = set(exact)
        # name on the stream -> channel whose document it carries
        wanted: dict[str, str] = {}
        for _ in range(MAX_READS):
            epoch, seq, names, states, logs, aliases = self._read(
                sorted(candidates), sorted(exact), bool(patterns), token.seq if token else None
            )
            wanted = {name: name for name in exact if name not in aliases}
            wanted.update((name, alias.target) for name, alias in aliases.items())
            if patterns:
                matched = {name for name in names if any(p.matches(name) for p in patterns)}
                if allowed is not None:
                    matched = {name for name in matched if allowed.permits(name)}
                wanted.update((name, name) for name in matched)
            if set(wanted.values()) <= candidates:
                break
            candidates |= set(wanted.values())
        resume_seq = token.seq if token and epoch is not None and token.epoch == epoch else None
        if token and resume_seq is None:
            log.debug("token %s is from another epoch than %s; sending snapshots", since, epoch)
        if resume_seq is not None and resume_seq > seq:
            log.debug("token %s is ahead of seq %s; sending snapshots", since, seq)
            resume_seq = None
        result = self._build(epoch, seq, states, logs, resume_seq, wanted, aliases, view)
        result.aliases = aliases
        return result

    def _read(self, channels: list[str], exact: list[str], with_index: bool,
              since_seq: int | None):
        pipe = self._client.pipeline(transaction=True)
        pipe.get(self._keys.epoch)
        pipe.get(self._keys.seq)
        if exact:
            pipe.hmget(self._keys.aliases, exact)
        if with_index:
            pipe.hkeys(self._keys.channels)
        for channel in channels:
            pipe.hmget(self._keys.state(channel), "version", "seq", "doc")
            if since_seq is not None:
                pipe.zrangebyscore(
                    self._keys.channel_log(channel), f"({since_seq}", "+inf",
                    start=0, num=self._max_replay + 1,
                )
        results = pipe.execute()
        epoch_raw, seq_raw = results[0], results[1]
        position = 2
        aliases: dict[str, Alias] = {}
        if exact:
            for name, raw in zip(exact, results[position]):
                alias = parse_entry(name, raw) if raw is not None else None
                if alias is not None and alias.target:
                    aliases[name] = alias
            position += 1
        names: list[str] = []
        if with_index:
            names = [name.decode("utf-8", "replace") for name in results[position]]
            position += 1
        states: dict[str, tuple[int, int, bytes]] = {}
        logs: dict[str, list[bytes]] = {}
        for channel in channels:
            version, channel_seq, document = results[position]
            position += 1
            if since_seq is not None:
                logs[channel] = results[position]
                position += 1
            if version is not None and document is not None:
                states[channel] = (int(version), int(channel_seq), document)
        epoch = epoch_raw.decode("ascii", "replace") if epoch_raw is not None else None
        return epoch, int(seq_raw or 0), names, states, logs, aliases

    def _build(self, epoch, seq, states, logs, resume_seq, wanted, aliases, view) -> SyncResult:
        result = SyncResult(epoch, seq)
        if epoch is None:
            return result
        replay: list[tuple[int, bytes]] = []
        snapshot_names: list[str] = []
        for count, name in enumerate(sorted(wanted), 1):
            if count % FRAMES_PER_YIELD == 0:
                gevent.sleep(0)
            channel = wanted[name]
            state = states.get(channel)
            if state is None:
                continue
            version, channel_seq, document = state
            if view is not None:
                try:
                    result.documents[channel] = (version, orjson.loads(document))
                except orjson.JSONDecodeError:
                    pass  # the snapshot below logs the invalid document
            # A client resuming on an alias that changed since has another
            # channel's document: it needs a snapshot of the new target.
            alias_changed = name in aliases and (
                resume_seq is None or aliases[name].seq > resume_seq
            )
            if resume_seq is not None and not alias_changed:
                if channel_seq <= resume_seq:
                    continue
                frames = None
                if view is None:
                    frames = self._replay_frames(
                        channel, epoch, resume_seq, logs.get(channel, []), len(document)
                    )
                if frames is not None:
                    if name != channel:
                        frames = [(s, rename_frame(f, channel, name)) for s, f in frames]
                    replay.extend(frames)
                    continue
            snapshot_names.append(name)

        replay.sort(key=lambda item: item[0])
        result.frames.extend(frame for _, frame in replay)
        result.deltas = len(replay)

        suffix = id_suffix(format_event_id(epoch, seq))
        for count, name in enumerate(snapshot_names, 1):
            if count % FRAMES_PER_YIELD == 0:
                gevent.sleep(0)
            channel = wanted[name]
            version, _, document = states[channel]
            try:
                body = self._cache.body(epoch, channel, version, document, view, name)
            except FrameError as error:
                log.error("stored document of %s version %s is invalid JSON (%s); "
                          "not sent", channel, version, error)
                continue
            result.frames.append(body + suffix)
            result.snapshots += 1
        return result

    def _replay_frames(self, channel, epoch, resume_seq, entries, snapshot_bytes):
        """Return the (seq, frame) pairs that bring ``channel`` from ``resume_seq``
        to its current version, or None when a snapshot must be sent instead."""
        if not entries or len(entries) > self._max_replay:
            return None
        if sum(len(entry) for entry in entries) > snapshot_bytes:
            return None
        frames = []
        previous_seq = None
        for count, raw in enumerate(entries, 1):
            if count % FRAMES_PER_YIELD == 0:
                gevent.sleep(0)
            try:
                envelope = decode_envelope(raw)
                frame = build_frame(envelope)[1]
            except (InvalidEnvelopeError, FrameError) as error:
                log.warning("log entry of %s is invalid (%s); sending a snapshot", channel, error)
                return None
            if envelope.epoch != epoch:
                return None
            # The first missed update must follow directly on what the client
            # has, and each later one on the one before: else the log was
            # trimmed in between.
            expected_previous = resume_seq if previous_seq is None else previous_seq
            if previous_seq is None:
                if envelope.prev_seq > expected_previous:
                    return None
            elif envelope.prev_seq != previous_seq:
                return None
            previous_seq = envelope.seq
            frames.append((envelope.seq, frame))
        return frames
