"""Unit tests of livegate.wire: the msgpack envelope and the Redis key names."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from livegate.wire import (
    ENVELOPE_FORMAT,
    KIND_DELTA,
    KIND_SNAPSHOT,
    MAX_ENVELOPE_BYTES,
    Envelope,
    InvalidEnvelopeError,
    Keys,
    decode_envelope,
    encode_envelope,
)

REQUIRED_FIELDS = ("v", "epoch", "seq", "channel", "version", "prev_seq", "ts", "kind")


def snapshot_message(**changes) -> dict:
    message = {
        "v": ENVELOPE_FORMAT,
        "epoch": "a1b2c3d4e5f6",
        "seq": 7,
        "channel": "rooms/lobby",
        "version": 3,
        "prev_seq": 5,
        "ts": 1_700_000_000_000,
        "kind": KIND_SNAPSHOT,
        "data": b'{"a":1}',
    }
    message.update(changes)
    return message


def delta_message(**changes) -> dict:
    message = snapshot_message(kind=KIND_DELTA)
    del message["data"]
    message["patch"] = b'[{"op":"add","path":"/b","value":2}]'
    message.update(changes)
    return message


def pack(message: object) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


envelopes = st.builds(
    Envelope,
    epoch=st.text(min_size=1, max_size=16),
    seq=st.integers(min_value=1, max_value=2**63 - 1),
    channel=st.text(min_size=1, max_size=40),
    version=st.integers(min_value=1, max_value=2**63 - 1),
    prev_seq=st.integers(min_value=0, max_value=2**63 - 1),
    publish_ts_ms=st.integers(min_value=0, max_value=2**63 - 1),
    kind=st.sampled_from([KIND_SNAPSHOT, KIND_DELTA]),
    body=st.binary(max_size=200),
)


class TestRoundTrip:
    @settings(max_examples=200, deadline=None)
    @given(envelopes)
    def test_encode_then_decode(self, envelope):
        assert decode_envelope(encode_envelope(envelope)) == envelope

    def test_snapshot_fields(self):
        envelope = decode_envelope(pack(snapshot_message()))

        assert envelope == Envelope(
            epoch="a1b2c3d4e5f6",
            seq=7,
            channel="rooms/lobby",
            version=3,
            prev_seq=5,
            publish_ts_ms=1_700_000_000_000,
            kind=KIND_SNAPSHOT,
            body=b'{"a":1}',
        )

    def test_delta_body_from_patch(self):
        envelope = decode_envelope(pack(delta_message()))

        assert envelope.kind == KIND_DELTA
        assert envelope.body == b'[{"op":"add","path":"/b","value":2}]'

    def test_json_text_as_str(self):
        envelope = decode_envelope(pack(snapshot_message(data='{"name":"\u00e9"}')))

        assert envelope.body == '{"name":"\u00e9"}'.encode("utf-8")

    def test_snapshot_encoded_with_data_key(self):
        envelope = decode_envelope(pack(snapshot_message()))

        message = msgpack.unpackb(encode_envelope(envelope), raw=False)

        assert message["data"] == b'{"a":1}'
        assert "patch" not in message
        assert message["v"] == ENVELOPE_FORMAT

    def test_delta_encoded_with_patch_key(self):
        envelope = decode_envelope(pack(delta_message()))

        message = msgpack.unpackb(encode_envelope(envelope), raw=False)

        assert message["patch"] == b'[{"op":"add","path":"/b","value":2}]'
        assert "data" not in message

    def test_extra_fields_ignored(self):
        envelope = decode_envelope(pack(snapshot_message(extra="x")))

        assert envelope.seq == 7

    def test_bytearray_accepted(self):
        assert decode_envelope(bytearray(pack(snapshot_message()))).seq == 7

    def test_minimum_values_accepted(self):
        envelope = decode_envelope(pack(snapshot_message(seq=1, version=1, prev_seq=0, ts=0)))

        assert envelope.seq == 1
        assert envelope.version == 1
        assert envelope.prev_seq == 0
        assert envelope.publish_ts_ms == 0


class TestInvalid:
    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"\xc1",
            b"\x92",
            b"\x92\x01",
            b"not msgpack at all",
            pack(snapshot_message()) + b"\x00",
            pack({1: 2}),
            b"\x81\xa2\xff\xfe\x01",
            b"\x91" * 100_000,
        ],
        ids=["empty", "reserved-byte", "truncated-array", "short-array", "text",
             "trailing-byte", "int-key", "invalid-utf8-key", "deep-nesting"],
    )
    def test_not_msgpack(self, raw):
        with pytest.raises(InvalidEnvelopeError):
            decode_envelope(raw)

    @pytest.mark.parametrize(
        "message",
        [[1, 2], "text", 1, None, b"bytes", True],
        ids=["array", "str", "int", "nil", "bin", "bool"],
    )
    def test_not_a_map(self, message):
        with pytest.raises(InvalidEnvelopeError, match="msgpack map"):
            decode_envelope(pack(message))

    @pytest.mark.parametrize("raw", ["text", None, 12, memoryview(b"\x80")])
    def test_not_bytes(self, raw):
        with pytest.raises(InvalidEnvelopeError, match="must be bytes"):
            decode_envelope(raw)

    @pytest.mark.parametrize("version", [0, 2, -1, "1", None, b"\x01"])
    def test_wrong_format_version(self, version):
        with pytest.raises(InvalidEnvelopeError, match="unknown envelope format"):
            decode_envelope(pack(snapshot_message(v=version)))

    @pytest.mark.parametrize("version", [True, 1.0], ids=["bool", "float"])
    def test_format_version_not_int(self, version):
        with pytest.raises(InvalidEnvelopeError, match="unknown envelope format"):
            decode_envelope(pack(snapshot_message(v=version)))

    @pytest.mark.parametrize("field", REQUIRED_FIELDS)
    def test_missing_snapshot_field(self, field):
        message = snapshot_message()
        del message[field]

        with pytest.raises(InvalidEnvelopeError):
            decode_envelope(pack(message))

    @pytest.mark.parametrize("field", REQUIRED_FIELDS)
    def test_missing_delta_field(self, field):
        message = delta_message()
        del message[field]

        with pytest.raises(InvalidEnvelopeError):
            decode_envelope(pack(message))

    def test_missing_data(self):
        message = snapshot_message()
        del message["data"]

        with pytest.raises(InvalidEnvelopeError, match="'data'"):
            decode_envelope(pack(message))

    def test_missing_patch(self):
        message = delta_message()
        del message["patch"]

        with pytest.raises(InvalidEnvelopeError, match="'patch'"):
            decode_envelope(pack(message))

    def test_snapshot_with_patch_only(self):
        message = snapshot_message(patch=b"[]")
        del message["data"]

        with pytest.raises(InvalidEnvelopeError, match="'data'"):
            decode_envelope(pack(message))

    @pytest.mark.parametrize("field", ["seq", "version", "prev_seq", "ts"])
    @pytest.mark.parametrize(
        "value",
        ["7", 7.0, None, True, False, b"7", [7], {"n": 7}],
        ids=["str", "float", "nil", "true", "false", "bin", "array", "map"],
    )
    def test_integer_field_wrong_type(self, field, value):
        with pytest.raises(InvalidEnvelopeError, match=repr(field)):
            decode_envelope(pack(snapshot_message(**{field: value})))

    @pytest.mark.parametrize(
        "field, value",
        [("seq", 0), ("seq", -1), ("version", 0), ("version", -3), ("prev_seq", -1), ("ts", -1)],
    )
    def test_integer_field_below_minimum(self, field, value):
        with pytest.raises(InvalidEnvelopeError, match=repr(field)):
            decode_envelope(pack(snapshot_message(**{field: value})))

    @pytest.mark.parametrize("field", ["epoch", "channel"])
    @pytest.mark.parametrize(
        "value", ["", 1, None, True, b"abc", ["abc"]],
        ids=["empty", "int", "nil", "bool", "bin", "array"],
    )
    def test_string_field_wrong_type(self, field, value):
        with pytest.raises(InvalidEnvelopeError, match=repr(field)):
            decode_envelope(pack(snapshot_message(**{field: value})))

    @pytest.mark.parametrize("value", [1, None, True, ["{}"], {"a": 1}])
    def test_body_wrong_type(self, value):
        with pytest.raises(InvalidEnvelopeError, match="'data'"):
            decode_envelope(pack(snapshot_message(data=value)))

    @pytest.mark.parametrize("kind", ["SNAPSHOT", "patch", "", None, 1, b"delta"])
    def test_unknown_kind(self, kind):
        with pytest.raises(InvalidEnvelopeError, match="'kind'"):
            decode_envelope(pack(snapshot_message(kind=kind)))

    def test_oversized(self):
        raw = bytes(MAX_ENVELOPE_BYTES + 1)

        with pytest.raises(InvalidEnvelopeError, match="exceeds the maximum"):
            decode_envelope(raw)

    def test_oversized_valid_envelope(self, monkeypatch):
        raw = pack(snapshot_message())
        monkeypatch.setattr("livegate.wire.MAX_ENVELOPE_BYTES", len(raw) - 1)

        with pytest.raises(InvalidEnvelopeError, match="exceeds the maximum"):
            decode_envelope(raw)

    def test_size_limit_inclusive(self, monkeypatch):
        raw = pack(snapshot_message())
        monkeypatch.setattr("livegate.wire.MAX_ENVELOPE_BYTES", len(raw))

        assert decode_envelope(raw).seq == 7

    def test_error_is_value_error(self):
        with pytest.raises(ValueError):
            decode_envelope(b"\xc1")

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=64))
    def test_random_bytes(self, raw):
        try:
            envelope = decode_envelope(raw)
        except InvalidEnvelopeError:
            return
        assert isinstance(envelope, Envelope)


class TestKeys:
    def test_fixed_keys(self):
        keys = Keys("lg")

        assert keys.epoch == "lg:epoch"
        assert keys.seq == "lg:seq"
        assert keys.channels == "lg:channels"
        assert keys.global_log == "lg:log"
        assert keys.bus == "lg:bus"

    def test_channel_keys(self):
        keys = Keys("lg")

        assert keys.state("rooms/lobby") == "lg:state:rooms/lobby"
        assert keys.channel_log("rooms/lobby") == "lg:log:rooms/lobby"

    def test_other_prefix(self):
        keys = Keys("app.v2")

        assert keys.epoch == "app.v2:epoch"
        assert keys.state("a") == "app.v2:state:a"

    def test_channel_log_differs_from_global_log(self):
        keys = Keys("lg")

        assert keys.channel_log("x") != keys.global_log
