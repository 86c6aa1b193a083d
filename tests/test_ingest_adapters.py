"""Provider adapters: football-data.org v4, API-Football v3 and the generic JSON mapping.

Hand-made payloads cover every code path without the shared data folder;
the recorded responses in it check that real payloads parse too.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest

from ingest.config import parse_config
from ingest.document import match_document_problems, reconcile_event_ids
from ingest.normalise import canonical_document, competition_of, match_identity
from ingest.providers import (
    ApiFootballAdapter, FootballDataAdapter, GenericJsonAdapter, OptionError, ProviderError, ProviderRateLimited,
)
from tests.ingest_fixtures import require_shared
from tests.ingest_fixtures.samples import AF_FIXTURE, FD_MATCH, af_payload, fd_payload

CONFIG = parse_config({
    "providers": {
        "football-data": {"type": "football-data-v4", "base_url": "http://127.0.0.1:1"},
        "api-football": {"type": "api-football-v3", "base_url": "http://127.0.0.1:1", "id_prefix": "af"},
    },
    "sources": [{"name": "fd", "provider": "football-data"}, {"name": "af", "provider": "api-football"}],
    "competitions": {"UCL": {"name": "Champions League", "provider_ids": {"api-football": 2}}},
    "matches": [{"id": "cup-final", "provider_ids": {"api-football": 9001}}],
})

# The generic adapter configured for API-Football's live format.
AF_AS_GENERIC = {
    "mapping": {
        "match_id": "response[].fixture.id",
        "status": "response[].fixture.status.short",
        "minute": "response[].fixture.status.elapsed",
        "stoppage": "response[].fixture.status.extra",
        "kickoff": "response[].fixture.date",
        "venue": "response[].fixture.venue.name",
        "competition_id": "response[].league.id",
        "competition_name": "response[].league.name",
        "home_id": "response[].teams.home.id",
        "home_name": "response[].teams.home.name",
        "away_id": "response[].teams.away.id",
        "away_name": "response[].teams.away.name",
        "home_score": "response[].goals.home",
        "away_score": "response[].goals.away",
        "half_time_home": "response[].score.halftime.home",
        "half_time_away": "response[].score.halftime.away",
        "events": "response[].events[]",
        "event_type": "response[].events[].type",
        "event_detail": "response[].events[].detail",
        "event_comment": "response[].events[].comments",
        "event_minute": "response[].events[].time.elapsed",
        "event_stoppage": "response[].events[].time.extra",
        "event_team": "response[].events[].team.id",
        "event_player": "response[].events[].player.name",
        "event_assist": "response[].events[].assist.name",
    },
    "status_map": {"NS": "SCHEDULED", "1H": "IN_PLAY", "2H": "IN_PLAY", "HT": "PAUSED", "ET": "EXTRA_TIME",
                   "P": "PENALTY_SHOOTOUT", "FT": "FINISHED", "AET": "FINISHED", "PEN": "FINISHED"},
    "event_types": {"goal/normal goal": "goal", "goal/penalty": "goal/penalty", "goal/own goal": "goal/own_goal",
                    "goal/missed penalty": "missed_penalty", "card/yellow card": "yellow_card",
                    "card/red card": "red_card", "subst": "ignore", "var": "ignore",
                    "goal/penalty/penalty shootout": "shootout_kick/scored",
                    "goal/missed penalty/penalty shootout": "shootout_kick/missed"},
}


def finish(provider_name: str, matches) -> list[dict]:
    provider = CONFIG.providers[provider_name]
    documents = []
    for match in matches:
        identity = match_identity(CONFIG, provider, match.provider_id)
        documents.append(canonical_document(CONFIG, provider, match, identity))
    return documents


def assert_all_valid(documents: list[dict]) -> None:
    assert documents
    for document in documents:
        assert match_document_problems(document) == [], document["id"]


# --- football-data.org v4 ------------------------------------------------------------


def test_fd_hand_made_match():
    adapter = FootballDataAdapter("fd", {}, {})
    [document] = finish("football-data", adapter.parse(fd_payload()))
    assert_all_valid([document])
    assert document["id"] == "football-data-5001"  # unmapped: id_prefix (the provider name) and its id
    assert document["competition"] == {"code": "PL", "name": "Premier League"}
    assert document["status"] == "IN_PLAY"
    assert document["minute"] == 67
    assert document["teams"]["home"] == {"name": "Home City FC", "short": "HCF", "formation": "4-3-3",
                                         "coach": "A. Coach"}
    assert document["score"] == {"home": 2, "away": 1, "half_time": {"home": 1, "away": 0}}
    assert document["provider"] == "football-data"
    kinds = [(e["type"], e["team"], e["minute"], e.get("detail")) for e in document["events"]]
    assert kinds == [
        ("goal", "home", 12, "normal"), ("yellow_card", "away", 30, None), ("goal", "away", 45, "own_goal"),
        ("substitution", "home", 46, None), ("second_yellow_card", "away", 55, None),
        ("goal", "home", 60, "penalty"),
    ]
    own_goal = document["events"][2]
    assert own_goal["id"] == "goal-away-45+2-1"
    assert own_goal["player"] == "Unlucky Defender"
    substitution = document["events"][3]
    assert (substitution["player"], substitution["player_out"]) == ("Fresh Legs", "Tired Legs")
    assert document["lineups"]["home"] == [
        {"name": "Keeper One", "starter": True, "number": 1, "position": "Goalkeeper"},
        {"name": "Sub Two", "starter": False, "number": 14, "position": "Midfield"},
    ]
    assert document["statistics"]["possession"] == {"home": 58, "away": 42}
    assert "made_up_stat" not in document["statistics"]
    assert adapter.fields.counts["matches[].bookings[].card"] == 1


def test_fd_extra_time_and_penalties_score():
    match = copy.deepcopy(FD_MATCH)
    match.update(status="FINISHED", goals=[], bookings=[], substitutions=[])
    match["score"] = {"winner": "AWAY_TEAM", "duration": "PENALTY_SHOOTOUT", "fullTime": {"home": 6, "away": 7},
                      "halfTime": {"home": 1, "away": 0}, "regularTime": {"home": None, "away": None},
                      "extraTime": {"home": 0, "away": 1}, "penalties": {"home": 4, "away": 5}}
    [document] = finish("football-data", FootballDataAdapter("fd", {}, {}).parse(fd_payload(match)))
    assert document["score"] == {
        "home": 2, "away": 2, "half_time": {"home": 1, "away": 0}, "regular_time": {"home": 2, "away": 1},
        "extra_time": {"home": 0, "away": 1}, "penalties": {"home": 4, "away": 5},
        "full_time": {"home": 2, "away": 2},
    }


def test_fd_missing_fields_degrade(caplog):
    caplog.set_level(logging.WARNING, logger="ingest.providers.base")
    match = {"id": 7, "status": "BRAND_NEW", "homeTeam": {"id": None, "name": None}, "awayTeam": {},
             "goals": [{"minute": None, "team": {"id": 1}}, {"minute": 5, "team": {"id": 99, "name": "X"}}]}
    adapter = FootballDataAdapter("fd-src", {}, {})
    matches = adapter.parse(fd_payload(match, {"status": "IN_PLAY"}, copy.deepcopy(match)))
    documents = finish("football-data", matches)
    assert len(documents) == 2  # the match without an id is skipped
    assert_all_valid(documents)
    assert documents[0]["teams"]["home"]["name"] == "TBD"
    assert documents[0]["status"] == "SCHEDULED"
    assert documents[0]["events"] == []
    status_logs = [r for r in caplog.records if "matches[].status" in r.getMessage()]
    assert len(status_logs) == 1
    assert "fd-src" in status_logs[0].getMessage()
    assert adapter.fields.counts["matches[].status"] == 2


def test_fd_requests():
    adapter = FootballDataAdapter("fd", {}, {"competitions": ["WC", "PL"], "params": {"status": "LIVE"}})
    [request] = adapter.list_requests()
    assert request.path == "/v4/matches"
    assert dict(request.params) == {"competitions": "WC,PL", "status": "LIVE"}
    per_competition = FootballDataAdapter("fd", {}, {"endpoint": "competition", "competitions": ["CL", "EL"]})
    assert [r.path for r in per_competition.list_requests()] == ["/v4/competitions/CL/matches",
                                                                  "/v4/competitions/EL/matches"]
    ids = [str(n) for n in range(45)]
    batches = adapter.by_ids_requests(ids)
    assert len(batches) == 3
    assert batches[0].params["ids"].split(",") == ids[:20]


def test_fd_error_payload():
    with pytest.raises(ProviderError):
        FootballDataAdapter("fd", {}, {}).check_errors({"errorCode": 400, "message": "bad filter"})
    with pytest.raises(ProviderError):
        FootballDataAdapter("fd", {}, {}).parse({"unexpected": True})


def test_fd_real_samples_are_valid():
    folder = require_shared("partner-api", "football-data-org")
    files = sorted(folder.glob("*.json"))
    assert len(files) >= 3
    for path in files:
        recorded = json.loads(path.read_text())
        payload = json.loads(recorded["body"])
        adapter = FootballDataAdapter("fd", {}, {})
        documents = finish("football-data", adapter.parse(payload))
        assert_all_valid(documents)
        assert adapter.fields.counts == {}, path.name


def test_fd_real_match_417211():
    path = require_shared("partner-api", "football-data-org", "v4-match-417211.json")
    payload = json.loads(json.loads(path.read_text())["body"])
    [document] = finish("football-data", FootballDataAdapter("fd", {}, {}).parse(payload))
    assert document["status"] == "FINISHED"
    assert document["teams"]["away"]["short"] == "RC"  # the provider sends "RC " with a space
    assert document["score"]["full_time"] == {"home": 1, "away": 1}
    assert document["kickoff"] == "2022-09-04T13:00:00Z"
    assert document["competition"]["code"] == "FL1"


def test_fd_real_competition_penalties():
    path = require_shared("partner-api", "football-data-org", "v4-competition-2001-matches.json")
    payload = json.loads(json.loads(path.read_text())["body"])
    documents = {d["id"]: d for d in finish("football-data", FootballDataAdapter("fd", {}, {}).parse(payload))}
    shootouts = [d for d in documents.values() if "penalties" in d["score"]]
    assert len(shootouts) == 3
    for document in shootouts:
        score = document["score"]
        assert score["home"] == score["away"] or score["regular_time"] is not None
        assert score["full_time"] == {"home": score["home"], "away": score["away"]}


# --- API-Football v3 ---------------------------------------------------------------------


def test_af_hand_made_fixture():
    adapter = ApiFootballAdapter("af", {}, {})
    [document] = finish("api-football", adapter.parse(af_payload()))
    assert_all_valid([document])

    assert document["id"] == "cup-final"  # mapped in [[matches]]
    assert document["competition"] == {"code": "UCL", "name": "Champions League"}
    assert document["status"] == "FINISHED"
    assert document["score"] == {
        "home": 1, "away": 1, "half_time": {"home": 0, "away": 1}, "regular_time": {"home": 1, "away": 1},
        "extra_time": {"home": 0, "away": 0}, "penalties": {"home": 4, "away": 3},
        "full_time": {"home": 1, "away": 1},
    }

    by_type = {}
    for event in document["events"]:
        by_type.setdefault(event["type"], []).append(event)
    assert [e["minute"] for e in by_type["goal"]] == [20, 88]
    assert by_type["goal"][1]["detail"] == "penalty"
    assert "player" not in by_type["yellow_card"][0]  # the name is null in the payload
    assert by_type["substitution"][0]["player"] == "Coming On"
    assert by_type["substitution"][0]["player_out"] == "Going Off"
    assert by_type["red_card"][0]["stoppage"] == 3
    assert by_type["missed_penalty"][0]["minute"] == 100
    kicks = by_type["shootout_kick"]
    assert [(k["order"], k["team"], k["scored"]) for k in kicks] == [(1, "home", True), (2, "away", False)]
    assert document["events"][-1]["type"] == "shootout_kick"

    assert adapter.fields.counts["response[].events[].team"] == 1
    assert adapter.fields.counts["response[].events[].type"] == 1

    assert document["teams"]["home"] == {"name": "Red Side", "formation": "4-4-2", "coach": "Red Coach"}
    assert document["lineups"]["home"][1] == {"name": "Coming On", "starter": False, "number": 19, "position": "F"}
    assert document["statistics"]["possession"] == {"home": 61, "away": 39}
    assert document["statistics"]["expected_goals"] == {"home": 1.84, "away": None}


def test_af_half_time_only_after_first_half():
    fixture = copy.deepcopy(AF_FIXTURE)
    fixture["fixture"]["status"] = {"long": "First Half", "short": "1H", "elapsed": 30, "extra": None}
    fixture["score"]["halftime"] = {"home": 0, "away": 1}
    [document] = finish("api-football", ApiFootballAdapter("af", {}, {}).parse(af_payload(fixture)))
    assert document["score"]["half_time"] is None
    assert "full_time" not in document["score"]
    fixture["fixture"]["status"] = {"long": "Halftime", "short": "HT", "elapsed": 45, "extra": None}
    [document] = finish("api-football", ApiFootballAdapter("af", {}, {}).parse(af_payload(fixture)))
    assert document["score"]["half_time"] == {"home": 0, "away": 1}
    assert document["status"] == "PAUSED"


def test_af_errors_in_200_response():
    adapter = ApiFootballAdapter("af", {}, {})
    with pytest.raises(ProviderRateLimited) as raised:
        adapter.check_errors({"errors": {"rateLimit": "Too many requests"}, "response": []})
    assert raised.value.retry_after == 60.0
    with pytest.raises(ProviderRateLimited) as raised:
        adapter.check_errors({"errors": {"requests": "daily limit reached"}, "response": []})
    assert 0 < raised.value.retry_after <= 86_400
    with pytest.raises(ProviderError):
        adapter.check_errors({"errors": {"token": "missing key"}, "response": []})
    adapter.check_errors({"errors": [], "response": []})


def test_af_requests():
    assert dict(ApiFootballAdapter("af", {}, {}).list_requests()[0].params) == {"live": "all"}
    leagues = ApiFootballAdapter("af", {}, {"leagues": [1, 39]})
    assert dict(leagues.list_requests()[0].params) == {"live": "1-39"}
    fixtures = ApiFootballAdapter("af", {}, {"endpoint": "fixtures", "params": {"date": "2022-11-29"}})
    assert dict(fixtures.list_requests()[0].params) == {"date": "2022-11-29"}
    assert fixtures.by_ids_requests(["1", "2"])[0].params == {"ids": "1-2"}


def test_af_real_samples_are_valid():
    folder = require_shared("partner-api", "api-football")
    files = sorted(folder.glob("*.json"))
    assert len(files) >= 3
    for path in files:
        adapter = ApiFootballAdapter("af", {}, {})
        documents = finish("api-football", adapter.parse(json.loads(path.read_text())))
        assert_all_valid(documents)
        for document in documents:
            assert document["score"]["home"] >= 0


def test_af_real_penalty_shootouts():
    path = require_shared("partner-api", "api-football", "fixtures-ids-cl-penalties.json")
    documents = finish("api-football", ApiFootballAdapter("af", {}, {}).parse(json.loads(path.read_text())))
    assert len(documents) == 2
    for document in documents:
        kicks = [e for e in document["events"] if e["type"] == "shootout_kick"]
        scored = {side: sum(1 for k in kicks if k["team"] == side and k["scored"]) for side in ("home", "away")}
        assert scored == document["score"]["penalties"]
        assert sorted(k["order"] for k in kicks) == list(range(1, len(kicks) + 1))
        goals = [e for e in document["events"] if e["type"] == "goal"]
        assert {side: sum(1 for g in goals if g["team"] == side) for side in ("home", "away")} == \
            {"home": document["score"]["home"], "away": document["score"]["away"]}
        assert len(document["lineups"]["home"]) > 11
        assert document["statistics"]["possession"]["home"] + document["statistics"]["possession"]["away"] == 100


def test_af_real_polls_keep_event_ids():
    first = require_shared("partner-api", "api-football", "fixtures-live-all_2026-02-04T2352Z.json")
    second = require_shared("partner-api", "api-football", "fixtures-live-all_2026-02-04T2359Z.json")
    before = {d["id"]: d for d in finish("api-football", ApiFootballAdapter("af", {}, {}).parse(
        json.loads(first.read_text())))}
    after = {d["id"]: d for d in finish("api-football", ApiFootballAdapter("af", {}, {}).parse(
        json.loads(second.read_text())))}
    assert len(set(before) & set(after)) == 33
    new_goals = 0
    corrected = 0
    for match_id in set(before) & set(after):
        earlier_ids = {e["id"] for e in before[match_id]["events"]}
        fact_ids = {e["id"] for e in after[match_id]["events"]}
        corrected += len(earlier_ids - fact_ids)
        events = reconcile_event_ids(before[match_id]["events"], after[match_id]["events"])
        later_ids = [e["id"] for e in events]
        # Six minutes later every earlier event is still there under the same id.
        assert earlier_ids <= set(later_ids), match_id
        assert len(later_ids) == len(set(later_ids))
        new_goals += sum(1 for e in events if e["type"] == "goal" and e["id"] not in earlier_ids)
    # The provider moved one card from minute 37 to 35 between the two polls.
    assert corrected >= 1
    assert new_goals >= 3


# --- generic JSON mapping ------------------------------------------------------------------


def generic(options: dict = AF_AS_GENERIC) -> GenericJsonAdapter:
    GenericJsonAdapter.check_provider_options(options, "providers.gen")
    return GenericJsonAdapter("gen", options, {"path": "/fixtures"})


def test_generic_matches_dedicated_adapter_on_hand_made():
    dedicated = ApiFootballAdapter("af", {}, {}).parse(af_payload())[0].document
    mapped = generic().parse(af_payload())[0].document
    assert mapped["status"] == dedicated["status"]
    assert mapped["score"]["home"] == dedicated["score"]["home"]
    assert mapped["score"]["half_time"] == dedicated["score"]["half_time"]
    dedicated_goals = [(e["minute"], e["team"], e["detail"]) for e in dedicated["events"] if e["type"] == "goal"]
    mapped_goals = [(e["minute"], e["team"], e["detail"]) for e in mapped["events"] if e["type"] == "goal"]
    assert mapped_goals == dedicated_goals


def test_generic_matches_dedicated_adapter_on_real_polls():
    folder = require_shared("partner-api", "api-football")
    for path in sorted(folder.glob("fixtures-live-all_*.json")):
        payload = json.loads(path.read_text())
        dedicated = {m.provider_id: m.document for m in ApiFootballAdapter("af", {}, {}).parse(payload)}
        mapped = {m.provider_id: m.document for m in generic().parse(payload)}
        assert mapped.keys() == dedicated.keys()
        for match_id, document in mapped.items():
            reference = dedicated[match_id]
            assert document["status"] == reference["status"], match_id
            assert document["minute"] == reference["minute"]
            assert (document["score"]["home"], document["score"]["away"]) == \
                (reference["score"]["home"], reference["score"]["away"])
            assert [e for e in document["events"] if e["type"] == "goal"] == \
                [{k: v for k, v in e.items()} for e in reference["events"] if e["type"] == "goal"]


def test_generic_unknown_values_degrade(caplog):
    caplog.set_level(logging.WARNING, logger="ingest.providers.base")
    adapter = generic()
    fixture = copy.deepcopy(AF_FIXTURE)
    fixture["fixture"]["status"]["short"] = "WEIRD"
    fixture["teams"]["away"]["name"] = None
    documents = finish("api-football", adapter.parse(af_payload(fixture, {"fixture": {}})))
    assert len(documents) == 1  # the item without an id is skipped
    assert_all_valid(documents)
    assert documents[0]["status"] == "IN_PLAY"
    assert documents[0]["teams"]["away"]["name"] == "TBD"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "field status" in messages
    assert "field event_type" in messages  # "Trick" has no mapping


def test_generic_requests_and_auth():
    options = {**AF_AS_GENERIC, "auth_header": "Authorization", "auth_prefix": "Bearer ",
               "by_ids": {"path": "/fixtures", "param": "ids", "separator": "-", "batch": 2}}
    adapter = GenericJsonAdapter("gen", options, {"path": "/live", "params": {"sport": "football"}})
    assert adapter.auth_headers("k") == {"Authorization": "Bearer k"}
    [request] = adapter.list_requests()
    assert (request.path, dict(request.params)) == ("/live", {"sport": "football"})
    assert [r.params["ids"] for r in adapter.by_ids_requests(["1", "2", "3"])] == ["1-2", "3"]


@pytest.mark.parametrize("change, key", [
    ({"match_id": "response.fixture.id"}, "providers.gen.mapping.match_id"),
    ({"match_id": "a[].b[].c"}, "providers.gen.mapping.match_id"),
    ({"home_name": "other[].teams.home.name"}, "providers.gen.mapping.home_name"),
    ({"home_name": "response[].players[].name"}, "providers.gen.mapping.home_name"),
    ({"events": "response[].events"}, "providers.gen.mapping.events"),
    ({"event_minute": "response[].time.elapsed"}, "providers.gen.mapping.event_minute"),
    ({"colour": "response[].colour"}, "providers.gen.mapping.colour"),
    ({"status": "response[].fixture..short"}, "providers.gen.mapping.status"),
])
def test_generic_mapping_validation(change, key):
    options = copy.deepcopy(AF_AS_GENERIC)
    options["mapping"].update(change)
    with pytest.raises(OptionError) as raised:
        GenericJsonAdapter.check_provider_options(options, "providers.gen")
    assert str(raised.value).startswith(key)


def test_generic_table_validation():
    options = copy.deepcopy(AF_AS_GENERIC)
    options["status_map"]["X"] = "LIVE"
    with pytest.raises(OptionError, match="providers.gen.status_map.X"):
        GenericJsonAdapter.check_provider_options(options, "providers.gen")
    options = copy.deepcopy(AF_AS_GENERIC)
    options["event_types"]["x"] = "card/yellow"
    with pytest.raises(OptionError, match="providers.gen.event_types.x"):
        GenericJsonAdapter.check_provider_options(options, "providers.gen")


def test_competition_without_mapping_uses_provider_code():
    provider = CONFIG.providers["football-data"]
    match = FootballDataAdapter("fd", {}, {}).parse(fd_payload())[0]
    assert competition_of(CONFIG, provider, match) == ("PL", "Premier League")
    af_match = ApiFootballAdapter("af", {}, {}).parse(af_payload(copy.deepcopy(AF_FIXTURE)))[0]
    af_match.competition_keys = ("77",)
    assert competition_of(CONFIG, CONFIG.providers["api-football"], af_match) == ("af-77", "Cup Competition")
