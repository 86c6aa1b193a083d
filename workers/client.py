"""One SSE stream inside a worker: its subscriptions, position and queue.

The ring reader offers every frame to the streams that match it. A stream
whose greenlet is parked with nothing queued, and whose socket takes the
frame at once, gets it written right there with one non-blocking send, so
the common case costs no greenlet switch. Otherwise the stream keeps the
frames it has not sent in a bounded queue and its own greenlet (the Flask
response generator) writes them, several frames per write. A stream that
does not read fills its queue and is closed with a ``retry:`` hint once the
queue passes ``max_queue_bytes``; the others are never delayed by it.

Direct writes bypass gunicorn's response writer, so they frame each write
as an HTTP/1.1 chunk themselves, exactly as gunicorn frames the items of a
response body that has no Content-Length. ``stream_socket`` decides when
that framing is the right one.

A stream whose client accepts gzip, on a gateway that offers it, is a
``GzipStreamClient``: the same queue and writes, with every byte of its
body passed through its own compressor. Every other stream pays nothing
for that.
"""

from __future__ import annotations

import _socket
import itertools
import time
import zlib
from typing import TYPE_CHECKING

from gevent import get_hub
from gevent import socket as gevent_socket
from gevent.hub import Waiter

from livegate.channels import Pattern
from livegate.frames import http_chunk

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


def stream_socket(environ: dict) -> gevent_socket.socket | None:
    """Return the socket that a stream may write its own HTTP chunks to, or None.

    gunicorn's worker (27.0) frames a response body without Content-Length
    as HTTP/1.1 chunks on a GET over HTTP/1.1. It writes no body for HEAD and
    an unframed one over HTTP/1.0, and over TLS or HTTP/2 the socket carries
    more than this response's bytes. So only a GET over HTTP/1.1 on a plain
    gevent socket qualifies, and every other stream goes through gunicorn's
    writer.
    """
    if environ.get("REQUEST_METHOD") != "GET" or environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return None
    if environ.get("HTTP_VERSION") == "2":
        return None
    sock = environ.get("gunicorn.socket")
    if type(sock) is not gevent_socket.socket:
        return None
    # NOTE: ``_sock`` is gevent's private name for the operating-system
    # socket under its cooperative one (gevent 26.9). gevent keeps it in
    # non-blocking mode, which is what a write that must never wait needs.
    if not isinstance(getattr(sock, "_sock", None), _socket.socket):
        return None
    return sock


