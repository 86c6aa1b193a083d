"""Namespaces: settings that apply to every channel under a prefix.

A namespace is named by a channel prefix and covers the channel equal to
it and every channel below it (``sport`` covers ``sport`` and
``sport/live/1`` but not ``sports``). Where namespaces nest, the longest
prefix decides. A channel under no namespace, and every setting a
namespace leaves out, takes the default built from the global settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from livegate.channels import SEPARATOR, ChannelPrefixes, Pattern

MODE_DELTA = "delta"
MODE_SNAPSHOT = "snapshot"
MODES = (MODE_DELTA, MODE_SNAPSHOT)


@dataclass(frozen=True)
class Namespace:
    """Settings of the channels under ``prefix``; the default namespace has prefix ""."""

    prefix: str
    # Deltas kept in each channel's log for resuming clients.
    log_length: int
    # Idle seconds after which a stream of these channels gets a heartbeat.
    heartbeat_interval: float
    # Whether subscribers need a token whose channels claim grants the channel.
    auth: bool
    # MODE_DELTA: changes travel as patches. MODE_SNAPSHOT: every change
    # travels as the whole document.
    mode: str
    # Maximum streams on one gateway worker whose subscriptions reach into
    # this namespace; 0 for no limit.
    max_subscribers: int

    @property
    def is_default(self) -> bool:
        return self.prefix == ""

    def describe(self) -> str:
        return f"namespace {self.prefix!r}" if self.prefix else "the default namespace"


def default_namespace(settings) -> Namespace:
    """Build the namespace of channels under no configured prefix from the global settings."""
    return Namespace(
        prefix="",
        log_length=settings.channel_log_length,
        heartbeat_interval=settings.heartbeat_interval,
        auth=False,
        mode=MODE_DELTA,
        max_subscribers=0,
    )


class NamespaceTable:
    """The configured namespaces and the default; lookups are cached per channel."""

    def __init__(self, default: Namespace, namespaces: tuple[Namespace, ...] = ()):
        self.default = default
        # Longest prefix first, so the first namespace that covers a channel is its own.
        self.namespaces = tuple(sorted(namespaces, key=lambda n: -len(n.prefix.split(SEPARATOR))))
        self._prefixes = [(n, ChannelPrefixes((n.prefix,))) for n in self.namespaces]
        self._cache: dict[str, Namespace] = {}

    def lookup(self, channel: str) -> Namespace:
        """Return the namespace of the valid channel name ``channel``."""
        namespace = self._cache.get(channel)
        if namespace is None:
            namespace = next(
                (n for n, prefix in self._prefixes if prefix.covers(channel)), self.default
            )
            if len(self._cache) >= 100_000:
                self._cache.clear()
            self._cache[channel] = namespace
        return namespace

    def reached_by(self, subscription: Pattern) -> list[Namespace]:
        """Return every namespace whose channels ``subscription`` may match.

        An exact subscription reaches its one namespace. A pattern reaches
        each namespace it may match a channel of, and the default unless
        its fixed leading segments lie inside one namespace.
        """
        if subscription.is_exact:
            return [self.lookup(subscription.text)]
        reached = [n for n, prefix in self._prefixes if prefix.overlaps(subscription)]
        if not any(prefix.encloses(subscription) for _, prefix in self._prefixes):
            reached.append(self.default)
        return reached

    def heartbeat_interval(self, subscriptions: tuple[Pattern, ...]) -> float:
        """Return the shortest heartbeat interval of the namespaces the subscriptions reach."""
        return min(
            n.heartbeat_interval for s in subscriptions for n in self.reached_by(s)
        )

    def protected_prefixes(self) -> tuple[str, ...]:
        return tuple(n.prefix for n in self.namespaces if n.auth)

    def limited(self, subscriptions: tuple[Pattern, ...]) -> tuple[Namespace, ...]:
        """Return the namespaces with a subscriber limit that the subscriptions reach."""
        found: dict[str, Namespace] = {}
        for subscription in subscriptions:
            for namespace in self.reached_by(subscription):
                if namespace.max_subscribers:
                    found[namespace.prefix] = namespace
        return tuple(found.values())

    def smallest_interval(self) -> float:
        return min([self.default.heartbeat_interval]
                   + [n.heartbeat_interval for n in self.namespaces])


def namespace_with(default: Namespace, prefix: str, **values) -> Namespace:
    """Return a namespace for ``prefix`` with ``values`` over the default's settings."""
    return replace(default, prefix=prefix, **values)

