"""One SSE stream inside a worker: its subscriptions, position and queue.

The ring reader offers every frame to the streams that match it; a stream
keeps the frames it has not sent in a bounded queue and its own greenlet
(the Flask response generator) writes them, several frames per write.
A stream that does not read fills its queue and is closed with a
``retry:`` hint once the queue passes ``max_queue_bytes``; the others are
never delayed by it.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING

from gevent.event import Event

from livegate.channels import Pattern

if TYPE_CHECKING:
    from livegate.auth import ChannelAccess
    from livegate.views import View

_stream_ids = itertools.count(1)

# Reasons a stream ends, as they appear in logs and metrics.
CLOSE_CLIENT_GONE = "client_gone"
CLOSE_SLOW_CONSUMER = "slow_consumer"
CLOSE_SHUTDOWN = "shutdown"
CLOSE_SYNC_FAILED = "sync_failed"
CLOSE_TOKEN_EXPIRED = "token_expired"


class StreamClient:
    """State of one open stream. Touched only by greenlets of its worker."""

    __slots__ = (
        "id", "subscriptions", "remote", "max_queue_bytes",
        "last_seq", "epoch", "pending", "queue", "queued_bytes", "sync_bytes",
        "wakeup", "closed", "closed_at", "close_reason", "final_frame",
        "last_sent", "sync_generation", "since", "greenlet", "allowed", "expires_at",
        "view", "heartbeat_interval", "namespaces", "synced_seq",
    )

    def __init__(
        self,
        subscriptions: tuple[Pattern, ...],
        max_queue_bytes: int,
        since: str | None = None,
        remote: str = "",
        allowed: ChannelAccess | None = None,
        expires_at: float | None = None,
        view: View | None = None,
        heartbeat_interval: float = 20.0,
    ):
        self.id = next(_stream_ids)
        # The view whose projections this stream receives, or None for whole documents.
        self.view = view
        # Idle seconds before a heartbeat: the shortest of its namespaces'.
        self.heartbeat_interval = heartbeat_interval
        # Prefixes of the subscriber-limited namespaces this stream counts against.
        self.namespaces: tuple[str, ...] = ()
        self.subscriptions = subscriptions
        self.remote = remote
        # The channels this stream may receive, for a stream whose
        # subscriptions reach into protected channels; None for every other
        # stream, which then skips the check entirely.
        self.allowed = allowed
        # time.monotonic() at which the stream's token expires, or None.
        self.expires_at = expires_at
        self.max_queue_bytes = max_queue_bytes
        # Resume point the client sent (Last-Event-ID or ?since=), used by
        # the first sync only.
        self.since = since
        # Highest seq offered to this stream; frames at or below it are
        # skipped, which also drops the second copy of a frame for a stream
        # that matches a channel through two subscriptions.
        self.last_seq = 0
        # The seq the last sync read Redis at: its frames already hold every
        # change up to it, under every name, so nothing at or below it is offered.
        self.synced_seq = 0
        self.epoch: str | None = None
        # While a sync reads Redis, frames wait here as (seq, frame) and are
        # filtered against the seq the sync read.
        self.pending: list[tuple[int, bytes]] | None = []
        self.queue: list[bytes] = []
        self.queued_bytes = 0
        # Bytes of sync frames still queued; they do not count against the bound.
        self.sync_bytes = 0
        self.wakeup = Event()
        self.closed = False
        self.closed_at = 0.0
        self.close_reason = ""
        self.final_frame = b""
        self.last_sent = time.monotonic()
        # Bumped by every request to resynchronise; a sync that finds it
        # changed after its Redis read starts over.
        self.sync_generation = 1
        self.greenlet = None

    def offer(self, seq: int, frame: bytes, same_seq: bool = False) -> None:
        """Accept a frame from the ring reader. Never yields.

        ``same_seq`` lets a frame with the seq offered last through: the same
        change under an alias name, beside the target's own frame.
        """
        if (
            seq < self.last_seq
            or (seq == self.last_seq and (not same_seq or seq <= self.synced_seq))
            or self.closed
        ):
            return
        self.last_seq = seq
        if self.pending is not None:
            self.pending.append((seq, frame))
            self._account(len(frame))
            return
        self.enqueue(frame)

    def enqueue(self, frame: bytes) -> None:
        if self.closed:
            return
        self.queue.append(frame)
        self._account(len(frame))
        self.wakeup.set()

    def _account(self, size: int) -> None:
        self.queued_bytes += size
        # The frames of a sync, and a single frame larger than the bound,
        # must still be able to go out once, because such a client would
        # otherwise reconnect in a loop. Only what queues behind them counts.
        behind = self.queued_bytes - self.sync_bytes
        if behind > self.max_queue_bytes and self.queued_bytes > size:
            self.close(CLOSE_SLOW_CONSUMER)

    def request_resync(self) -> None:
        """Drop what is queued and buffer new frames until a fresh sync is done."""
        if self.closed:
            return
        self.queue.clear()
        self.queued_bytes = 0
        self.sync_bytes = 0
        self.pending = []
        self.last_seq = 0
        self.synced_seq = 0
        self.sync_generation += 1
        self.wakeup.set()

    def finish_sync(self, epoch: str | None, seq: int, frames: list[bytes]) -> None:
        """Queue the sync's frames, then the buffered frames newer than ``seq``."""
        pending = self.pending or []
        self.pending = None
        self.epoch = epoch
        self.queue.clear()
        self.queued_bytes = 0
        self.sync_bytes = sum(len(frame) for frame in frames)
        for frame in frames:
            self.enqueue(frame)
        self.last_seq = seq
        self.synced_seq = seq
        for frame_seq, frame in pending:
            if frame_seq > seq:
                self.enqueue(frame)
                self.last_seq = frame_seq

    def take(self) -> bytes:
        """Return every queued frame as one chunk and empty the queue."""
        if len(self.queue) == 1:
            chunk = self.queue[0]
        else:
            chunk = b"".join(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        self.sync_bytes = 0
        self.wakeup.clear()
        return chunk

    def close(self, reason: str, final_frame: bytes = b"") -> None:
        if self.closed:
            return
        self.closed = True
        self.closed_at = time.monotonic()
        self.close_reason = reason
        self.final_frame = final_frame
        self.wakeup.set()
