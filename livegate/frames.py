"""SSE frame encoding.

Every ``data:`` line livegate writes is compact JSON produced by orjson,
which escapes control characters inside strings, so a frame can contain
a line break only where this module puts one. ``encode_frame`` still
checks, because a single stray newline would let a document add fields or
events to every stream that carries it.
"""

from __future__ import annotations

import json
import re

import orjson

HEARTBEAT = b": heartbeat\n\n"


class FrameError(ValueError):
    """Input that cannot be placed in an SSE frame."""


# A run of 19 or more digits may be an integer that does not fit 64 bits.
_LONG_DIGITS = re.compile(rb"\d{19,}")
_MIN_INTEGER = -(2**63)
_MAX_INTEGER = 2**64 - 1


def _check_integer(literal: str) -> int:
    value = int(literal)
    if not _MIN_INTEGER <= value <= _MAX_INTEGER:
        raise FrameError(f"integer {literal} does not fit in 64 bits")
    return value


def compact_json(text: bytes) -> bytes:
    """Validate JSON text and return it compact, without any line break.

    Raises FrameError when ``text`` is not valid JSON (orjson rejects invalid
    UTF-8 and lone surrogates as well) or contains an integer outside 64 bits,
    which orjson 3.13 would silently turn into a float.
    """
    if _LONG_DIGITS.search(text):
        # Rare, and usually digits inside a string: the standard library
        # parser finds whether a real integer literal is out of range.
        try:
            json.loads(text, parse_int=_check_integer)
        except ValueError as error:
            if isinstance(error, FrameError):
                raise
            raise FrameError(f"invalid JSON text: {error}") from None
    try:
        return orjson.dumps(orjson.loads(text))
    except orjson.JSONDecodeError as error:
        raise FrameError(f"invalid JSON text: {error}") from None
    except TypeError as error:
        raise FrameError(f"JSON text cannot be encoded: {error}") from None


def snapshot_data(channel: str, version: int, document_json: bytes) -> bytes:
    """The ``data`` of a snapshot event; ``document_json`` must be compact JSON."""
    return b'{"channel":%s,"version":%d,"data":%s}' % (
        orjson.dumps(channel), version, document_json,
    )


def delta_data(channel: str, version: int, patch_json: bytes) -> bytes:
    """The ``data`` of a delta event; ``patch_json`` must be compact JSON."""
    return b'{"channel":%s,"version":%d,"patch":%s}' % (
        orjson.dumps(channel), version, patch_json,
    )


def encode_frame(event: bytes, data: bytes, event_id: str | None = None) -> bytes:
    """Encode one SSE event; raise FrameError if a field would contain a line break."""
    for part in (event, data):
        if b"\n" in part or b"\r" in part:
            raise FrameError("SSE field value contains a line break")
    frame = b"event: " + event + b"\ndata: " + data + b"\n"
    if event_id is not None:
        encoded_id = event_id.encode("ascii")
        # The id is an epoch-seq token; a NUL in an id makes browsers ignore it.
        if b"\n" in encoded_id or b"\r" in encoded_id or b"\0" in encoded_id:
            raise FrameError(f"invalid event id {event_id!r}")
        frame += b"id: " + encoded_id + b"\n"
    return frame + b"\n"


def encode_snapshot_body(channel: str, version: int, document_json: bytes) -> bytes:
    """Encode a snapshot frame without its id line and final blank line.

    Workers cache this per channel version and append ``id_suffix`` per
    stream, because the id of an initial snapshot depends on when the
    stream read it.
    """
    data = snapshot_data(channel, version, document_json)
    if b"\n" in data or b"\r" in data:
        raise FrameError("snapshot data contains a line break")
    return b"event: snapshot\ndata: " + data + b"\n"


def id_suffix(event_id: str) -> bytes:
    return b"id: " + event_id.encode("ascii") + b"\n\n"


def retry_frame(milliseconds: int) -> bytes:
    return b"retry: %d\n\n" % milliseconds


def http_chunk(data: bytes) -> bytes:
    """Frame ``data`` as one HTTP/1.1 chunk (RFC 9112, section 7.1), as gunicorn frames it.

    ``data`` must not be empty, because an empty chunk ends the response.
    """
    if not data:
        raise ValueError("an empty HTTP chunk ends the response; pass at least one byte")
    return b"%X\r\n%b\r\n" % (len(data), data)


def comment_frame(text: str) -> bytes:
    """Encode an SSE comment, replacing line breaks in ``text`` by spaces."""
    clean = text.replace("\r", " ").replace("\n", " ")
    return b": " + clean.encode("utf-8", "replace") + b"\n\n"
