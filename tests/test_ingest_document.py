"""The canonical match document: validator, stable event ids, competition summary."""

from __future__ import annotations

import copy

import pytest

from ingest.document import (
    DocumentInvalid, assign_event_ids, competition_document, competition_entry, empty_match_document,
    match_document_problems, normalise_name, reconcile_event_ids, validate_match_document,
)
from ingest.simulator import simulated_matches

VALID = {
    "id": "m1",
    "competition": {"code": "PL", "name": "Premier League"},
    "status": "IN_PLAY",
    "minute": 47,
    "stoppage": 1,
    "kickoff": "2024-09-01T15:00:00Z",
    "provider": "football-data",
    "venue": "Home Park",
    "teams": {"home": {"name": "Home", "short": "HOM", "formation": "4-4-2", "coach": "C"},
              "away": {"name": "Away"}},
    "score": {"home": 1, "away": 0, "half_time": {"home": 1, "away": 0}, "regular_time": None,
              "extra_time": None, "full_time": None, "penalties": None},
    "events": [
        {"id": "goal-home-12-1", "type": "goal", "minute": 12, "team": "home", "player": "P", "detail": "penalty",
         "assist": "A"},
        {"id": "substitution-away-46-1", "type": "substitution", "minute": 46, "team": "away",
         "player": "In", "player_out": "Out"},
        {"id": "shootout_kick-home-k1-1", "type": "shootout_kick", "minute": None, "team": "home",
         "order": 1, "scored": True},
    ],
    "lineups": {"home": [{"name": "Keeper", "number": 1, "position": "G", "starter": True}], "away": []},
    "statistics": {"possession": {"home": 55, "away": 45}, "expected_goals": {"home": 1.2, "away": None}},
}


def broken(path: str, value):
    document = copy.deepcopy(VALID)
    target = document
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is ...:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return document


def test_valid_document_passes():
    assert validate_match_document(VALID) is VALID


def test_simulator_documents_are_valid():
    for match in simulated_matches(12):
        for _ in range(100):
            match.tick()
            assert match_document_problems(match.document()) == []


def test_empty_document_is_valid():
    assert match_document_problems(empty_match_document("x", "PL", "Premier League")) == []


@pytest.mark.parametrize("path, value, expected", [
    ("id", "", "id: must be a non-empty string"),
    ("status", "LIVE", "status: must be one of"),
    ("minute", -1, "minute: must be null or an integer"),
    ("minute", "45", "minute: must be null or an integer"),
    ("stoppage", -2, "stoppage"),
    ("competition", {"code": "PL"}, "competition: must be an object with exactly code and name"),
    ("teams.home.name", "", "teams.home.name"),
    ("teams.away.short", 3, "teams.away.short"),
    ("teams.home.colour", "red", "teams.home: unknown keys ['colour']"),
    ("score.home", None, "score.home"),
    ("score.half_time", {"home": 1}, "score.half_time"),
    ("score.half_time", ..., "score.half_time: missing"),
    ("score.penalties", {"home": -1, "away": 0}, "score.penalties.home"),
    ("events.0.type", "dance", "events[0].type"),
    ("events.0.team", "left", "events[0].team"),
    ("events.0.minute", None, "events[0].minute"),
    ("events.0.detail", "header", "events[0].detail"),
    ("events.2.minute", 120, "events[2].minute: must be null for a shootout_kick"),
    ("events.2.scored", "yes", "events[2].scored"),
    ("events.1.id", "goal-home-12-1", "events: duplicate ids ['goal-home-12-1']"),
    ("events.0.id", ..., "events[0].id: missing"),
    ("lineups.home.0.number", "1", "lineups.home[0].number"),
    ("lineups.bench", [], "lineups: must be an object"),
    ("statistics.possession", {"home": "55%", "away": 45}, "statistics.possession.home"),
    ("statistics.corners", {"home": 1}, "statistics.corners"),
    ("weather", "rain", "document: unknown keys ['weather']"),
    ("lineups", ..., "lineups: missing"),
])
def test_validator_names_each_problem(path, value, expected):
    problems = match_document_problems(broken(path, value))
    assert any(expected in problem for problem in problems), problems


def test_validate_raises_with_every_problem():
    document = broken("status", "LIVE")
    document["minute"] = -3
    with pytest.raises(DocumentInvalid) as raised:
        validate_match_document(document)
    assert len(raised.value.problems) == 2


def test_event_ids_from_facts():
    events = [
        {"type": "goal", "minute": 90, "stoppage": 3, "team": "home", "player": "A"},
        {"type": "goal", "minute": 12, "team": "away", "player": "B"},
        {"type": "yellow_card", "minute": 12, "team": "away", "player": "C"},
        {"type": "yellow_card", "minute": 12, "team": "away", "player": "D"},
        {"type": "shootout_kick", "minute": None, "team": "home", "order": 1, "scored": True},
    ]
    ids = [event["id"] for event in assign_event_ids(events)]
    assert ids == ["goal-away-12-1", "yellow_card-away-12-1", "yellow_card-away-12-2",
                   "goal-home-90+3-1", "shootout_kick-home-k1-1"]


