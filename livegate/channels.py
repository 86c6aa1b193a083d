"""Channel names and subscription patterns.

A channel name is 1 to 200 characters of ``A-Z a-z 0-9 _ - . :`` in
segments separated by ``/``, with no empty segment. A pattern has the same
shape, except that a whole segment may be ``*`` (exactly one segment) and
the final segment may be ``**`` (one or more segments). Matching compares
segments one by one and never builds a regular expression from input.
"""

from __future__ import annotations

import functools

MAX_NAME_LENGTH = 200
SEPARATOR = "/"
ONE_SEGMENT = "*"
ONE_OR_MORE_SEGMENTS = "**"

_SEGMENT_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:"
)


class InvalidChannelError(ValueError):
    """A channel name or pattern that breaks the naming rules.

    ``value`` is the rejected input and ``reason`` says which rule it broke.
    The message shows the value through ``repr`` so that control characters
    stay visible and can never end a log line or an SSE field.
    """

    def __init__(self, value: str, reason: str):
        self.value = value
        self.reason = reason
        super().__init__(f"invalid channel {value!r}: {reason}")


def _check_length(value: str) -> None:
    if not value:
        raise InvalidChannelError(value, "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidChannelError(
            value[:MAX_NAME_LENGTH] + "...",
            f"is {len(value)} characters long, the maximum is {MAX_NAME_LENGTH}",
        )


def _check_segment(value: str, segment: str) -> None:
    if not segment:
        raise InvalidChannelError(value, "has an empty segment")
    for character in segment:
        if character not in _SEGMENT_CHARACTERS:
            raise InvalidChannelError(
                value,
                f"contains {character!r}; allowed are A-Z a-z 0-9 _ - . : "
                "and / between segments",
            )


def validate_channel(value: str) -> str:
    """Return ``value`` if it is a valid channel name, else raise InvalidChannelError."""
    if not isinstance(value, str):
        raise InvalidChannelError(repr(value), "must be a string")
    _check_length(value)
    for segment in value.split(SEPARATOR):
        if segment in (ONE_SEGMENT, ONE_OR_MORE_SEGMENTS):
            raise InvalidChannelError(
                value, "wildcards are only allowed in subscriptions, not in channel names"
            )
        _check_segment(value, segment)
    return value


class Pattern:
    """A parsed subscription: an exact channel name or a wildcard pattern."""

    __slots__ = ("text", "segments", "is_exact", "_tail")

    def __init__(self, text: str, segments: tuple[str, ...]):
        self.text = text
        self.segments = segments
        self.is_exact = ONE_SEGMENT not in segments and ONE_OR_MORE_SEGMENTS not in segments
        self._tail = segments[-1] == ONE_OR_MORE_SEGMENTS

    def matches(self, channel: str) -> bool:
        """Return whether the valid channel name ``channel`` matches this subscription."""
        if self.is_exact:
            return channel == self.text
        parts = channel.split(SEPARATOR)
        fixed = self.segments[:-1] if self._tail else self.segments
        if self._tail:
            # "**" takes one or more segments, so the channel needs at least
            # one segment beyond the fixed part.
            if len(parts) <= len(fixed):
                return False
        elif len(parts) != len(fixed):
            return False
        for expected, actual in zip(fixed, parts):
            if expected != ONE_SEGMENT and expected != actual:
                return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


# Parsed subscriptions kept for reuse. Thousands of streams subscribe to the
# same few hundred channels, and sharing one immutable Pattern (its text and
# segments included) saves each stream those objects. Invalid values raise,
# so they are never kept.
PATTERN_CACHE_SIZE = 4096


def parse_subscription(value: str) -> Pattern:
    """Parse a channel name or pattern, raising InvalidChannelError when invalid."""
    if not isinstance(value, str):
        raise InvalidChannelError(repr(value), "must be a string")
    return _parse_pattern(value)


@functools.lru_cache(maxsize=PATTERN_CACHE_SIZE)
def _parse_pattern(value: str) -> Pattern:
    _check_length(value)
    segments = tuple(value.split(SEPARATOR))
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment == ONE_SEGMENT:
            continue
        if segment == ONE_OR_MORE_SEGMENTS:
            if index != last:
                raise InvalidChannelError(value, "'**' is only allowed as the last segment")
            continue
        if "*" in segment:
            raise InvalidChannelError(
                value, "a wildcard must be a whole segment ('*' or a final '**')"
            )
        _check_segment(value, segment)
    return Pattern(value, segments)