class Wakeup:
    """A flag that one greenlet waits on and others set: a stream's wake-up.

    It does what gevent's Event does for a single waiter, with fewer
    objects and a shallower C stack in the parked greenlet, which greenlet
    copies to the heap for every parked stream. Measured with 3,000 streams
    in one worker, that is about 1 KiB less PSS per stream.
    """

    __slots__ = ("_flag", "_waiter")

    def __init__(self):
        self._flag = False
        self._waiter: Waiter | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Set the flag and resume the waiting greenlet, if any, from the event loop."""
        self._flag = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            get_hub().loop.run_callback(waiter.switch, None)

    def clear(self) -> None:
        self._flag = False

    def wait(self) -> None:
        """Block the calling greenlet until the flag is set; return at once if it is."""
        if self._flag:
            return
        # A Waiter that is switched to after its greenlet stopped waiting
        # (killed, for instance) keeps the value instead of resuming it.
        waiter = Waiter()
        self._waiter = waiter
        try:
            waiter.get()
        finally:
            if self._waiter is waiter:
                self._waiter = None


class _ChunkCache:
    """The HTTP chunk of the frame last written directly, shared by every stream.

    The ring reader offers one frame object to all the streams it matches,
    so the chunk is built once per frame. Holding ``frame`` keeps its id
    from being reused by another object while the cache refers to it, and
    bytes are immutable, so the same object always has the same chunk.
    """

    __slots__ = ("frame", "chunk")

    def __init__(self):
        self.frame: bytes | None = None
        self.chunk = b""

    def chunk_of(self, frame: bytes) -> bytes:
        if frame is not self.frame:
            self.chunk = http_chunk(frame)
            self.frame = frame
        return self.chunk


_chunks = _ChunkCache()


def offer_all(streams, seq: int, frame: bytes, now: float) -> int:
    """Offer one ring frame to each of ``streams``, as ``offer`` would, without yielding.

    The common case is written out here rather than in three calls per
    stream: an uncompressed stream, parked, that has not seen ``seq``, and
    whose socket takes the shared chunk whole. Every other case goes
    through ``offer``. Returns how many streams had the frame written
    directly, for the caller's ``frames_sent`` and ``bytes_sent``.
    """
    chunk = None
    written = 0
    for stream in streams:
        if stream.parked and stream._shares_chunk and seq > stream.last_seq:
            if chunk is None:
                chunk = _chunks.chunk_of(frame)
            try:
                sent = stream.socket.send(chunk)
            except BlockingIOError:
                # The socket is full: queue the frame for the stream's greenlet.
                stream.parked = False
                stream.offer(seq, frame)
                continue
            except OSError:
                stream.last_seq = seq
                stream.close(CLOSE_CLIENT_GONE)
                continue
            stream.last_seq = seq
            stream.last_sent = now
            written += 1
            if sent < len(chunk):
                stream._keep_unsent(chunk[sent:])
        else:
            stream.offer(seq, frame)
    return written


class StreamClient:
    """State of one open stream. Touched only by greenlets of its worker."""

    __slots__ = (
        "id", "subscriptions", "remote", "max_queue_bytes",
        "last_seq", "epoch", "pending", "queue", "queued_bytes", "sync_bytes",
        "wakeup", "closed", "closed_at", "close_reason", "final_frame",
        "last_sent", "sync_generation", "since", "greenlet", "allowed", "expires_at",
        "view", "heartbeat_interval", "namespaces", "synced_seq",
        "socket", "parked", "unsent", "stats",
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
        self.wakeup = Wakeup()
        self.closed = False
        self.closed_at = 0.0
        self.close_reason = ""
        self.final_frame = b""
        self.last_sent = time.monotonic()
        # Bumped by every request to resynchronise; a sync that finds it
        # changed after its Redis read starts over.
        self.sync_generation = 1
        self.greenlet = None
        # The operating-system socket for direct writes, set by
        # ``attach_socket`` once the response headers are out; None while the
        # stream's bytes must go through gunicorn's writer.
        self.socket: _socket.socket | None = None
        # True while the stream's greenlet waits with nothing queued, nothing
        # unsent and no sync due: only then may another greenlet write to
        # the socket, because no write of the stream's own is in progress.
        self.parked = False
        # The rest of an HTTP chunk that a direct write sent only in part
        # (or, on a GzipStreamClient, not at all). It must reach the socket
        # before anything else, whatever happens to the queue, or the
        # chunked framing breaks.
        self.unsent = b""
        # The hub's counters, which direct writes update (frames_sent, bytes_sent),
        # and a GzipStreamClient's compressor (compression_*_bytes).
        self.stats: dict[str, int] | None = None

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
        if self.parked and self._write_now(frame):
            return
        self.parked = False
        self.queue.append(frame)
        self._account(len(frame))
        self.wakeup.set()

    def attach_socket(self, sock: gevent_socket.socket, stats: dict[str, int]) -> None:
        """Allow direct writes to ``sock``, a socket from ``stream_socket``.

        Call it once the response headers went out, from the stream's greenlet.
        """
        self.socket = sock._sock
        self.stats = stats

    def park(self) -> bool:
        """Mark the stream's greenlet as waiting; return False when it has work instead.

        Clears the wake-up event, because the caller has just seen that
        nothing is queued; a stale set event would make its wait return at
        once, again and again, without yielding.
        """
        if self.closed or self.queue or self.unsent:
            return False
        self.wakeup.clear()
        self.parked = self.socket is not None and self.pending is None
        return True

    # Whether direct writes send the chunk shared by every stream, which
    # lets ``offer_all`` write to the stream without calling it.
    _shares_chunk = True
    # Builds the HTTP chunk of a direct write. Uncompressed streams share
    # one chunk per frame. A bound method is no descriptor, so
    # ``self._direct_chunk(frame)`` calls the cache's method directly.
    _direct_chunk = _chunks.chunk_of
    # Whether a frame that the socket refused whole may wait in the queue.
    # A compressed frame may not, because its bytes are already in the body.
    _requeue_refused = True

    def _write_now(self, frame: bytes) -> bool:
        """Send ``frame`` without blocking; return False when it must be queued instead.

        Called only while parked. A partial send keeps the rest of the chunk
        in ``unsent`` and wakes the stream's greenlet to finish it, and so
        does a refused send when ``_requeue_refused`` is False.
        """
        chunk = self._direct_chunk(frame)
        try:
            sent = self.socket.send(chunk)
        except BlockingIOError:
            if self._requeue_refused:
                return False
            sent = 0
        except OSError:
            # The peer is gone (EPIPE, ECONNRESET); the greenlet ends the stream.
            self.close(CLOSE_CLIENT_GONE)
            return True
        if sent < len(chunk):
            self._keep_unsent(chunk[sent:])
        self.last_sent = time.monotonic()
        stats = self.stats
        stats["frames_sent"] += 1
        stats["bytes_sent"] += len(frame)
        return True

    def _keep_unsent(self, rest: bytes) -> None:
        """Keep the unsent ``rest`` of a direct write and wake the stream's greenlet to send it."""
        self.parked = False
        self.unsent = rest
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
        self.parked = False
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

    def take_wire(self) -> bytes:
        """Return the unsent rest of a direct write, then every queued frame as one HTTP chunk.

        Empties both; the caller writes the result to ``socket`` in full.
        """
        parts = [self.unsent] if self.unsent else []
        if self.queue:
            payload = self.take()
            parts.append(http_chunk(payload))
        self.unsent = b""
        self.wakeup.clear()
        return b"".join(parts)

    def close(self, reason: str, final_frame: bytes = b"") -> None:
        if self.closed:
            return
        self.closed = True
        self.parked = False
        self.closed_at = time.monotonic()
        self.close_reason = reason
        self.final_frame = final_frame
        self.wakeup.set()

    def encode(self, data: bytes) -> bytes:
        """Return ``data`` as bytes of the response body: here unchanged."""
        return data

    def encode_end(self, data: bytes) -> bytes:
        """Return ``data`` as the last bytes of the response body: here unchanged."""
        return data