def test_event_ids_ignore_player_names():
    early = assign_event_ids([{"type": "goal", "minute": 30, "team": "home"}])
    late = assign_event_ids([{"type": "goal", "minute": 30, "team": "home", "player": "Late Name"}])
    assert early[0]["id"] == late[0]["id"]


def test_new_event_is_append():
    first = assign_event_ids([{"type": "goal", "minute": 10, "team": "home"},
                              {"type": "yellow_card", "minute": 20, "team": "away"}])
    second = assign_event_ids([{"type": "goal", "minute": 10, "team": "home"},
                               {"type": "yellow_card", "minute": 20, "team": "away"},
                               {"type": "goal", "minute": 35, "team": "away"}])
    assert second[: len(first)] == first
    assert second[-1]["id"] == "goal-away-35-1"


def test_normalise_name():
    assert normalise_name("Álvaro Morata") == "alvaro-morata"
    assert normalise_name("  H. Çalhanoğlu ") == "h-calhanoglu"


def test_competition_document_lists_live_matches():
    live = copy.deepcopy(VALID)
    later = copy.deepcopy(VALID)
    later.update(id="m2", kickoff="2024-09-01T17:30:00Z", status="PAUSED")
    finished = copy.deepcopy(VALID)
    finished.update(id="m3", status="FINISHED")
    entries = [competition_entry(d) for d in (later, finished, live)]
    document = competition_document("PL", "Premier League", entries)
    assert document["code"] == "PL"
    assert [entry["id"] for entry in document["matches"]] == ["m1", "m2"]
    assert document["matches"][0]["score"] == {"home": 1, "away": 0}
    assert document["matches"][0]["teams"]["home"] == {"name": "Home", "short": "HOM"}


def test_reconcile_keeps_id_when_minute_corrected():
    previous = assign_event_ids([{"type": "yellow_card", "minute": 37, "team": "home", "player": "D. Hernandez"}])
    current = assign_event_ids([{"type": "yellow_card", "minute": 35, "team": "home", "player": "D. Hernandez"},
                                {"type": "goal", "minute": 40, "team": "home", "player": "A. Manga"}])
    reconciled = reconcile_event_ids(previous, current)
    assert [e["id"] for e in reconciled] == ["yellow_card-home-37-1", "goal-home-40-1"]
    assert reconciled[0]["minute"] == 35


def test_reconcile_matches_name_filled_in_later():
    previous = assign_event_ids([{"type": "goal", "minute": 18, "team": "away"}])
    current = assign_event_ids([{"type": "goal", "minute": 19, "team": "away", "player": "Late Name"}])
    assert reconcile_event_ids(previous, current)[0]["id"] == "goal-away-18-1"


def test_reconcile_does_not_merge_different_players():
    previous = assign_event_ids([{"type": "goal", "minute": 30, "team": "home", "player": "First"}])
    current = assign_event_ids([{"type": "goal", "minute": 30, "team": "home", "player": "First"},
                                {"type": "goal", "minute": 31, "team": "home", "player": "Second"}])
    ids = [e["id"] for e in reconcile_event_ids(previous, current)]
    assert ids == ["goal-home-30-1", "goal-home-31-1"]


def test_reconcile_keeps_id_when_scorer_corrected():
    previous = assign_event_ids([{"type": "goal", "minute": 50, "team": "home", "player": "Deflected"}])
    current = assign_event_ids([{"type": "goal", "minute": 50, "team": "home", "player": "Credited"}])
    assert reconcile_event_ids(previous, current)[0]["id"] == "goal-home-50-1"


def test_reconcile_new_event_gets_free_id():
    previous = assign_event_ids([{"type": "goal", "minute": 50, "team": "home", "player": "First"}])
    current = assign_event_ids([{"type": "goal", "minute": 50, "team": "home", "player": "Second"},
                                {"type": "goal", "minute": 50, "team": "home", "player": "First"}])
    reconciled = reconcile_event_ids(previous, current)
    assert {e["player"]: e["id"] for e in reconciled} == {"First": "goal-home-50-1", "Second": "goal-home-50-2"}


def test_reconcile_ids_stay_unique():
    previous = assign_event_ids([{"type": "goal", "minute": 10, "team": "home"},
                                 {"type": "goal", "minute": 11, "team": "home"}])
    current = assign_event_ids([{"type": "goal", "minute": 10, "team": "home"},
                                {"type": "goal", "minute": 10, "team": "home"},
                                {"type": "goal", "minute": 12, "team": "home"}])
    ids = [e["id"] for e in reconcile_event_ids(previous, current)]
    assert len(ids) == len(set(ids))
    assert ids[:2] == ["goal-home-10-1", "goal-home-11-1"] or ids[0] == "goal-home-10-1"
