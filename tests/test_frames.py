"""Unit tests of livegate.frames, checked with an SSE parser that follows the HTML standard.

The parser below follows the event stream rules in the server-sent events section of the
HTML Living Standard: lines end at CR, LF or CRLF, a blank line dispatches the event, the
"data" lines are joined with LF, and an "id" containing NUL is ignored. It does not use
str.splitlines, which would also split at U+2028, U+0085 and other characters that are
plain text in an event stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from livegate.frames import (
    HEARTBEAT,
    FrameError,
    comment_frame,
    compact_json,
    delta_data,
    encode_frame,
    encode_snapshot_body,
    http_chunk,
    id_suffix,
    retry_frame,
    snapshot_data,
)
from livegate.ids import format_event_id

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@dataclass
class ParsedEvent:
    type: str
    data: str
    id: str


@dataclass
class ParsedStream:
    events: list[ParsedEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None


def split_lines(text: str) -> list[str]:
    """Split at CRLF, CR or LF. The text after the last line end is dropped, as unfinished."""
    lines = []
    start = 0
    index = 0
    while index < len(text):
        character = text[index]
        if character == "\r" or character == "\n":
            lines.append(text[start:index])
            if character == "\r" and text[index + 1:index + 2] == "\n":
                index += 1
            start = index + 1
        index += 1
    return lines


def parse_sse(stream: bytes) -> ParsedStream:
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    result = ParsedStream()
    event_type = ""
    data_buffer = ""
    last_event_id = ""
    for line in split_lines(text):
        if line == "":
            if data_buffer:
                result.events.append(
                    ParsedEvent(event_type or "message", data_buffer.removesuffix("\n"), last_event_id)
                )
            event_type = ""
            data_buffer = ""
            continue
        if line.startswith(":"):
            result.comments.append(line[1:].removeprefix(" "))
            continue
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "event":
            event_type = value
        elif name == "data":
            data_buffer += value + "\n"
        elif name == "id":
            if "\x00" not in value:
                last_event_id = value
        elif name == "retry":
            if value and all(c in "0123456789" for c in value):
                result.retry = int(value)
    return result


def assert_same_json(actual, expected) -> None:
    """Compare JSON values with their types, so that 1, 1.0 and true stay distinct."""
    assert type(actual) is type(expected), f"{actual!r} != {expected!r}"
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key in expected:
            assert_same_json(actual[key], expected[key])
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for actual_item, expected_item in zip(actual, expected):
            assert_same_json(actual_item, expected_item)
    else:
        assert actual == expected


# Strings mix arbitrary characters with CR, LF, the separators that JavaScript and
# str.splitlines treat as line ends, NUL and the byte order mark.
LINE_BREAKERS = ["\n", "\r", "\u2028", "\u2029", "\x00", "\x85", "\x0b", "\x0c", "\ufeff"]
json_text = st.text(
    alphabet=st.one_of(st.sampled_from(LINE_BREAKERS), st.characters(codec="utf-8")),
    max_size=20,
)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    json_text,
)
json_documents = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(json_text, children, max_size=5),
    ),
    max_leaves=30,
)
channels = st.text(alphabet="abz09_-.:/", min_size=1, max_size=30)
versions = st.integers(min_value=1, max_value=2**63 - 1)
event_ids = st.builds(
    format_event_id,
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=16),
    st.integers(min_value=0, max_value=2**63 - 1),
)


class TestParser:
    """Checks of the test's own SSE parser, so that a pass below means something."""

    def test_line_endings(self):
        parsed = parse_sse(b"data: a\rdata: b\r\ndata: c\n\n")

        assert parsed.events == [ParsedEvent("message", "a\nb\nc", "")]

    def test_unfinished_event_dropped(self):
        assert parse_sse(b"data: a\n").events == []

    def test_null_in_id_ignored(self):
        parsed = parse_sse(b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n")

        assert [event.id for event in parsed.events] == ["1", "1"]

    def test_u2028_not_a_line_end(self):
        parsed = parse_sse("data: a\u2028b\n\n".encode())

        assert parsed.events == [ParsedEvent("message", "a\u2028b", "")]


class TestEncodeFrame:
    def test_exact_bytes(self):
        frame = encode_frame(b"delta", b'{"x":1}', "abc-12")

        assert frame == b'event: delta\ndata: {"x":1}\nid: abc-12\n\n'

    def test_without_id(self):
        assert encode_frame(b"snapshot", b"{}") == b"event: snapshot\ndata: {}\n\n"

    def test_parses_to_one_event(self):
        parsed = parse_sse(encode_frame(b"delta", b'{"x":"a b"}', "abc-12"))

        assert parsed.events == [ParsedEvent("delta", '{"x":"a b"}', "abc-12")]

    def test_consecutive_frames(self):
        stream = encode_frame(b"snapshot", b"1", "e-1") + encode_frame(b"delta", b"2", "e-2")

        parsed = parse_sse(stream)

        assert parsed.events == [ParsedEvent("snapshot", "1", "e-1"), ParsedEvent("delta", "2", "e-2")]

    @pytest.mark.parametrize("data", [b"a\nb", b"a\rb", b"a\r\nb", b"\n", b"a\n"])
    def test_line_break_in_data_rejected(self, data):
        with pytest.raises(FrameError, match="line break"):
            encode_frame(b"delta", data, "abc-1")

    @pytest.mark.parametrize("event", [b"delta\n", b"del\rta", b"\r\n"])
    def test_line_break_in_event_rejected(self, event):
        with pytest.raises(FrameError, match="line break"):
            encode_frame(event, b"{}")

    @pytest.mark.parametrize("event_id", ["abc-1\n", "abc\r-1", "abc-1\x00"])
    def test_invalid_id_rejected(self, event_id):
        with pytest.raises(FrameError, match="invalid event id"):
            encode_frame(b"delta", b"{}", event_id)

    def test_error_is_value_error(self):
        with pytest.raises(ValueError):
            encode_frame(b"delta", b"\n")


class TestEventData:
    def test_snapshot_data(self):
        data = snapshot_data("rooms/lobby", 3, b'{"a":[1,2]}')

        assert json.loads(data) == {"channel": "rooms/lobby", "version": 3, "data": {"a": [1, 2]}}

    def test_delta_data(self):
        data = delta_data("rooms/lobby", 4, b'[{"op":"remove","path":"/a"}]')

        assert json.loads(data) == {
            "channel": "rooms/lobby",
            "version": 4,
            "patch": [{"op": "remove", "path": "/a"}],
        }

    def test_snapshot_body_with_id_suffix(self):
        frame = encode_snapshot_body("a/b", 2, b"null") + id_suffix("abc-9")

        parsed = parse_sse(frame)

        assert len(parsed.events) == 1
        assert parsed.events[0].type == "snapshot"
        assert parsed.events[0].id == "abc-9"
        assert json.loads(parsed.events[0].data) == {"channel": "a/b", "version": 2, "data": None}

    def test_snapshot_body_equals_encode_frame(self):
        body = encode_snapshot_body("a/b", 2, b"[1]") + id_suffix("abc-9")

        assert body == encode_frame(b"snapshot", snapshot_data("a/b", 2, b"[1]"), "abc-9")

    def test_snapshot_body_rejects_line_break(self):
        with pytest.raises(FrameError, match="line break"):
            encode_snapshot_body("a", 1, b'{"a":\n1}')

    @PROPERTY_SETTINGS
    @given(json_documents, channels, versions, event_ids)
    def test_snapshot_round_trip(self, document, channel, version, event_id):
        data = snapshot_data(channel, version, compact_json(orjson.dumps(document)))

        parsed = parse_sse(encode_frame(b"snapshot", data, event_id))

        assert len(parsed.events) == 1
        event = parsed.events[0]
        assert event.type == "snapshot"
        assert event.id == event_id
        assert_same_json(json.loads(event.data), {"channel": channel, "version": version, "data": document})

    @PROPERTY_SETTINGS
    @given(json_documents, channels, versions, event_ids)
    def test_delta_round_trip(self, patch, channel, version, event_id):
        data = delta_data(channel, version, compact_json(orjson.dumps(patch)))

        parsed = parse_sse(encode_frame(b"delta", data, event_id))

        assert len(parsed.events) == 1
        event = parsed.events[0]
        assert event.type == "delta"
        assert event.id == event_id
        assert_same_json(json.loads(event.data), {"channel": channel, "version": version, "patch": patch})

    @PROPERTY_SETTINGS
    @given(json_documents, versions, event_ids)
    def test_snapshot_body_round_trip(self, document, version, event_id):
        frame = encode_snapshot_body("a/b", version, compact_json(orjson.dumps(document)))

        parsed = parse_sse(frame + id_suffix(event_id))

        assert len(parsed.events) == 1
        assert parsed.events[0].id == event_id
        assert_same_json(json.loads(parsed.events[0].data)["data"], document)


class TestCompactJson:
    def test_removes_whitespace(self):
        assert compact_json(b'{ "a" :\n [1, 2],\r\n "b": "x" }') == b'{"a":[1,2],"b":"x"}'

    def test_keeps_escaped_line_breaks_escaped(self):
        assert compact_json(b'"a\\nb\\rc"') == b'"a\\nb\\rc"'

    def test_escapes_control_characters(self):
        compact = compact_json(b'"\\u0000\\u001f"')

        assert compact == b'"\\u0000\\u001f"'

    @PROPERTY_SETTINGS
    @given(json_documents)
    def test_no_line_break(self, document):
        compact = compact_json(orjson.dumps(document, option=orjson.OPT_INDENT_2))

        assert b"\n" not in compact
        assert b"\r" not in compact
        assert_same_json(json.loads(compact), document)

    @pytest.mark.parametrize(
        "text",
        [
            b"",
            b"{",
            b"[1,]",
            b"{'a': 1}",
            b"NaN",
            b"Infinity",
            b"1e400",
            b"undefined",
            b"[1] [2]",
            b"\xff",
            b'"\xed\xa0\x80"',
            b"[" * 2000 + b"]" * 2000,
        ],
        ids=["empty", "unclosed", "trailing-comma", "single-quotes", "nan", "infinity",
             "overflow", "undefined", "two-documents", "invalid-utf8", "encoded-surrogate",
             "deep-nesting"],
    )
    def test_invalid_json_rejected(self, text):
        with pytest.raises(FrameError, match="invalid JSON"):
            compact_json(text)

    @pytest.mark.parametrize("text", [b'"\\ud800"', b'"\\udfff"', b'"a\\ud800b"', b'["\\udc00"]'])
    def test_lone_surrogate_rejected(self, text):
        with pytest.raises(FrameError):
            compact_json(text)

    def test_surrogate_pair_accepted(self):
        assert json.loads(compact_json(b'"\\ud83d\\ude00"')) == "\U0001f600"

    @pytest.mark.parametrize("text", [b"18446744073709551616", b"-9223372036854775809"])
    def test_big_integer_not_altered(self, text):
        try:
            compact = compact_json(text)
        except FrameError:
            return
        assert compact == text

    def test_error_is_value_error(self):
        with pytest.raises(ValueError):
            compact_json(b"{")


class TestSmallFrames:
    def test_heartbeat_is_comment(self):
        parsed = parse_sse(HEARTBEAT)

        assert parsed.events == []
        assert parsed.comments == ["heartbeat"]

    def test_comment_frame(self):
        assert comment_frame("bye") == b": bye\n\n"

    @pytest.mark.parametrize(
        "text, expected",
        [("a\nb", "a b"), ("a\rb", "a b"), ("a\r\nb", "a  b"), ("\n\n", "  ")],
    )
    def test_comment_strips_line_breaks(self, text, expected):
        frame = comment_frame(text)

        assert frame == b": " + expected.encode() + b"\n\n"
        assert parse_sse(frame).comments == [expected]

    def test_comment_cannot_start_event(self):
        parsed = parse_sse(comment_frame("x\n\ndata: injected\n\n"))

        assert parsed.events == []
        assert len(parsed.comments) == 1

    def test_comment_lone_surrogate_replaced(self):
        assert comment_frame("a\ud800b") == b": a?b\n\n"

    @pytest.mark.parametrize("milliseconds", [0, 1, 2000, 600_000])
    def test_retry_frame(self, milliseconds):
        frame = retry_frame(milliseconds)

        assert frame == f"retry: {milliseconds}\n\n".encode()
        assert parse_sse(frame).retry == milliseconds
        assert parse_sse(frame).events == []

    def test_retry_frame_rounds_float_down(self):
        assert retry_frame(1500.9) == b"retry: 1500\n\n"


class TestHttpChunk:
    def test_exact_bytes(self):
        assert http_chunk(b"retry: 1\n\n") == b"A\r\nretry: 1\n\n\r\n"

    @pytest.mark.parametrize("size", [1, 15, 16, 255, 4096, 70_000])
    def test_size_is_hex_length(self, size):
        chunk = http_chunk(b"x" * size)

        head, _, rest = chunk.partition(b"\r\n")
        assert int(head, 16) == size
        assert rest == b"x" * size + b"\r\n"

    def test_empty_rejected(self):
        # An empty chunk would end the response early.
        with pytest.raises(ValueError):
            http_chunk(b"")
