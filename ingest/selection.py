"""Choice of the provider whose data a match publishes: primary, fallback, and back.

A provider is healthy for a match when its last document for the match
is at most ``stale_after`` seconds old and the source that fetched it is
not failing. The active provider stays until it turns unhealthy; then the
most preferred healthy provider takes over at once. A more preferred
provider takes over again only after it has been healthy without a break
for ``switch_back_after`` seconds, so a primary that fails every other
poll does not make the match flap. A provider that has never delivered
for the match before (the primary's first poll after a start, say) has
not failed, so its healthy period counts from time 0 and it takes over
at once.

This module is pure logic over plain values, so tests drive the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeedEntry:
    """The last document one provider delivered for a match."""

    provider: str
    source: str
    fetched_at: float
    document: dict


@dataclass
class SelectionState:
    """The selection's memory of one match between polls."""

    active: str | None = None
    # Start of each provider's current unbroken healthy period.
    healthy_since: dict[str, float] = field(default_factory=dict)
    # Providers that delivered data for this match at least once.
    seen: set[str] = field(default_factory=set)

    def to_json(self) -> dict:
        return {"active": self.active, "healthy_since": self.healthy_since, "seen": sorted(self.seen)}

    @classmethod
    def from_json(cls, data: dict | None) -> "SelectionState":
        if not data:
            return cls()
        return cls(
            active=data.get("active"),
            healthy_since={str(k): float(v) for k, v in (data.get("healthy_since") or {}).items()},
            seen=set(data.get("seen") or []),
        )


@dataclass(frozen=True)
class Decision:
    provider: str | None
    state: SelectionState
    switched: bool
    reason: str


def is_healthy(entry: FeedEntry | None, source_ok: dict[str, bool], now: float, stale_after: float) -> bool:
    if entry is None:
        return False
    if now - entry.fetched_at > stale_after:
        return False
    return source_ok.get(entry.source, True)


def choose_provider(
    providers: tuple[str, ...],
    feeds: dict[str, FeedEntry],
    source_ok: dict[str, bool],
    state: SelectionState,
    now: float,
    stale_after: float,
    switch_back_after: float,
) -> Decision:
    """Decide the provider of one match at time ``now`` (Unix seconds).

    ``providers`` is the match's preference order, ``feeds`` the last
    entry per provider and ``source_ok`` the health of each source (a
    source missing from it counts as healthy).
    """
    healthy = {p: is_healthy(feeds.get(p), source_ok, now, stale_after) for p in providers}
    healthy_since: dict[str, float] = {}
    seen = set(state.seen)
    for provider in providers:
        if not healthy[provider]:
            continue
        if provider in state.healthy_since:
            healthy_since[provider] = state.healthy_since[provider]
        elif provider in seen:
            healthy_since[provider] = now  # healthy again after a failure: the clock starts now
        else:
            healthy_since[provider] = 0.0  # never failed
    seen.update(p for p in providers if p in feeds)

    active = state.active if state.active in providers else None
    first_healthy = next((p for p in providers if healthy[p]), None)
    chosen, reason = active, "unchanged"
    if active is None:
        if first_healthy is not None:
            chosen, reason = first_healthy, "first healthy provider"
        else:
            chosen = next((p for p in providers if p in feeds), None)
            reason = "no healthy provider; using the most preferred one with data"
    elif not healthy[active]:
        if first_healthy is not None:
            entry = feeds.get(active)
            if entry is None:
                cause = "has no data"
            elif now - entry.fetched_at > stale_after:
                cause = f"data is {now - entry.fetched_at:.1f} s old"
            else:
                cause = f"source {entry.source} is failing"
            chosen, reason = first_healthy, f"{active} unhealthy ({cause})"
    else:
        for provider in providers[: providers.index(active)]:
            if provider in healthy_since and now - healthy_since[provider] >= switch_back_after:
                chosen = provider
                if healthy_since[provider] == 0.0:
                    reason = f"{provider} is preferred and has delivered data without failing"
                else:
                    reason = (f"{provider} healthy again for {now - healthy_since[provider]:.1f} s "
                              f"(at least {switch_back_after:g} s)")
                break

    new_state = SelectionState(active=chosen, healthy_since=healthy_since, seen=seen)
    return Decision(chosen, new_state, switched=active is not None and chosen != active, reason=reason)
