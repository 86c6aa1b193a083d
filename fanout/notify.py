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
    """Subscriber side: sends wake-ups to the readers of a ring.

    Keeps one datagram socket connected to each slot's address, so a
    wake-up is a plain ``send`` without the address lookup that ``sendto``
    repeats on every call.
    """

    def __init__(self, ring_id: str):
        self._ring_id = ring_id
        self._sockets: dict[int, socket.socket] = {}

    def notify(self, slots: list[int]) -> None:
        for slot in slots:
            sock = self._sockets.get(slot) or self._connect(slot)
            if sock is None:
                continue
            try:
                sock.send(b"!")
            except BlockingIOError:
                # A full socket buffer means that worker has wake-ups pending already.
                pass
            except OSError:
                # The worker that had the slot is gone (ECONNREFUSED). Its
                # successor binds the same address: connect again and retry once.
                self._forget(slot)
                sock = self._connect(slot)
                if sock is not None:
                    try:
                        sock.send(b"!")
                    except OSError:
                        pass

    def _connect(self, slot: int) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.connect(wakeup_address(self._ring_id, slot))
        except OSError:
            # Nothing bound yet (a worker that is starting): try at the next batch.
            sock.close()
            return None
        self._sockets[slot] = sock
        return sock

    def _forget(self, slot: int) -> None:
        sock = self._sockets.pop(slot, None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        for slot in list(self._sockets):
            self._forget(slot)


def bind_wakeup_socket(ring_id: str, slot: int) -> socket.socket:
    """Worker side: bind the slot's wake-up socket (gevent-patched when called in a worker)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(wakeup_address(ring_id, slot))
    return sock