class GzipStreamClient(StreamClient):
    """A stream whose response body is gzip, from one compressor of its own.

    Invariant: the compressor's output reaches the socket in the order it
    was produced, each byte exactly once, because every byte depends on
    the compressor's state after the bytes before it. So a frame is
    compressed only when it is about to be written: by ``_write_now``, by
    ``take`` (called by ``take_wire`` and by the stream's greenlet) and by
    ``encode`` for the first and last items of the body. A direct write
    that the socket takes only in part, or not at all, keeps the rest in
    ``unsent``. Queued frames stay uncompressed, so the queue bound and a
    resync's ``queue.clear()`` work as for any stream.
    """

    __slots__ = ("compressor",)

    def __init__(self, *args, compressor, stats: dict[str, int], **kwargs):
        super().__init__(*args, **kwargs)
        # A zlib compressor from livegate.compression.new_gzip_compressor.
        self.compressor = compressor
        # Set here, not only by attach_socket: streams that gunicorn writes
        # count their compressed bytes too.
        self.stats = stats

    # Once compressed, a frame is part of the body: a socket that takes none
    # of it leaves the whole chunk in ``unsent``, for the stream's greenlet.
    _requeue_refused = False
    _shares_chunk = False

    def encode(self, data: bytes) -> bytes:
        """Compress ``data`` and flush, so the client can decode everything sent so far."""
        return self._compress(data, zlib.Z_SYNC_FLUSH)

    def encode_end(self, data: bytes) -> bytes:
        """Compress ``data`` and end the gzip member with its trailer."""
        return self._compress(data, zlib.Z_FINISH)

    def _compress(self, data: bytes, flush_mode: int) -> bytes:
        compressor = self.compressor
        compressed = compressor.compress(data) + compressor.flush(flush_mode)
        stats = self.stats
        stats["compression_input_bytes"] += len(data)
        stats["compression_output_bytes"] += len(compressed)
        return compressed

    def _direct_chunk(self, frame: bytes) -> bytes:
        """Compress ``frame`` and frame the result as one HTTP chunk."""
        return http_chunk(self.encode(frame))

    def take(self) -> bytes:
        """Return every queued frame compressed as one piece, and empty the queue."""
        return self.encode(super().take())
