"""Primary and fallback provider per match, driven by a hand-held clock."""

from __future__ import annotations

from ingest.selection import FeedEntry, SelectionState, choose_provider

PROVIDERS = ("primary", "fallback")
STALE = 10.0
SWITCH_BACK = 30.0


def feed(provider: str, at: float, source: str | None = None) -> FeedEntry:
    return FeedEntry(provider, source or f"{provider}-source", at, {"provider": provider})


def decide(feeds: dict, state: SelectionState, now: float, source_ok: dict | None = None):
    return choose_provider(PROVIDERS, feeds, source_ok or {}, state, now, STALE, SWITCH_BACK)


def test_primary_chosen_when_healthy():
    decision = decide({"primary": feed("primary", 100), "fallback": feed("fallback", 100)}, SelectionState(), 101)
    assert decision.provider == "primary"
    assert not decision.switched


def test_fallback_first_then_primary_that_never_failed():
    state = decide({"fallback": feed("fallback", 100)}, SelectionState(), 100).state
    assert state.active == "fallback"
    decision = decide({"primary": feed("primary", 101), "fallback": feed("fallback", 101)}, state, 101)
    assert decision.provider == "primary"
    assert decision.switched
    assert "without failing" in decision.reason


def test_switch_to_fallback_when_primary_stale():
    state = decide({"primary": feed("primary", 100), "fallback": feed("fallback", 100)}, SelectionState(), 100).state
    decision = decide({"primary": feed("primary", 100), "fallback": feed("fallback", 111)}, state, 111)
    assert decision.provider == "fallback"
    assert decision.switched
    assert "old" in decision.reason


def test_switch_to_fallback_when_primary_source_failing():
    state = decide({"primary": feed("primary", 100), "fallback": feed("fallback", 100)}, SelectionState(), 100).state
    decision = decide({"primary": feed("primary", 100), "fallback": feed("fallback", 102)}, state, 102,
                      {"primary-source": False})
    assert decision.provider == "fallback"
    assert "failing" in decision.reason


def test_switch_back_only_after_healthy_period():
    feeds = {"primary": feed("primary", 100), "fallback": feed("fallback", 100)}
    state = decide(feeds, SelectionState(), 100).state
    state = decide({"primary": feed("primary", 100), "fallback": feed("fallback", 120)}, state, 120).state
    assert state.active == "fallback"
    # The primary delivers again from t=130 on.
    history = []
    for now in range(130, 175):
        decision = decide({"primary": feed("primary", now), "fallback": feed("fallback", now)}, state, now)
        state = decision.state
        history.append((now, decision.provider))
    switch_back = next(now for now, provider in history if provider == "primary")
    assert switch_back == 130 + SWITCH_BACK


def test_flapping_primary_does_not_switch_back():
    state = decide({"primary": feed("primary", 0), "fallback": feed("fallback", 0)}, SelectionState(), 0).state
    state = decide({"primary": feed("primary", 0), "fallback": feed("fallback", 20)}, state, 20).state
    assert state.active == "fallback"
    # Healthy for 20 s, failing for 5 s, healthy again: never 30 s in a row.
    for cycle in range(4):
        start = 21 + cycle * 25
        for now in range(start, start + 20):
            state = decide({"primary": feed("primary", now), "fallback": feed("fallback", now)}, state, now).state
            assert state.active == "fallback"
        for now in range(start + 20, start + 25):
            state = decide({"primary": feed("primary", now), "fallback": feed("fallback", now)}, state, now,
                           {"primary-source": False}).state
            assert state.active == "fallback"


def test_no_healthy_provider_keeps_active():
    state = decide({"primary": feed("primary", 0), "fallback": feed("fallback", 0)}, SelectionState(), 0).state
    decision = decide({"primary": feed("primary", 0), "fallback": feed("fallback", 0)}, state, 100)
    assert decision.provider == "primary"
    assert not decision.switched


def test_no_data_at_all():
    decision = decide({}, SelectionState(), 0)
    assert decision.provider is None


def test_state_round_trips_through_json():
    state = SelectionState(active="fallback", healthy_since={"primary": 12.5}, seen={"primary", "fallback"})
    assert SelectionState.from_json(state.to_json()) == state
    assert SelectionState.from_json(None) == SelectionState()
