"""The subscriber's batched bus reader and its wake-ups to the workers, against a private Redis."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Iterator

import pytest
import redis

from fanout.bus import BusSubscription
from fanout.notify import WorkerNotifier, bind_wakeup_socket

BUS = "lg:bus"


def _read_until(subscription: BusSubscription, count: int, timeout: float = 5.0) -> list[list[bytes]]:
    """Return the batches read until ``count`` messages arrived."""
    batches: list[list[bytes]] = []
    deadline = time.monotonic() + timeout
    while sum(len(batch) for batch in batches) < count:
        assert time.monotonic() < deadline, f"only {batches} arrived"
        batch = subscription.read(0.2)
        if batch:
            batches.append(batch)
    return batches


@contextlib.contextmanager
def open_subscription(url: str, protocol: int = 3) -> Iterator[tuple[redis.Redis, BusSubscription]]:
    """Yield a client of ``url`` and a subscription to BUS through it, and close both afterwards."""
    client = redis.Redis.from_url(url, protocol=protocol)
    subscription = BusSubscription(client, BUS)
    try:
        yield client, subscription
    finally:
        subscription.close()
        client.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_bus_reads_batches_in_order(redis_server, protocol):
    with open_subscription(redis_server.url, protocol) as (client, subscription):
        subscription.wait_subscribed(5.0)
        assert subscription.read(0.05) == []
        payloads = [f"update {index}".encode() * 20 for index in range(300)]
        pipe = client.pipeline(transaction=False)
        for payload in payloads:
            pipe.publish(BUS, payload)
        pipe.execute()
        batches = _read_until(subscription, len(payloads))

    assert [payload for batch in batches for payload in batch] == payloads
    # Published together, they arrive in far fewer reads than messages.
    assert len(batches) < len(payloads) / 10


def test_bus_keeps_early_messages(redis_server):
    with open_subscription(redis_server.url) as (client, subscription):
        # The subscription is active at Redis once the publish counts it.
        deadline = time.monotonic() + 5
        while client.publish(BUS, b"first") == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        subscription.wait_subscribed(5.0)

        assert _read_until(subscription, 1)[0][0] == b"first"


def test_bus_closed_connection_raises(redis_server):
    with open_subscription(redis_server.url) as (_, subscription):
        subscription.wait_subscribed(5.0)
        killer = redis.Redis.from_url(redis_server.url)
        killer.client_kill_filter(_type="pubsub")
        killer.close()
        with pytest.raises(redis.ConnectionError):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                subscription.read(0.2)


def test_bus_unconfirmed_subscribe_times_out():
    # A listener that accepts and never replies acts as a hung Redis.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # RESP2 and no CLIENT SETINFO: the connection sends nothing before SUBSCRIBE.
    client = redis.Redis(host="127.0.0.1", port=port, protocol=2, driver_info=None,
                         socket_timeout=5)
    try:
        subscription = BusSubscription(client, BUS)
        try:
            with pytest.raises(redis.TimeoutError, match="confirm the bus subscription"):
                subscription.wait_subscribed(0.2)
        finally:
            subscription.close()
    finally:
        client.close()
        listener.close()


def test_notifier_reconnects_replaced_worker():
    ring_id = f"test{os.getpid()}{time.monotonic_ns() % 100000}"
    notifier = WorkerNotifier(ring_id)
    first = bind_wakeup_socket(ring_id, 0)
    first.settimeout(2)
    try:
        notifier.notify([0, 1])  # Slot 1 has no worker, so nothing is sent there.
        assert first.recv(8) == b"!"
        first.close()
        # The worker that replaces it binds the same address.
        second = bind_wakeup_socket(ring_id, 0)
        second.settimeout(2)
        try:
            notifier.notify([0])
            assert second.recv(8) == b"!"
        finally:
            second.close()
    finally:
        notifier.close()


def test_notifier_skips_full_buffer():
    ring_id = f"full{os.getpid()}{time.monotonic_ns() % 100000}"
    notifier = WorkerNotifier(ring_id)
    worker = bind_wakeup_socket(ring_id, 0)
    try:
        # Far more wake-ups than a datagram queue holds: none raises.
        for _ in range(5000):
            notifier.notify([0])
        worker.setblocking(False)
        received = 0
        try:
            while True:
                worker.recv(8)
                received += 1
        except (BlockingIOError, socket.timeout):
            pass
        assert 0 < received < 5000
    finally:
        worker.close()
        notifier.close()
