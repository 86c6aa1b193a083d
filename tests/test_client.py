"""Unit tests of workers.client.StreamClient: ordering, sync buffering, bounds and close.

GzipStreamClient gets the same direct-write checks, with the body decoded
as a client would.
"""

from __future__ import annotations

import random
import socket
import zlib

import gevent
import pytest
from gevent import socket as gevent_socket

from livegate.channels import parse_subscription
from livegate.compression import new_gzip_compressor
from livegate.frames import http_chunk
from workers.client import (
    CLOSE_CLIENT_GONE,
    CLOSE_SHUTDOWN,
    CLOSE_SLOW_CONSUMER,
    GzipStreamClient,
    StreamClient,
    Wakeup,
    offer_all,
    stream_socket,
)

QUEUE_BYTES = 1000


def make_client(max_queue_bytes: int = QUEUE_BYTES) -> StreamClient:
    return StreamClient((parse_subscription("a/*"),), max_queue_bytes, since=None, remote="127.0.0.1")


def synced_client(max_queue_bytes: int = QUEUE_BYTES, seq: int = 0) -> StreamClient:
    """Return a client whose first sync is done, so offered frames go to the queue."""
    client = make_client(max_queue_bytes)
    client.finish_sync("epoch1", seq, [])
    return client


class TestInitialState:
    def test_fields(self):
        client = StreamClient((parse_subscription("a"),), 4096, since="abc-5", remote="10.0.0.1")

        assert client.since == "abc-5"
        assert client.remote == "10.0.0.1"
        assert client.last_seq == 0
        assert client.pending == []
        assert client.queue == []
        assert client.queued_bytes == 0
        assert client.closed is False
        assert client.sync_generation == 1
        assert not client.wakeup.is_set()

    def test_ids_unique(self):
        assert make_client().id != make_client().id


class TestOffer:
    def test_queues_after_sync(self):
        client = synced_client()

        client.offer(1, b"one")

        assert client.queue == [b"one"]
        assert client.queued_bytes == 3
        assert client.last_seq == 1
        assert client.wakeup.is_set()

    def test_duplicate_seq_skipped(self):
        client = synced_client()

        client.offer(5, b"frame")
        client.offer(5, b"frame")

        assert client.queue == [b"frame"]
        assert client.queued_bytes == 5

    def test_older_seq_skipped(self):
        client = synced_client()
        client.offer(5, b"five")

        client.offer(4, b"four")
        client.offer(1, b"one")

        assert client.queue == [b"five"]
        assert client.last_seq == 5

    def test_seq_at_sync_point_skipped(self):
        client = synced_client(seq=10)

        client.offer(10, b"ten")
        client.offer(11, b"eleven")

        assert client.queue == [b"eleven"]

    def test_order_kept(self):
        client = synced_client()

        for seq in (1, 2, 7, 9):
            client.offer(seq, b"%d," % seq)

        assert client.take() == b"1,2,7,9,"

    def test_closed_ignores_offer(self):
        client = synced_client()
        client.close(CLOSE_CLIENT_GONE)

        client.offer(1, b"one")

        assert client.queue == []
        assert client.last_seq == 0


