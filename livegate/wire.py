"""The Redis wire format shared by publishers, the subscriber and workers.

Keys (``P`` is the key prefix, ``lg`` by default):

- ``P:epoch``            string, the lineage of the state; new when Redis lost it
- ``P:seq``              integer, the last global sequence number assigned
- ``P:channels``         hash, channel name -> current version
- ``P:state:{channel}``  hash with ``version``, ``seq``, ``ts`` and ``doc``
- ``P:log:{channel}``    sorted set of recent envelopes of one channel, score = seq
- ``P:log``              sorted set of recent envelopes of all channels, score = seq
- ``P:aliases``          hash, alias name -> JSON {"target", "seq", "ts"}
- ``P:bus``              the Pub/Sub channel every envelope is published on

An envelope is a msgpack map with string keys; ``data`` and ``patch`` hold
JSON text (UTF-8), so a gateway can place them in SSE frames without
decoding the document per client. docs/protocol.md describes the same
layout for producers in other languages.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

ENVELOPE_FORMAT = 1
KIND_SNAPSHOT = "snapshot"
KIND_DELTA = "delta"
# An alias set, changed or removed: ``channel`` is the alias, ``target``
# the channel it now points to ("" once removed), ``version`` 0.
KIND_ALIAS = "alias"
# A subscriber's own message, sent through Redis to prove that its
# subscription still delivers; never written to the ring.
KIND_PROBE = "probe"

# An envelope above this size is rejected by the subscriber; the publish
# API limits bodies further (LIVEGATE_MAX_PUBLISH_BYTES).
MAX_ENVELOPE_BYTES = 64 * 1024 * 1024


class InvalidEnvelopeError(ValueError):
    """A message on the bus that is not a valid livegate envelope."""


@dataclass(frozen=True)
class Keys:
    """Redis key names for one key prefix."""

    prefix: str

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:epoch"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    @property
    def channels(self) -> str:
        return f"{self.prefix}:channels"

    @property
    def global_log(self) -> str:
        return f"{self.prefix}:log"

    @property
    def aliases(self) -> str:
        return f"{self.prefix}:aliases"

    @property
    def bus(self) -> str:
        return f"{self.prefix}:bus"

    def state(self, channel: str) -> str:
        return f"{self.prefix}:state:{channel}"

    def channel_log(self, channel: str) -> str:
        return f"{self.prefix}:log:{channel}"


@dataclass(frozen=True, slots=True)
class Envelope:
    epoch: str
    seq: int
    channel: str
    version: int
    prev_seq: int
    publish_ts_ms: int
    kind: str
    # JSON text: the whole document for a snapshot, the patch for a delta;
    # for an alias, the UTF-8 name of its target.
    body: bytes


def _require_int(message: dict, field: str, minimum: int) -> int:
    value = message.get(field)
    if type(value) is not int or value < minimum:
        raise InvalidEnvelopeError(f"field {field!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _require_str(message: dict, field: str) -> str:
    value = message.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidEnvelopeError(f"field {field!r} must be a non-empty string, got {value!r}")
    return value


def _require_json_text(message: dict, field: str) -> bytes:
    value = message.get(field)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return value
    raise InvalidEnvelopeError(f"field {field!r} must be JSON text, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Probe:
    token: str


def decode_message(raw: bytes) -> Envelope | Probe:
    """Decode one bus message: an envelope, or a subscriber's delivery probe.

    Raises InvalidEnvelopeError for anything else.
    """
    message = _unpack_map(raw)
    if message.get("kind") == KIND_PROBE:
        return Probe(_require_str(message, "probe"))
    return _envelope_from_map(message)


def decode_envelope(raw: bytes) -> Envelope:
    """Decode and check one envelope, as stored in the logs.

    Raises InvalidEnvelopeError for anything that is not a complete envelope
    of a known format. The JSON text inside is not parsed here; the frame
    encoder validates it.
    """
    return _envelope_from_map(_unpack_map(raw))


def encode_probe(token: str) -> bytes:
    return msgpack.packb({"v": ENVELOPE_FORMAT, "kind": KIND_PROBE, "probe": token})


def _unpack_map(raw: bytes) -> dict:
    if not isinstance(raw, (bytes, bytearray)):
        raise InvalidEnvelopeError(f"message must be bytes, got {type(raw).__name__}")
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise InvalidEnvelopeError(
            f"message of {len(raw)} bytes exceeds the maximum of {MAX_ENVELOPE_BYTES}"
        )
    try:
        message = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise InvalidEnvelopeError(f"not a msgpack message: {error}") from None
    if not isinstance(message, dict):
        raise InvalidEnvelopeError(f"message must be a msgpack map, got {type(message).__name__}")
    return message


def _envelope_from_map(message: dict) -> Envelope:
    envelope_format = message.get("v")
    if type(envelope_format) is not int or envelope_format != ENVELOPE_FORMAT:
        raise InvalidEnvelopeError(
            f"unknown envelope format {envelope_format!r}, expected {ENVELOPE_FORMAT}"
        )
    kind = message.get("kind")
    minimum_version = 1
    if kind == KIND_SNAPSHOT:
        body = _require_json_text(message, "data")
    elif kind == KIND_DELTA:
        body = _require_json_text(message, "patch")
    elif kind == KIND_ALIAS:
        target = message.get("target")
        if not isinstance(target, str):
            raise InvalidEnvelopeError(f"field 'target' must be a string, got {target!r}")
        body = target.encode("utf-8", "surrogatepass")
        minimum_version = 0
    else:
        raise InvalidEnvelopeError(
            f"field 'kind' must be 'snapshot', 'delta' or 'alias', got {kind!r}"
        )
    return Envelope(
        epoch=_require_str(message, "epoch"),
        seq=_require_int(message, "seq", 1),
        channel=_require_str(message, "channel"),
        version=_require_int(message, "version", minimum_version),
        prev_seq=_require_int(message, "prev_seq", 0),
        publish_ts_ms=_require_int(message, "ts", 0),
        kind=kind,
        body=body,
    )


def encode_envelope(envelope: Envelope) -> bytes:
    """Encode an envelope the way the publish script does (used by tests and tools)."""
    field = "data" if envelope.kind == KIND_SNAPSHOT else "patch"
    body: bytes | str = envelope.body
    if envelope.kind == KIND_ALIAS:
        field, body = "target", envelope.body.decode("utf-8", "surrogatepass")
    return msgpack.packb(
        {
            "v": ENVELOPE_FORMAT,
            "epoch": envelope.epoch,
            "seq": envelope.seq,
            "channel": envelope.channel,
            "version": envelope.version,
            "prev_seq": envelope.prev_seq,
            "ts": envelope.publish_ts_ms,
            "kind": envelope.kind,
            field: body,
        }
    )
