"""Unit tests of workers.matcher.SubscriptionIndex."""

from __future__ import annotations

import pytest

from livegate.channels import parse_subscription
from workers import matcher
from workers.matcher import SubscriptionIndex


class Stream:
    """A stand-in for StreamClient: the index only needs hashable objects."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Stream({self.name!r})"


def recipient_streams(index: SubscriptionIndex, channel: str) -> set:
    return {stream for group in index.recipients(channel) for stream in group}


@pytest.fixture
def index() -> SubscriptionIndex:
    return SubscriptionIndex()


class TestExact:
    def test_add(self, index):
        stream = Stream("s1")

        index.add(parse_subscription("a/b"), stream)

        assert index.recipients("a/b") == [{stream}]
        assert index.recipients("a/c") == []
        assert index.counts() == (1, 0)

    def test_two_streams_one_group(self, index):
        first, second = Stream("s1"), Stream("s2")

        index.add(parse_subscription("a"), first)
        index.add(parse_subscription("a"), second)

        assert index.recipients("a") == [{first, second}]
        assert index.counts() == (2, 0)

    def test_add_twice_counts_once(self, index):
        stream = Stream("s1")

        index.add(parse_subscription("a"), stream)
        index.add(parse_subscription("a"), stream)

        assert index.counts() == (1, 0)

    def test_remove(self, index):
        first, second = Stream("s1"), Stream("s2")
        index.add(parse_subscription("a"), first)
        index.add(parse_subscription("a"), second)

        index.remove(parse_subscription("a"), first)

        assert index.recipients("a") == [{second}]
        assert index.counts() == (1, 0)

    def test_remove_last_drops_channel(self, index):
        stream = Stream("s1")
        index.add(parse_subscription("a"), stream)

        index.remove(parse_subscription("a"), stream)

        assert index.recipients("a") == []
        assert index.counts() == (0, 0)
        assert index.channels_by_subscribers() == []

    def test_remove_unknown_ignored(self, index):
        stream = Stream("s1")
        index.add(parse_subscription("a"), stream)

        index.remove(parse_subscription("b"), stream)
        index.remove(parse_subscription("a"), Stream("other"))
        index.remove(parse_subscription("a/*"), stream)

        assert index.recipients("a") == [{stream}]
        assert index.counts() == (1, 0)

    def test_channels_by_subscribers(self, index):
        for number in range(3):
            index.add(parse_subscription("busy"), Stream(f"b{number}"))
        index.add(parse_subscription("quiet"), Stream("q"))
        index.add(parse_subscription("busy/*"), Stream("p"))

        assert index.channels_by_subscribers() == [("busy", 3), ("quiet", 1)]


class TestPatterns:
    def test_add(self, index):
        stream = Stream("s1")

        index.add(parse_subscription("a/*"), stream)

        assert index.recipients("a/b") == [{stream}]
        assert index.recipients("a/b/c") == []
        assert index.recipients("a") == []
        assert index.counts() == (0, 1)

    def test_tail_pattern(self, index):
        stream = Stream("s1")

        index.add(parse_subscription("a/**"), stream)

        assert recipient_streams(index, "a/b") == {stream}
        assert recipient_streams(index, "a/b/c") == {stream}
        assert recipient_streams(index, "a") == set()

    def test_matching_patterns(self, index):
        index.add(parse_subscription("a/*"), Stream("s1"))
        index.add(parse_subscription("a/**"), Stream("s2"))
        index.add(parse_subscription("*/c"), Stream("s3"))

        assert set(index.matching_patterns("a/c")) == {"a/*", "a/**", "*/c"}
        assert index.matching_patterns("a/b/c") == ("a/**",)
        assert index.matching_patterns("x") == ()

    def test_remove(self, index):
        first, second = Stream("s1"), Stream("s2")
        index.add(parse_subscription("a/*"), first)
        index.add(parse_subscription("a/*"), second)

        index.remove(parse_subscription("a/*"), first)

        assert index.recipients("a/b") == [{second}]
        assert index.counts() == (0, 1)

    def test_remove_unknown_ignored(self, index):
        stream = Stream("s1")
        index.add(parse_subscription("a/*"), stream)

        index.remove(parse_subscription("b/*"), stream)
        index.remove(parse_subscription("a/*"), Stream("other"))

        assert index.recipients("a/b") == [{stream}]


class TestOverlap:
    def test_exact_and_pattern(self, index):
        exact_only, pattern_only, both = Stream("exact"), Stream("pattern"), Stream("both")
        index.add(parse_subscription("a/b"), exact_only)
        index.add(parse_subscription("a/b"), both)
        index.add(parse_subscription("a/*"), pattern_only)
        index.add(parse_subscription("a/*"), both)

        groups = index.recipients("a/b")

        assert groups[0] == {exact_only, both}
        assert groups[1] == {pattern_only, both}
        assert len(groups) == 2
        assert recipient_streams(index, "a/c") == {pattern_only, both}

    def test_two_patterns(self, index):
        stream = Stream("s1")
        index.add(parse_subscription("a/*"), stream)
        index.add(parse_subscription("*/b"), stream)

        groups = index.recipients("a/b")

        assert groups == [{stream}, {stream}]

    def test_counts(self, index):
        first, second = Stream("s1"), Stream("s2")
        index.add(parse_subscription("a"), first)
        index.add(parse_subscription("b"), first)
        index.add(parse_subscription("a"), second)
        index.add(parse_subscription("a/*"), first)
        index.add(parse_subscription("**"), second)

        assert index.counts() == (3, 2)


class TestCache:
    def test_new_pattern_seen_after_lookup(self, index):
        stream = Stream("s1")
        assert index.recipients("a/b") == []

        index.add(parse_subscription("a/*"), stream)

        assert index.recipients("a/b") == [{stream}]

    def test_second_pattern_seen_after_lookup(self, index):
        first, second = Stream("s1"), Stream("s2")
        index.add(parse_subscription("a/*"), first)
        assert index.matching_patterns("a/b") == ("a/*",)

        index.add(parse_subscription("*/b"), second)

        assert set(index.matching_patterns("a/b")) == {"a/*", "*/b"}
        assert recipient_streams(index, "a/b") == {first, second}

    def test_last_subscriber_removed(self, index):
        stream = Stream("s1")
        index.add(parse_subscription("a/*"), stream)
        assert index.recipients("a/b") == [{stream}]

        index.remove(parse_subscription("a/*"), stream)

        assert index.matching_patterns("a/b") == ()
        assert index.recipients("a/b") == []
        assert index.counts() == (0, 0)

    def test_pattern_added_again(self, index):
        first, second = Stream("s1"), Stream("s2")
        index.add(parse_subscription("a/*"), first)
        index.recipients("a/b")
        index.remove(parse_subscription("a/*"), first)
        index.recipients("a/b")

        index.add(parse_subscription("a/*"), second)

        assert index.recipients("a/b") == [{second}]

    def test_stream_joins_cached_pattern(self, index):
        first, second = Stream("s1"), Stream("s2")
        index.add(parse_subscription("a/*"), first)
        index.recipients("a/b")

        index.add(parse_subscription("a/*"), second)

        assert index.recipients("a/b") == [{first, second}]

    def test_exact_add_after_lookup(self, index):
        stream = Stream("s1")
        index.add(parse_subscription("x/*"), Stream("other"))
        index.recipients("a/b")

        index.add(parse_subscription("a/b"), stream)

        assert index.recipients("a/b") == [{stream}]

    def test_cache_limit(self, index, monkeypatch):
        monkeypatch.setattr(matcher, "MAX_CACHED_CHANNELS", 3)
        stream = Stream("s1")
        index.add(parse_subscription("a/*"), stream)

        for number in range(10):
            assert index.recipients(f"a/{number}") == [{stream}]
            assert index.recipients(f"b/{number}") == []

        assert index.recipients("a/0") == [{stream}]
        # The cache is private, but its bound limits the memory of a worker.
        assert len(index._matches) <= 3