class TestSync:
    def test_offer_before_sync_buffered(self):
        client = make_client()

        client.offer(3, b"three")

        assert client.pending == [(3, b"three")]
        assert client.queue == []
        assert client.queued_bytes == 5
        assert not client.wakeup.is_set()

    def test_buffered_duplicate_skipped(self):
        client = make_client()

        client.offer(3, b"three")
        client.offer(3, b"three")

        assert client.pending == [(3, b"three")]

    def test_finish_keeps_newer_frames(self):
        client = make_client()
        for seq in (3, 4, 5, 6):
            client.offer(seq, b"f%d" % seq)

        client.finish_sync("epoch1", 4, [b"snapshot"])

        assert client.queue == [b"snapshot", b"f5", b"f6"]
        assert client.queued_bytes == len(b"snapshotf5f6")
        assert client.last_seq == 6
        assert client.pending is None
        assert client.epoch == "epoch1"
        assert client.wakeup.is_set()

    def test_finish_drops_older_frames(self):
        client = make_client()
        client.offer(3, b"f3")
        client.offer(4, b"f4")

        client.finish_sync("epoch1", 9, [b"snapshot"])

        assert client.queue == [b"snapshot"]
        assert client.last_seq == 9

    def test_finish_without_pending(self):
        client = make_client()

        client.finish_sync(None, 0, [])

        assert client.queue == []
        assert client.epoch is None
        assert client.pending is None

    def test_offer_after_finish_queued(self):
        client = make_client()
        client.offer(5, b"f5")
        client.finish_sync("epoch1", 4, [b"snapshot"])

        client.offer(5, b"f5")
        client.offer(6, b"f6")

        assert client.queue == [b"snapshot", b"f5", b"f6"]


class TestQueueBound:
    def test_at_bound_stays_open(self):
        client = synced_client(max_queue_bytes=10)

        client.offer(1, b"x" * 10)

        assert client.closed is False

    def test_past_bound_closes(self):
        client = synced_client(max_queue_bytes=10)
        client.offer(1, b"x" * 6)

        client.offer(2, b"y" * 6)

        assert client.closed is True
        assert client.close_reason == CLOSE_SLOW_CONSUMER
        assert client.wakeup.is_set()

    def test_pending_counts_toward_bound(self):
        client = make_client(max_queue_bytes=10)

        client.offer(1, b"x" * 6)
        client.offer(2, b"y" * 6)

        assert client.closed is True
        assert client.close_reason == CLOSE_SLOW_CONSUMER

    def test_sync_frames_exempt_from_bound(self):
        client = make_client(max_queue_bytes=10)

        client.finish_sync("epoch1", 1, [b"x" * 6, b"y" * 6])

        assert client.closed is False

    def test_frames_behind_sync_count(self):
        client = make_client(max_queue_bytes=10)
        client.finish_sync("epoch1", 1, [b"x" * 6, b"y" * 6])

        client.offer(2, b"z" * 11)

        assert client.closed is True
        assert client.close_reason == CLOSE_SLOW_CONSUMER

    def test_single_oversized_frame_allowed(self):
        client = synced_client(max_queue_bytes=10)

        client.offer(1, b"x" * 11)

        assert client.closed is False

    def test_frame_behind_oversized_closes(self):
        client = synced_client(max_queue_bytes=10)
        client.offer(1, b"x" * 11)

        client.offer(2, b"y")

        assert client.closed is True

    def test_take_frees_space(self):
        client = synced_client(max_queue_bytes=10)
        client.offer(1, b"x" * 6)
        client.take()

        client.offer(2, b"y" * 6)

        assert client.closed is False

    def test_nothing_queued_after_close(self):
        client = synced_client(max_queue_bytes=10)
        client.offer(1, b"x" * 6)
        client.offer(2, b"x" * 6)
        assert client.closed is True
        queued = list(client.queue)

        client.offer(3, b"y")
        client.enqueue(b"z")

        assert client.queue == queued


class TestResync:
    def test_clears_queue(self):
        client = synced_client()
        client.offer(1, b"one")
        client.wakeup.clear()

        client.request_resync()

        assert client.queue == []
        assert client.queued_bytes == 0
        assert client.pending == []
        assert client.last_seq == 0
        assert client.sync_generation == 2
        assert client.wakeup.is_set()

    def test_buffers_until_next_sync(self):
        client = synced_client()
        client.offer(5, b"f5")
        client.request_resync()

        client.offer(5, b"f5")
        client.offer(6, b"f6")

        assert client.queue == []
        assert client.pending == [(5, b"f5"), (6, b"f6")]

    def test_generation_counts_requests(self):
        client = make_client()

        client.request_resync()
        client.request_resync()

        assert client.sync_generation == 3

    def test_closed_unchanged(self):
        client = synced_client()
        client.offer(1, b"one")
        client.close(CLOSE_SHUTDOWN)

        client.request_resync()

        assert client.sync_generation == 1
        assert client.queue == [b"one"]


