"""Unit tests of livegate.channels: channel names, subscription patterns and matching."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from livegate.channels import (
    MAX_NAME_LENGTH,
    InvalidChannelError,
    Pattern,
    parse_subscription,
    validate_channel,
)

ALLOWED_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:"
# Characters that must never pass: CR, LF and other characters str.splitlines splits at,
# NUL, space, tab, a non-ASCII letter, a right-to-left override and a lone surrogate.
HOSTILE_CHARACTERS = "\n\r\x00 \t\x1c\x85\u2028é\u202e\ud800"

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


# Reference implementation, written from the module docstring only.

def reference_is_valid(text: str, allow_wildcards: bool) -> bool:
    if not 1 <= len(text) <= MAX_NAME_LENGTH:
        return False
    segments = text.split("/")
    for index, segment in enumerate(segments):
        if allow_wildcards and segment == "*":
            continue
        if allow_wildcards and segment == "**" and index == len(segments) - 1:
            continue
        if segment == "" or any(c not in ALLOWED_CHARACTERS for c in segment):
            return False
    return True


def reference_matches(pattern: list[str], channel: list[str]) -> bool:
    """Match segment lists recursively: '*' takes one segment, a final '**' one or more."""
    if not pattern:
        return not channel
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return len(channel) >= 1
    if not channel:
        return False
    if head != "*" and head != channel[0]:
        return False
    return reference_matches(rest, channel[1:])


def assert_readable_message(error: InvalidChannelError) -> None:
    message = str(error)
    assert "\n" not in message
    assert "\r" not in message
    assert len(message.splitlines()) == 1


arbitrary_text = st.text(alphabet=ALLOWED_CHARACTERS + "/*" + HOSTILE_CHARACTERS, max_size=12)
# A small alphabet, so that generated patterns and channels share segments often.
small_segment = st.sampled_from(["a", "b", "ab", "x.y"])
pattern_segment = st.sampled_from(["a", "b", "ab", "x.y", "*", "*", "**"])
channel_segments = st.lists(small_segment, min_size=1, max_size=5)
pattern_segments = st.lists(pattern_segment, min_size=1, max_size=5)


class TestChannelNames:
    @pytest.mark.parametrize(
        "name",
        [
            "a",
            "room:1",
            "rooms/lobby",
            "A-Z/a_z/0.9/x:y",
            "a" * MAX_NAME_LENGTH,
            "/".join(["a"] * 100),
        ],
    )
    def test_valid_name_accepted(self, name):
        assert validate_channel(name) == name

    @pytest.mark.parametrize(
        "name",
        [
            "",
            "a//b",
            "/a",
            "a/",
            "/",
            "a" * (MAX_NAME_LENGTH + 1),
            "a\x01b",
            "a\x7fb",
            "a\nb",
            "a\r\nb",
            "a\x00b",
            "caf\u00e9",
            "\u0661\u0662",
            "a b",
            " a",
            "a\t",
            "foo*",
            "*",
            "**",
            "a/*",
            "a/**",
            "*/a",
            "a/b*c",
            "a?b",
            "a#b",
            "a\u2028b",
        ],
    )
    def test_invalid_name_rejected(self, name):
        with pytest.raises(InvalidChannelError):
            validate_channel(name)

    @pytest.mark.parametrize("value", [None, 1, b"room", ["room"]])
    def test_non_string_rejected(self, value):
        with pytest.raises(InvalidChannelError, match="must be a string"):
            validate_channel(value)

    def test_wildcard_in_name_explained(self):
        with pytest.raises(InvalidChannelError, match="only allowed in subscriptions"):
            validate_channel("a/*")

    def test_error_is_value_error(self):
        with pytest.raises(ValueError):
            validate_channel("")


class TestPatterns:
    @pytest.mark.parametrize(
        "text, segments",
        [
            ("*", ("*",)),
            ("**", ("**",)),
            ("a/*", ("a", "*")),
            ("*/x", ("*", "x")),
            ("a/*/c", ("a", "*", "c")),
            ("a/**", ("a", "**")),
            ("*/**", ("*", "**")),
        ],
    )
    def test_wildcard_pattern_parsed(self, text, segments):
        pattern = parse_subscription(text)

        assert pattern.text == text
        assert pattern.segments == segments
        assert pattern.is_exact is False

    def test_exact_pattern_parsed(self):
        pattern = parse_subscription("rooms/lobby")

        assert pattern.text == "rooms/lobby"
        assert pattern.segments == ("rooms", "lobby")
        assert pattern.is_exact is True

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "a*",
            "*a",
            "foo*",
            "a/b*",
            "***",
            "**/a",
            "a/**/b",
            "**/**",
            "a//*",
            "/*",
            "*/",
            "a/*\n",
            "*\x00",
            "a/ */b",
            "*" * (MAX_NAME_LENGTH + 1),
        ],
    )
    def test_invalid_pattern_rejected(self, text):
        with pytest.raises(InvalidChannelError):
            parse_subscription(text)

    def test_double_star_not_last_explained(self):
        with pytest.raises(InvalidChannelError, match="only allowed as the last segment"):
            parse_subscription("a/**/b")

    def test_partial_wildcard_explained(self):
        with pytest.raises(InvalidChannelError, match="must be a whole segment"):
            parse_subscription("a*")

    @pytest.mark.parametrize("value", [None, 7, b"a/*"])
    def test_non_string_rejected(self, value):
        with pytest.raises(InvalidChannelError, match="must be a string"):
            parse_subscription(value)

    def test_equality_by_text(self):
        first = parse_subscription("a/*")
        second = parse_subscription("a/*")

        assert first == second
        assert hash(first) == hash(second)
        assert first != parse_subscription("a/**")
        assert first != "a/*"

    def test_repr_shows_text(self):
        assert repr(parse_subscription("a/*")) == "Pattern('a/*')"

    def test_repeated_text_shares_pattern(self):
        assert parse_subscription("news/shared/*") is parse_subscription("news/shared/*")

    def test_invalid_raises_every_time(self):
        for _ in range(2):
            with pytest.raises(InvalidChannelError):
                parse_subscription("a/**/b")


class TestMatching:
    @pytest.mark.parametrize(
        "pattern, channel, expected",
        [
            ("a/*", "a/b", True),
            ("a/*", "a/b/c", False),
            ("a/*", "ab/c", False),
            ("a/*", "a", False),
            ("a/*", "b/a", False),
            ("a/**", "a/b", True),
            ("a/**", "a/b/c", True),
            ("a/**", "a/b/c/d/e", True),
            ("a/**", "a", False),
            ("a/**", "ab/c", False),
            ("a/**", "b/a/c", False),
            ("*/x", "a/x", True),
            ("*/x", "b/x", True),
            ("*/x", "x", False),
            ("*/x", "a/y", False),
            ("*/x", "a/b/x", False),
            ("*", "a", True),
            ("*", "a/b", False),
            ("**", "a", True),
            ("**", "a/b/c", True),
            ("a/*/c", "a/b/c", True),
            ("a/*/c", "a/b/d", False),
            ("*/**", "a", False),
            ("*/**", "a/b", True),
            ("a/b", "a/b", True),
            ("a/b", "a/b/c", False),
            ("a/b", "a", False),
            ("a/b", "a/bc", False),
            ("room:1", "room:1", True),
            ("room:1", "room:2", False),
        ],
    )
    def test_match(self, pattern, channel, expected):
        assert parse_subscription(pattern).matches(channel) is expected


class TestErrorMessages:
    @pytest.mark.parametrize(
        "value",
        ["a\nb", "a\r\nb", "a\x00b", "a\u2028b", "a\x85b", "caf\u00e9", "a b", "a//b", "foo*"],
    )
    def test_name_error_shows_repr(self, value):
        with pytest.raises(InvalidChannelError) as caught:
            validate_channel(value)

        assert repr(value) in str(caught.value)
        assert caught.value.value == value
        assert caught.value.reason
        assert_readable_message(caught.value)

    @pytest.mark.parametrize("value", ["a*\n", "a/**/\r", "\x00/**/x", "a*"])
    def test_pattern_error_shows_repr(self, value):
        with pytest.raises(InvalidChannelError) as caught:
            parse_subscription(value)

        assert repr(value) in str(caught.value)
        assert_readable_message(caught.value)

    def test_empty_error_message(self):
        with pytest.raises(InvalidChannelError) as caught:
            validate_channel("")

        assert str(caught.value) == "invalid channel '': must not be empty"

    def test_bad_character_named(self):
        with pytest.raises(InvalidChannelError) as caught:
            validate_channel("a\nb")

        assert "'\\n'" in caught.value.reason

    def test_long_name_error_states_length(self):
        value = "a" * 150 + "\n" + "b" * 150

        with pytest.raises(InvalidChannelError) as caught:
            validate_channel(value)

        message = str(caught.value)
        assert "301 characters" in message
        assert f"maximum is {MAX_NAME_LENGTH}" in message
        assert_readable_message(caught.value)

    def test_long_name_error_bounded(self):
        with pytest.raises(InvalidChannelError) as caught:
            validate_channel("a" * 100_000)

        assert len(str(caught.value)) < 2 * MAX_NAME_LENGTH + 200


class TestAgainstReference:
    @PROPERTY_SETTINGS
    @given(arbitrary_text)
    def test_name_validity(self, text):
        expected = reference_is_valid(text, allow_wildcards=False)

        try:
            validate_channel(text)
        except InvalidChannelError as error:
            assert not expected
            assert_readable_message(error)
        else:
            assert expected

    @PROPERTY_SETTINGS
    @given(arbitrary_text)
    def test_pattern_validity(self, text):
        expected = reference_is_valid(text, allow_wildcards=True)

        try:
            pattern = parse_subscription(text)
        except InvalidChannelError as error:
            assert not expected
            assert_readable_message(error)
        else:
            assert expected
            assert pattern.segments == tuple(text.split("/"))
            assert pattern.is_exact == ("*" not in text)

    @PROPERTY_SETTINGS
    @given(pattern_segments, channel_segments)
    def test_matching(self, pattern_parts, channel_parts):
        pattern_text = "/".join(pattern_parts)
        channel = "/".join(channel_parts)
        valid = reference_is_valid(pattern_text, allow_wildcards=True)

        if not valid:
            with pytest.raises(InvalidChannelError):
                parse_subscription(pattern_text)
            return
        pattern = parse_subscription(pattern_text)
        assert pattern.matches(channel) == reference_matches(pattern_parts, channel_parts)

    @PROPERTY_SETTINGS
    @given(channel_segments)
    def test_exact_matches_itself_only(self, channel_parts):
        channel = "/".join(channel_parts)
        pattern = parse_subscription(channel)

        assert isinstance(pattern, Pattern)
        assert pattern.is_exact
        assert pattern.matches(channel)
        assert not pattern.matches(channel + "/a")
        assert not pattern.matches("a/" + channel)
