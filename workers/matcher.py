"""Subscription index of one worker: which streams want which channel.

Exact subscriptions are a dict lookup. Patterns are matched segment by
segment (``livegate.channels.Pattern``), and the list of patterns that
match a channel is cached, so the matcher runs once per channel and
pattern set rather than once per record.
"""

from __future__ import annotations

from livegate.channels import Pattern

# Channels whose pattern matches are remembered. Past this the cache is
# cleared and rebuilt on demand; it only costs a few matches per channel.
MAX_CACHED_CHANNELS = 100_000


class SubscriptionIndex:
    """Maps channels to the sets of streams subscribed to them.

    Only the gevent hub's greenlets touch it and none of its methods yield,
    so no lock is needed. Callers must not add or remove while iterating
    the sets that ``recipients`` returns.
    """

    def __init__(self) -> None:
        self._exact: dict[str, set] = {}
        self._patterns: dict[str, tuple[Pattern, set]] = {}
        self._matches: dict[str, tuple[str, ...]] = {}

    def add(self, subscription: Pattern, stream: object) -> None:
        if subscription.is_exact:
            self._exact.setdefault(subscription.text, set()).add(stream)
            return
        entry = self._patterns.get(subscription.text)
        if entry is None:
            self._patterns[subscription.text] = (subscription, {stream})
            self._matches.clear()
        else:
            entry[1].add(stream)

    def remove(self, subscription: Pattern, stream: object) -> None:
        if subscription.is_exact:
            streams = self._exact.get(subscription.text)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._exact[subscription.text]
            return
        entry = self._patterns.get(subscription.text)
        if entry is not None:
            entry[1].discard(stream)
            if not entry[1]:
                del self._patterns[subscription.text]
                self._matches.clear()

    def matching_patterns(self, channel: str) -> tuple[str, ...]:
        cached = self._matches.get(channel)
        if cached is None:
            cached = tuple(
                text for text, (pattern, _) in self._patterns.items() if pattern.matches(channel)
            )
            if len(self._matches) >= MAX_CACHED_CHANNELS:
                self._matches.clear()
            self._matches[channel] = cached
        return cached

    def recipients(self, channel: str) -> list[set]:
        """Return the sets of streams subscribed to ``channel``; a stream may be in several."""
        groups = []
        exact = self._exact.get(channel)
        if exact:
            groups.append(exact)
        for text in self.matching_patterns(channel):
            groups.append(self._patterns[text][1])
        return groups

    def exact_recipients(self, channel: str) -> set | None:
        """Return the streams subscribed to exactly ``channel`` by name, patterns left out."""
        return self._exact.get(channel)

    def counts(self) -> tuple[int, int]:
        """Return the number of (exact, pattern) subscriptions held."""
        exact = sum(len(streams) for streams in self._exact.values())
        patterns = sum(len(streams) for _, streams in self._patterns.values())
        return exact, patterns

    def channels_by_subscribers(self) -> list[tuple[str, int]]:
        return sorted(
            ((channel, len(streams)) for channel, streams in self._exact.items()),
            key=lambda item: -item[1],
        )