class TestTake:
    def test_joins_frames(self):
        client = synced_client()
        client.offer(1, b"a")
        client.offer(2, b"bc")

        chunk = client.take()

        assert chunk == b"abc"
        assert client.queue == []
        assert client.queued_bytes == 0
        assert not client.wakeup.is_set()

    def test_single_frame(self):
        client = synced_client()
        client.offer(1, b"only")

        assert client.take() == b"only"

    def test_empty(self):
        client = synced_client()

        assert client.take() == b""
        assert not client.wakeup.is_set()


class TestClose:
    def test_sets_fields(self):
        client = synced_client()

        client.close(CLOSE_SHUTDOWN, b"retry: 100\n\n")

        assert client.closed is True
        assert client.close_reason == CLOSE_SHUTDOWN
        assert client.final_frame == b"retry: 100\n\n"
        assert client.closed_at > 0
        assert client.wakeup.is_set()

    def test_idempotent(self):
        client = synced_client()
        client.close(CLOSE_SHUTDOWN, b"first")
        closed_at = client.closed_at

        client.close(CLOSE_SLOW_CONSUMER, b"second")

        assert client.close_reason == CLOSE_SHUTDOWN
        assert client.final_frame == b"first"
        assert client.closed_at == closed_at

    @pytest.mark.parametrize("reason", [CLOSE_CLIENT_GONE, CLOSE_SLOW_CONSUMER, CLOSE_SHUTDOWN])
    def test_reason_kept(self, reason):
        client = make_client()

        client.close(reason)

        assert client.close_reason == reason


def read_available(peer: socket.socket) -> bytes:
    """Return every byte that reaches ``peer`` until none arrives for 0.5 s.

    Over TCP, bytes still in the sender's buffer arrive only as the reader
    makes room, so one read that finds nothing does not mean the end.
    """
    peer.settimeout(0.5)
    received = b""
    while True:
        try:
            data = peer.recv(1 << 20)
        except TimeoutError:
            return received
        if not data:
            return received
        received += data


def split_chunks(wire: bytes) -> list[bytes]:
    """Return the payloads of a run of whole HTTP/1.1 chunks; fail on broken framing."""
    payloads = []
    while wire:
        head, separator, wire = wire.partition(b"\r\n")
        assert separator, f"chunk size line without CRLF: {head[:20]!r}"
        size = int(head, 16)
        assert size > 0, "an empty chunk would end the response"
        assert wire[size:size + 2] == b"\r\n", f"chunk of {size} bytes not followed by CRLF"
        payloads.append(wire[:size])
        wire = wire[size + 2:]
    return payloads


def dechunk(wire: bytes) -> bytes:
    """Return the payload of a run of whole HTTP/1.1 chunks; fail on broken framing."""
    return b"".join(split_chunks(wire))


