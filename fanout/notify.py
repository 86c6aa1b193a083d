"""Wake-ups from the subscriber to the workers.

Each worker binds a Unix datagram socket in the abstract namespace, named
after the ring and its reader slot. After writing a batch of records the
subscriber sends one byte to every active slot, so a worker's ring reader
sleeps in ``recv`` instead of polling. A lost or refused datagram costs at
most the reader's fallback poll interval, never a record: the records are
in the ring, the datagram only says "look now".
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


def wakeup_address(ring_id: str, slot: int) -> str:
    # A leading NUL puts the name in Linux's abstract socket namespace: no
    # file to clean up, and the name disappears with the socket.
    return f"\0livegate-{ring_id}-{slot}"


class WorkerNotifier:
    """Subscriber side: sends wake-ups to the readers of a ring."""

    def __init__(self, ring_id: str):
        self._ring_id = ring_id
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def notify(self, slots: list[int]) -> None:
        for slot in slots:
            try:
                self._socket.sendto(b"!", wakeup_address(self._ring_id, slot))
            except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
                # A full socket buffer means that worker has wake-ups pending
                # already; a refused one means the worker is gone or starting.
                pass

    def close(self) -> None:
        self._socket.close()


def bind_wakeup_socket(ring_id: str, slot: int) -> socket.socket:
    """Worker side: bind the slot's wake-up socket (gevent-patched when called in a worker)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(wakeup_address(ring_id, slot))
    return sock
