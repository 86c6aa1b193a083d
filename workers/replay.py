"""Resuming streams from the ring, without reading Redis.

When many clients reconnect at once (a pod went away and its clients
come back here), reading every one's missed deltas from Redis would cost
one round trip per client. The ring already contains the recent frames, so a
worker remembers where recent seqs sit in it and copies a resuming
client's missed frames from there. Only what the ring cannot serve goes
to Redis: another epoch, a point older than the ring, a resync or overrun
in between, or a channel with more missed bytes than MAX_REPLAY_BYTES.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from fanout import ring as ring_layout
from livegate.auth import ChannelAccess
from livegate.channels import Pattern
from livegate.ids import EventId

# One position is remembered for every CHECKPOINT_EVERY frames; a replay
# scans at most that many frames before the client's point.
CHECKPOINT_EVERY = 32
# A channel whose missed frames exceed this many bytes is likely cheaper
# as a snapshot; the Redis path makes that comparison exactly.
MAX_REPLAY_BYTES = 64 * 1024
# A replay never yields, so it scans at most this many ring records; a
# client further behind is served from Redis, which does yield.
MAX_SCANNED_RECORDS = 20_000
_FRAME_KINDS = (ring_layout.FRAME_DELTA, ring_layout.FRAME_SNAPSHOT)


@dataclass
class Replay:
    seq: int
    frames: list[bytes]


class RingIndex:
    """Positions of recent frames in the ring, by seq, for one worker's reader.

    Invariant: seqs in the index increase, and every frame between two
    checkpoints was dispatched in ring order without a resync in between.
    """

    def __init__(self) -> None:
        self._seqs: list[int] = []
        self._positions: list[int] = []
        self._since_checkpoint = 0
        # Seq of the last frame the worker dispatched.
        self.dispatched_seq = 0

    def note_frame(self, seq: int, position: int) -> None:
        if self._since_checkpoint == 0:
            self._seqs.append(seq)
            self._positions.append(position)
        self._since_checkpoint = (self._since_checkpoint + 1) % CHECKPOINT_EVERY
        self.dispatched_seq = seq

    @property
    def covered_from_seq(self) -> int | None:
        """Return the seq after which this worker dispatched every frame, or None.

        The first checkpoint is the first frame after the reader started or
        was reset, and the ring has no holes, so every frame after the seq
        before it went through this worker. A fresh worker has not seen
        the updates written before its reader started.
        """
        if not self._seqs:
            return None
        return self._seqs[0] - 1

    def reset(self) -> None:
        """Forget every position: frames before a resync or overrun cannot be replayed."""
        self._seqs.clear()
        self._positions.clear()
        self._since_checkpoint = 0

    def trim(self, oldest_valid_position: int) -> None:
        """Drop checkpoints whose frames the writer has overwritten."""
        cut = bisect.bisect_left(self._positions, oldest_valid_position)
        if cut:
            del self._seqs[:cut]
            del self._positions[:cut]

    def start_position(self, after_seq: int) -> int | None:
        """Return a ring position at or before the first frame after ``after_seq``."""
        index = bisect.bisect_right(self._seqs, after_seq + 1) - 1
        if index < 0:
            return None
        return self._positions[index]


def replay_from_ring(
    ring: ring_layout.Ring,
    index: RingIndex,
    end_position: int,
    subscriptions: tuple[Pattern, ...],
    token: EventId,
    max_replay: int,
    allowed: ChannelAccess | None = None,
) -> Replay | None:
    """Collect the frames after ``token`` that match ``subscriptions``, up to ``end_position``.

    ``allowed``, when given, also drops the frames of channels the stream may not read.

    Returns None when the ring cannot serve this client and Redis must.
    Never yields to other greenlets, so the caller's view of what was
    dispatched stays exact.
    """
    status = ring.subscriber_status()
    if token.epoch != status.epoch or token.seq > status.last_seq:
        return None
    covered_from = index.covered_from_seq
    if covered_from is None or token.seq < covered_from:
        return None
    if token.seq >= index.dispatched_seq:
        # The client has seen everything this worker dispatched (it may come
        # from a pod that is ahead); frames after its point arrive live.
        return Replay(token.seq, [])
    start = index.start_position(token.seq)
    if start is None:
        return None

    reader = ring_layout.RingReader(ring, start_pos=start)
    frames: list[bytes] = []
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    scanned = 0
    while reader.position < end_position:
        records = reader.read_available(max_records=1024)
        if reader.overrun or not records:
            return None
        scanned += len(records)
        if scanned > MAX_SCANNED_RECORDS:
            return None
        for record in records:
            if record.pos >= end_position:
                return Replay(index.dispatched_seq, frames)
            if record.kind not in _FRAME_KINDS:
                return None
            if record.seq <= token.seq or not _matches(subscriptions, record.channel):
                continue
            if allowed is not None and not allowed.permits(record.channel):
                continue
            counts[record.channel] = counts.get(record.channel, 0) + 1
            sizes[record.channel] = sizes.get(record.channel, 0) + len(record.payload)
            if counts[record.channel] > max_replay or sizes[record.channel] > MAX_REPLAY_BYTES:
                return None
            frames.append(record.payload)
    return Replay(index.dispatched_seq, frames)


def _matches(subscriptions: tuple[Pattern, ...], channel: str) -> bool:
    for subscription in subscriptions:
        if subscription.matches(channel):
            return True
    return False