@pytest.fixture
def socket_pair():
    """A connected (server, peer) pair on loopback TCP: a gevent socket as gunicorn
    passes it, and a plain one. Small buffers make a few frames fill them, and TCP,
    unlike a Unix socket pair, accepts part of a write when the buffer is nearly full."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.socket()
        # Set before connecting: shrinking the window of an open connection
        # makes the sender wait for its persist timer.
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.connect(listener.getsockname())
        accepted, _ = listener.accept()
    server = gevent_socket.socket(fileno=accepted.detach())
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    yield server, peer
    server.close()
    peer.close()


def parked_client(server: gevent_socket.socket, stats: dict | None = None) -> StreamClient:
    client = synced_client(max_queue_bytes=1 << 20)
    client.attach_socket(server, stats if stats is not None else {"frames_sent": 0,
                                                                   "bytes_sent": 0})
    assert client.park()
    return client


def offer_past_partial_write(client: StreamClient, peer: socket.socket, frames: list[bytes]) -> bytes:
    """Offer ``frames`` until a direct write is partial, then the rest; return the bytes sent."""
    for seq, frame in enumerate(frames, 1):
        client.offer(seq, frame)
        if client.unsent:
            break
    assert client.unsent, "no direct write was partial; the buffers are too large"
    for seq, frame in enumerate(frames[seq:], seq + 1):
        client.offer(seq, frame)
    return read_available(peer) + client.take_wire()


class TestDirectWrite:
    def test_parked_client_writes_chunk(self, socket_pair):
        server, peer = socket_pair
        stats = {"frames_sent": 0, "bytes_sent": 0}
        client = parked_client(server, stats)

        client.offer(1, b"event: delta\n\n")

        assert read_available(peer) == http_chunk(b"event: delta\n\n")
        assert client.queue == []
        assert client.parked is True
        assert not client.wakeup.is_set()
        assert stats == {"frames_sent": 1, "bytes_sent": 14}

    def test_frames_in_order(self, socket_pair):
        server, peer = socket_pair
        client = parked_client(server)

        for seq in (1, 2, 3):
            client.offer(seq, b"f%d" % seq)

        assert read_available(peer) == b"".join(http_chunk(b"f%d" % seq) for seq in (1, 2, 3))

    def test_unparked_client_queues(self, socket_pair):
        server, peer = socket_pair
        client = synced_client()
        client.attach_socket(server, {"frames_sent": 0, "bytes_sent": 0})

        client.offer(1, b"one")

        assert client.queue == [b"one"]
        assert read_available(peer) == b""

    def test_full_socket_queues_rest(self, socket_pair):
        server, peer = socket_pair
        client = parked_client(server)
        frames = [b"%05d" % seq + b"x" * 1000 for seq in range(1, 200)]

        for seq, frame in enumerate(frames, 1):
            client.offer(seq, frame)

        assert client.parked is False
        assert client.wakeup.is_set()
        assert client.queue
        wire = read_available(peer) + client.take_wire()
        assert dechunk(wire) == b"".join(frames)

    def test_partial_write_completed_by_take_wire(self, socket_pair):
        server, peer = socket_pair
        client = parked_client(server)
        frames = [b"%05d" % seq + b"y" * 3000 for seq in range(1, 40)]

        wire = offer_past_partial_write(client, peer, frames)

        assert client.unsent == b""
        assert client.queue == []
        assert dechunk(wire) == b"".join(frames)

    def test_closed_peer_closes_stream(self, socket_pair):
        server, peer = socket_pair
        client = parked_client(server)
        peer.close()

        # The first write after the peer closed may still succeed; the peer
        # responds with a reset, and a later write fails.
        for seq in range(1, 50):
            client.offer(seq, b"frame")
            if client.closed:
                break

        assert client.closed is True
        assert client.close_reason == CLOSE_CLIENT_GONE
        assert client.wakeup.is_set()

    def test_heartbeat_written_directly(self, socket_pair):
        server, peer = socket_pair
        client = parked_client(server)

        client.enqueue(b": heartbeat\n\n")

        assert read_available(peer) == http_chunk(b": heartbeat\n\n")
        assert client.queue == []


def gzip_stats() -> dict:
    return {"frames_sent": 0, "bytes_sent": 0, "compression_input_bytes": 0,
            "compression_output_bytes": 0}


def gzip_client(stats: dict | None = None, max_queue_bytes: int = 1 << 20) -> GzipStreamClient:
    """Return a gzip stream whose first sync is done, with a window of 2**10 bytes."""
    client = GzipStreamClient((parse_subscription("a/*"),), max_queue_bytes, since=None,
                              remote="127.0.0.1", compressor=new_gzip_compressor(10),
                              stats=stats if stats is not None else gzip_stats())
    client.finish_sync("epoch1", 0, [])
    return client


def parked_gzip_client(server: gevent_socket.socket, stats: dict | None = None) -> GzipStreamClient:
    client = gzip_client(stats)
    client.attach_socket(server, client.stats)
    assert client.park()
    return client


def gunzip(body: bytes) -> bytes:
    """Decode gzip bytes that need not end the member, as a streaming client does."""
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body)


def incompressible(seq: int, size: int) -> bytes:
    return b"%05d" % seq + random.Random(seq).randbytes(size)


class ScriptedSocket:
    """A socket stand-in whose send() takes the next count of a script, or raises BlockingIOError on None."""

    def __init__(self, script: list[int | None]):
        self.script = list(script)
        self.received = b""

    def send(self, data: bytes) -> int:
        count = self.script.pop(0) if self.script else len(data)
        if count is None:
            raise BlockingIOError
        self.received += data[:count]
        return min(count, len(data))


def park_on_script(client: StreamClient, script: list[int | None]) -> ScriptedSocket:
    """Give ``client`` a ScriptedSocket playing ``script`` and park it; return the socket."""
    sock = ScriptedSocket(script)
    client.socket = sock
    assert client.park()
    return sock


def scripted_gzip_client(script: list[int | None]) -> tuple[GzipStreamClient, ScriptedSocket]:
    client = gzip_client()
    return client, park_on_script(client, script)


class TestGzipStream:
    def test_direct_write_decodes_at_once(self, socket_pair):
        server, peer = socket_pair
        client = parked_gzip_client(server)
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)

        for seq, frame in enumerate([b"event: delta\ndata: {}\n\n", b": heartbeat\n\n"], 1):
            client.offer(seq, frame)
            wire = read_available(peer)

            assert decoder.decompress(dechunk(wire)) == frame
        assert client.parked is True
        assert client.queue == []

    def test_direct_writes_one_chunk_each(self, socket_pair):
        server, peer = socket_pair
        client = parked_gzip_client(server)
        frames = [b"frame %d\n\n" % seq for seq in range(1, 4)]

        for seq, frame in enumerate(frames, 1):
            client.offer(seq, frame)
        chunks = split_chunks(read_available(peer))

        assert len(chunks) == 3
        assert chunks[0][:2] == b"\x1f\x8b", "the first chunk starts with the gzip header"
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert [decoder.decompress(chunk) for chunk in chunks] == frames

    def test_take_compresses_queue(self):
        client = gzip_client()

        client.offer(1, b"one\n\n")
        client.offer(2, b"two\n\n")
        body = client.take()

        assert client.queue == []
        assert client.queued_bytes == 0
        assert gunzip(body) == b"one\n\ntwo\n\n"

    def test_encode_and_take_share_compressor(self):
        client = gzip_client()

        body = client.encode(b"retry: 2000\n\n")
        client.offer(1, b"event: snapshot\n\n")
        body += client.take()

        assert gunzip(body) == b"retry: 2000\n\nevent: snapshot\n\n"

    def test_encode_end_finishes_member(self):
        client = gzip_client()
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)

        body = client.encode(b"retry: 2000\n\n") + client.encode_end(b"retry: 4000\n\n")

        assert decoder.decompress(body) == b"retry: 2000\n\nretry: 4000\n\n"
        assert decoder.eof
        assert decoder.unused_data == b""

    def test_counts_bytes(self, socket_pair):
        server, peer = socket_pair
        stats = gzip_stats()
        client = parked_gzip_client(server, stats)
        frame = b"event: delta\ndata: {}\n\n"

        client.offer(1, frame)
        wire = read_available(peer)

        assert stats["frames_sent"] == 1
        assert stats["bytes_sent"] == len(frame)
        assert stats["compression_input_bytes"] == len(frame)
        assert stats["compression_output_bytes"] == len(dechunk(wire))

    def test_partial_send_keeps_rest(self):
        client, sock = scripted_gzip_client([3])
        frame = b"event: delta\ndata: {}\n\n"

        client.offer(1, frame)

        assert len(sock.received) == 3
        assert client.unsent
        assert client.parked is False
        assert client.wakeup.is_set()
        client.offer(2, b"second\n\n")
        assert client.queue == [b"second\n\n"]
        wire = sock.received + client.take_wire()
        assert gunzip(dechunk(wire)) == frame + b"second\n\n"

    def test_blocked_send_keeps_whole_chunk(self):
        # The compressor has consumed the frame, so it must not be queued
        # and compressed a second time.
        client, sock = scripted_gzip_client([None])
        frame = b"event: delta\ndata: {}\n\n"

        client.offer(1, frame)

        assert sock.received == b""
        assert client.queue == []
        assert client.parked is False
        assert len(split_chunks(client.unsent)) == 1
        assert gunzip(dechunk(client.take_wire())) == frame

    def test_resync_drops_queued_frames_unseen(self):
        client = gzip_client()
        client.offer(1, b"dropped\n\n")

        client.request_resync()
        client.finish_sync("epoch1", 5, [b"snapshot\n\n"])
        body = client.take()

        assert gunzip(body) == b"snapshot\n\n"

    def test_full_socket_keeps_order(self, socket_pair):
        server, peer = socket_pair
        client = parked_gzip_client(server)
        frames = [incompressible(seq, 1000) for seq in range(1, 200)]

        for seq, frame in enumerate(frames, 1):
            client.offer(seq, frame)

        assert client.parked is False
        assert client.unsent or client.queue
        wire = read_available(peer) + client.take_wire()
        assert gunzip(dechunk(wire)) == b"".join(frames)

    def test_partial_tcp_write_completed_by_take_wire(self, socket_pair):
        server, peer = socket_pair
        client = parked_gzip_client(server)
        frames = [incompressible(seq, 3000) for seq in range(1, 40)]

        wire = offer_past_partial_write(client, peer, frames)

        assert client.unsent == b""
        assert client.queue == []
        assert gunzip(dechunk(wire)) == b"".join(frames)

    def test_plain_stream_has_no_compressor_slot(self):
        assert "compressor" not in StreamClient.__slots__
        assert not hasattr(make_client(), "__dict__")


def scripted_client(script: list[int | None]) -> tuple[StreamClient, ScriptedSocket]:
    client = synced_client(max_queue_bytes=1 << 20)
    client.stats = {"frames_sent": 0, "bytes_sent": 0}
    return client, park_on_script(client, script)


class TestOfferAll:
    """``offer_all`` must leave every stream as ``offer`` would, whichever case it takes."""

    FRAME = b"event: delta\ndata: {}\n\n"

    def test_writes_parked_queues_busy(self):
        first, first_sock = scripted_client([])
        second, second_sock = scripted_client([])
        busy = synced_client()

        written = offer_all({first, second, busy}, 1, self.FRAME, 123.0)

        assert written == 2
        assert first_sock.received == second_sock.received == http_chunk(self.FRAME)
        assert first.last_sent == second.last_sent == 123.0
        assert first.last_seq == second.last_seq == busy.last_seq == 1
        assert first.parked and second.parked
        assert busy.queue == [self.FRAME]

    def test_seen_seq_skipped(self):
        client, sock = scripted_client([])
        offer_all({client}, 5, self.FRAME, 0.0)

        assert offer_all({client}, 5, self.FRAME, 0.0) == 0
        assert offer_all({client}, 4, self.FRAME, 0.0) == 0
        assert sock.received == http_chunk(self.FRAME)

    def test_full_socket_queues_frame(self):
        client, sock = scripted_client([None])

        assert offer_all({client}, 1, self.FRAME, 0.0) == 0

        assert sock.received == b""
        assert client.queue == [self.FRAME]
        assert client.parked is False
        assert client.wakeup.is_set()
        assert client.last_seq == 1

    def test_partial_send_keeps_rest(self):
        client, sock = scripted_client([4])

        assert offer_all({client}, 1, self.FRAME, 0.0) == 1

        assert sock.received + client.unsent == http_chunk(self.FRAME)
        assert client.parked is False
        assert client.wakeup.is_set()
        offer_all({client}, 2, b"second\n\n", 0.0)
        assert client.queue == [b"second\n\n"]

    def test_closed_peer_closes_stream(self, socket_pair):
        server, peer = socket_pair
        client = parked_client(server)
        peer.close()

        for seq in range(1, 50):
            offer_all({client}, seq, b"frame", 0.0)
            if client.closed:
                break

        assert client.close_reason == CLOSE_CLIENT_GONE
        assert client.wakeup.is_set()

    def test_gzip_stream_compresses_own_chunk(self, socket_pair):
        server, peer = socket_pair
        stats = gzip_stats()
        client = parked_gzip_client(server, stats)

        # The gzip stream counts its own write; the caller counts only shared chunks.
        assert offer_all({client}, 1, self.FRAME, 0.0) == 0

        assert gunzip(dechunk(read_available(peer))) == self.FRAME
        assert stats["frames_sent"] == 1


class TestPark:
    def test_park_with_queue_refused(self):
        client = synced_client()
        client.offer(1, b"one")

        assert client.park() is False
        assert client.parked is False

    def test_park_clears_stale_wakeup(self):
        client = synced_client()
        client.wakeup.set()

        assert client.park() is True
        assert not client.wakeup.is_set()

    def test_no_socket_not_parked(self):
        client = synced_client()

        assert client.park() is True
        assert client.parked is False

    def test_pending_sync_not_parked(self, socket_pair):
        server, _ = socket_pair
        client = make_client()
        client.attach_socket(server, {"frames_sent": 0, "bytes_sent": 0})

        client.park()

        assert client.parked is False

    def test_resync_unparks(self, socket_pair):
        server, peer = socket_pair
        client = parked_client(server)

        client.request_resync()
        client.offer(1, b"one")

        assert client.parked is False
        assert client.pending == [(1, b"one")]
        assert read_available(peer) == b""

    def test_close_unparks(self, socket_pair):
        server, _ = socket_pair
        client = parked_client(server)

        client.close(CLOSE_SHUTDOWN)

        assert client.parked is False


class TestStreamSocket:
    def environ(self, sock, **overrides):
        environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1",
                   "gunicorn.socket": sock}
        environ.update(overrides)
        return environ

    def test_get_over_http11(self, socket_pair):
        server, _ = socket_pair

        assert stream_socket(self.environ(server)) is server

    @pytest.mark.parametrize("overrides", [
        {"REQUEST_METHOD": "HEAD"},
        {"SERVER_PROTOCOL": "HTTP/1.0"},
        {"SERVER_PROTOCOL": "HTTP/2.0"},
        {"HTTP_VERSION": "2"},
    ])
    def test_other_requests_refused(self, socket_pair, overrides):
        server, _ = socket_pair

        assert stream_socket(self.environ(server, **overrides)) is None

    def test_plain_socket_refused(self, socket_pair):
        _, peer = socket_pair

        assert stream_socket(self.environ(peer)) is None

    def test_missing_socket_refused(self):
        assert stream_socket(self.environ(None)) is None


class TestWakeup:
    def test_wait_returns_when_set(self):
        wakeup = Wakeup()
        wakeup.set()

        with gevent.Timeout(1):
            wakeup.wait()

        assert wakeup.is_set()

    def test_set_resumes_waiter(self):
        wakeup = Wakeup()
        waiter = gevent.spawn(wakeup.wait)
        gevent.sleep(0)
        assert not waiter.dead

        wakeup.set()
        waiter.join(timeout=1)

        assert waiter.dead
        assert waiter.successful()

    def test_clear_makes_wait_block(self):
        wakeup = Wakeup()
        wakeup.set()
        wakeup.clear()

        waiter = gevent.spawn(wakeup.wait)
        gevent.sleep(0.01)

        assert not waiter.dead
        waiter.kill()

    def test_set_after_waiter_killed(self):
        wakeup = Wakeup()
        waiter = gevent.spawn(wakeup.wait)
        gevent.sleep(0)
        waiter.kill()

        wakeup.set()
        gevent.sleep(0)

        assert waiter.dead
        assert wakeup.is_set()
