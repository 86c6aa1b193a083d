"""Unit tests of workers.client.StreamClient: ordering, sync buffering, bounds and close."""

from __future__ import annotations

import pytest

from livegate.channels import parse_subscription
from workers.client import (
    CLOSE_CLIENT_GONE,
    CLOSE_SHUTDOWN,
    CLOSE_SLOW_CONSUMER,
    StreamClient,
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
