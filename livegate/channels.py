"""Channel names and subscription patterns.

A channel name is 1 to 200 characters of ``A-Z a-z 0-9 _ - . :`` in
segments separated by ``/``, with no empty segment. A pattern has the same
shape, except that a whole segment may be ``*`` (exactly one segment) and
the final segment may be ``**`` (one or more segments). Matching compares
segments one by one and never builds a regular expression from input.
``ChannelPrefixes`` decides which channels and patterns fall under a set
of prefixes, for subscriber tokens and for namespaces.
"""

from __future__ import annotations

from typing import Iterable

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


class ChannelPrefixes:
    """A set of channel prefixes, or every channel (``**``)."""

    def __init__(self, prefixes: Iterable[str]):
        prefixes = tuple(prefixes)
        self.everything = ONE_OR_MORE_SEGMENTS in prefixes
        self.prefixes = prefixes
        self._segments = tuple(
            tuple(prefix.split(SEPARATOR))
            for prefix in prefixes if prefix != ONE_OR_MORE_SEGMENTS
        )

    def covers(self, channel: str) -> bool:
        """Return whether ``channel`` (a valid name) is a prefix or lies below one."""
        if self.everything:
            return True
        for prefix in self.prefixes:
            if channel == prefix or channel.startswith(prefix + SEPARATOR):
                return True
        return False

    def overlaps(self, subscription: Pattern) -> bool:
        """Return whether ``subscription`` may match at least one covered channel."""
        if self.everything:
            return True
        if subscription.is_exact:
            return self.covers(subscription.text)
        return any(_may_match_below(subscription.segments, prefix) for prefix in self._segments)

    def encloses(self, subscription: Pattern) -> bool:
        """Return whether every channel ``subscription`` can match is covered."""
        if self.everything:
            return True
        if subscription.is_exact:
            return self.covers(subscription.text)
        return any(_fixed_below(subscription.segments, prefix) for prefix in self._segments)


def _may_match_below(segments: tuple[str, ...], prefix: tuple[str, ...]) -> bool:
    for index, expected in enumerate(prefix):
        if index >= len(segments):
            # The pattern's channels have fewer segments than the prefix.
            return False
        segment = segments[index]
        if segment == ONE_OR_MORE_SEGMENTS:
            return True
        if segment != ONE_SEGMENT and segment != expected:
            return False
    return True


def _fixed_below(segments: tuple[str, ...], prefix: tuple[str, ...]) -> bool:
    # The pattern starts with the prefix's segments as literals, so every
    # channel it matches starts with them too.
    return len(segments) >= len(prefix) and segments[:len(prefix)] == prefix
