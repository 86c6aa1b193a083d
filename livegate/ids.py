"""Event ids: opaque tokens built from the Redis epoch and the global seq.

A token is ``EPOCH-SEQ``. Clients only echo it back (``Last-Event-ID`` or
``?since=``). It names a point in the global order of updates of one
Redis lineage and nothing about a pod, a worker or a ring position, so any
gateway on the same Redis can resume from it.
"""

from __future__ import annotations

from typing import NamedTuple

# The ring header stores the epoch in 16 bytes.
MAX_EPOCH_LENGTH = 16
_EPOCH_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
# A seq is a Redis integer (signed 64-bit), so it never has more than 19 digits.
_MAX_SEQ_DIGITS = 19
_MAX_SEQ = 2**63 - 1


class EventId(NamedTuple):
    epoch: str
    seq: int


def is_valid_epoch(epoch: str) -> bool:
    return (
        isinstance(epoch, str)
        and 0 < len(epoch) <= MAX_EPOCH_LENGTH
        and _EPOCH_CHARACTERS.issuperset(epoch)
    )


def format_event_id(epoch: str, seq: int) -> str:
    return f"{epoch}-{seq}"


def parse_event_id(token: str | None) -> EventId | None:
    """Return the epoch and seq in ``token``, or None when it is not a valid token.

    Callers treat None like no token at all: the client gets snapshots.
    """
    if not token or len(token) > MAX_EPOCH_LENGTH + 1 + _MAX_SEQ_DIGITS:
        return None
    epoch, separator, seq_text = token.rpartition("-")
    if not separator or not is_valid_epoch(epoch):
        return None
    if not seq_text.isascii() or not seq_text.isdigit() or len(seq_text) > _MAX_SEQ_DIGITS:
        return None
    seq = int(seq_text)
    if seq > _MAX_SEQ:
        return None
    return EventId(epoch, seq)
