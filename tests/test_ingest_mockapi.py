"""The mock partner API: timelines, both renderings, quotas, faults and the request log."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import pytest

from ingest.config import parse_config
from ingest.document import match_document_problems
from ingest.mockapi import render
from ingest.mockapi.server import (
    API_FOOTBALL, FOOTBALL_DATA, MockServer, MockState, Quota, SimulatedClock, fault_from_spec,
)
from ingest.mockapi.timeline import ENDED, load_timelines, parse_kickoff
from ingest.normalise import canonical_document, match_identity
from ingest.providers import ApiFootballAdapter, FootballDataAdapter
from tests.ingest_fixtures import require_shared
from tests.ingest_fixtures.samples import write_timeline

CONFIG = parse_config({
    "providers": {"fd": {"type": "football-data-v4", "base_url": "http://127.0.0.1:1"},
                  "af": {"type": "api-football-v3", "base_url": "http://127.0.0.1:1"}},
    "sources": [{"name": "fd", "provider": "fd"}, {"name": "af", "provider": "af"}],
})


def to_documents(provider: str, matches) -> list[dict]:
    config_provider = CONFIG.providers[provider]
    return [canonical_document(CONFIG, config_provider, m, match_identity(CONFIG, config_provider, m.provider_id))
            for m in matches]


def both_formats(timeline, moment, teams) -> tuple[dict, dict]:
    """The canonical documents the two adapters make of the mock's two renderings."""
    state = timeline.state_at(moment)
    fd_payload = render.fd_match_list([render.fd_match(timeline, state, teams, moment)], {})
    af_payload = render.af_envelope({}, [render.af_fixture(timeline, state, teams)])
    [fd_document] = to_documents("fd", FootballDataAdapter("fd", {}, {}).parse(fd_payload))
    [af_document] = to_documents("af", ApiFootballAdapter("af", {}, {}).parse(af_payload))
    return fd_document, af_document


def goal_detail(goal) -> str:
    if goal.own_goal:
        return "own_goal"
    if goal.penalty:
        return "penalty"
    return "normal"


def expected_goals(timeline) -> list[tuple]:
    goals = sorted(timeline.goals, key=lambda goal: goal.at)
    return [(goal.side, goal.minute, goal.offset or None, goal.scorer, goal_detail(goal)) for goal in goals]


def document_goals(document: dict) -> list[tuple]:
    return [(e["team"], e["minute"], e.get("stoppage"), e.get("player"), e["detail"])
            for e in document["events"] if e["type"] == "goal"]


def check_final(timeline, document: dict) -> None:
    assert match_document_problems(document) == []
    assert document["status"] == "FINISHED"
    final = timeline.final_score
    assert (document["score"]["home"], document["score"]["away"]) == final
    assert document["score"]["full_time"] == {"home": final[0], "away": final[1]}
    assert document["score"]["regular_time"] == {"home": timeline.regular_time[0], "away": timeline.regular_time[1]}
    if timeline.half_time is not None:
        assert document["score"]["half_time"] == {"home": timeline.half_time[0], "away": timeline.half_time[1]}
    if timeline.penalties is not None:
        assert document["score"]["penalties"] == {"home": timeline.penalties[0], "away": timeline.penalties[1]}
    if timeline.has_goal_details:
        assert document_goals(document) == expected_goals(timeline)


# --- timelines --------------------------------------------------------------------------


def test_kickoff_offsets():
    assert parse_kickoff("2018-06-25", "18:00 UTC+4", timedelta(0)).isoformat() == "2018-06-25T14:00:00+00:00"
    assert parse_kickoff("2022-11-20", "19:00", timedelta(hours=3)).isoformat() == "2022-11-20T16:00:00+00:00"
    assert parse_kickoff("2030-01-01", None, timedelta(0)).isoformat() == "2030-01-01T12:00:00+00:00"


def test_hand_made_timeline_replays_phases(tmp_path):
    write_timeline(tmp_path)
    alpha, gamma, final = load_timelines(tmp_path)
    kickoff = alpha.kickoff
    assert alpha.state_at(kickoff - timedelta(minutes=1)).phase == "before"
    early = alpha.state_at(kickoff + timedelta(minutes=10))
    assert (early.phase, early.minute, early.score) == ("first_half", 11, (1, 0))
    stoppage = alpha.state_at(kickoff + timedelta(minutes=45.7))
    assert (stoppage.minute, stoppage.stoppage, stoppage.score) == (45, 1, (1, 1))  # the own goal at 45+1
    half_time = alpha.state_at(kickoff + timedelta(minutes=50))
    assert (half_time.phase, half_time.half_time) == ("half_time", (1, 1))
    late = alpha.state_at(kickoff + timedelta(minutes=alpha.period_start(2) + 48))
    assert (late.minute, late.stoppage, late.score) == (90, 4, (2, 1))
    assert alpha.state_at(alpha.end).phase == ENDED
    assert gamma.has_goal_details  # a 0-0 match has no goal lists at all
    assert gamma.state_at(gamma.end).half_time == (0, 0)
    assert final.kickoff.isoformat() == "2030-06-01T17:00:00+00:00"
    extra = final.state_at(final.kickoff + timedelta(minutes=final.period_start(3) + 5))
    assert extra.phase == "extra_first"
    assert extra.regular_time == (1, 1)
    shootout = final.state_at(final.end - timedelta(minutes=5))
    assert shootout.phase == "shootout"
    ended = final.state_at(final.end)
    assert (ended.score, ended.penalties, ended.extra_time) == ((2, 2), (4, 3), (1, 1))


def test_hand_made_timeline_through_both_adapters(tmp_path):
    write_timeline(tmp_path)
    timelines = load_timelines(tmp_path)
    teams = render.TeamIds(timelines)
    for timeline in timelines:
        for document in both_formats(timeline, timeline.end, teams):
            check_final(timeline, document)
    final = timelines[2]
    fd_document, af_document = both_formats(final, final.end, teams)
    assert fd_document["score"]["extra_time"] == {"home": 1, "away": 1}
    assert af_document["score"]["extra_time"] == {"home": 1, "away": 1}
    live_fd, live_af = both_formats(final, final.kickoff + timedelta(minutes=final.period_start(3) + 3), teams)
    assert live_fd["status"] == live_af["status"] == "EXTRA_TIME"


def test_event_ids_only_grow_during_replay(tmp_path):
    write_timeline(tmp_path)
    timeline = load_timelines(tmp_path)[0]
    teams = render.TeamIds([timeline])
    seen: list[str] = []
    for minute in range(0, int(timeline.duration_minutes) + 2):
        fd_document, af_document = both_formats(timeline, timeline.kickoff + timedelta(minutes=minute), teams)
        ids = [e["id"] for e in fd_document["events"]]
        assert ids[: len(seen)] == seen
        assert ids == [e["id"] for e in af_document["events"]]
        seen = ids
    assert len(seen) == 3


def test_real_matches_final_results_in_both_formats():
    folder = require_shared("openfootball")
    timelines = load_timelines(folder)
    assert len(timelines) >= 128
    teams = render.TeamIds(timelines)
    goals = 0
    for timeline in timelines:
        for document in both_formats(timeline, timeline.end, teams):
            check_final(timeline, document)
        goals += len(timeline.goals)
    world_cup_goals = sum(len(t.goals) for t in timelines if t.competition.code == "WC")
    assert world_cup_goals == 172 + 169
    assert goals == world_cup_goals  # the league season has scores only


def test_real_final_2022_with_shootout():
    folder = require_shared("openfootball")
    timelines = load_timelines(folder)
    [final] = [t for t in timelines if t.round == "Final" and t.kickoff.year == 2022]
    fd_document, af_document = both_formats(final, final.end, render.TeamIds(timelines))
    for document in (fd_document, af_document):
        assert document["teams"]["home"]["name"] == "Argentina"
        assert (document["score"]["home"], document["score"]["away"]) == (3, 3)
        assert document["score"]["penalties"] == {"home": 4, "away": 2}
        assert len([e for e in document["events"] if e["type"] == "goal"]) == 6


# --- the HTTP server -------------------------------------------------------------------------


@pytest.fixture
def mock(tmp_path):
    write_timeline(tmp_path / "data")
    timelines = load_timelines(tmp_path / "data")
    clock = SimulatedClock(timelines[0].kickoff + timedelta(minutes=30), 60.0)
    quotas = {FOOTBALL_DATA: Quota(5, None), API_FOOTBALL: Quota(100, 8)}
    state = MockState(timelines, clock, quotas, {FOOTBALL_DATA: None, API_FOOTBALL: "af-key"},
                      tmp_path / "requests.jsonl")
    server = MockServer(state).start()
    server.request_log = tmp_path / "requests.jsonl"
    yield server
    server.stop()


def test_mock_serves_both_formats(mock):
    with httpx.Client(base_url=mock.url, timeout=5) as client:
        listing = client.get("/v4/matches").json()
        assert listing["resultSet"]["count"] == 3
        assert {m["status"] for m in listing["matches"]} == {"IN_PLAY", "TIMED"}
        competition = client.get("/v4/competitions/TESTCUP2030/matches", params={"status": "LIVE"}).json()
        assert competition["resultSet"]["count"] == 2
        single = client.get(f"/v4/matches/{render.FD_MATCH_ID_BASE}").json()
        assert single["homeTeam"]["name"] == "Alpha"
        assert client.get("/v4/matches/1").status_code == 404
        by_ids = client.get("/v4/matches", params={"ids": f"{render.FD_MATCH_ID_BASE + 2}"}).json()
        assert [m["awayTeam"]["name"] for m in by_ids["matches"]] == ["Zeta"]
        live = client.get("/fixtures", params={"live": "all"}, headers={"x-apisports-key": "af-key"}).json()
        assert live["results"] == 2
        assert live["response"][0]["fixture"]["status"]["short"] == "1H"
        rejected = client.get("/fixtures", params={"live": "all"}).json()
        assert rejected["errors"] == {"token": "Error/Missing application key."}


def test_mock_quota_returns_429_with_retry_after(mock):
    with httpx.Client(base_url=mock.url, timeout=5) as client:
        statuses = [client.get("/v4/matches").status_code for _ in range(7)]
        assert statuses == [200] * 5 + [429, 429]
        limited = client.get("/v4/matches")
        assert 55 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.json()["errorCode"] == 429
        headers = {"x-apisports-key": "af-key"}
        answers = [client.get("/fixtures", params={"live": "all"}, headers=headers) for _ in range(9)]
        assert [a.status_code for a in answers] == [200] * 8 + [429]
        assert answers[7].headers["x-ratelimit-requests-remaining"] == "0"
    log = [json.loads(line) for line in mock.request_log.read_text().splitlines()]
    assert sum(1 for entry in log if entry.get("rate_limited")) == 4


def test_mock_faults(mock):
    with httpx.Client(base_url=mock.url, timeout=5) as client:
        added = client.post("/admin/faults", json={"provider": "api-football", "status": 503, "count": 2})
        assert added.status_code == 200
        headers = {"x-apisports-key": "af-key"}
        statuses = [client.get("/fixtures", params={"live": "all"}, headers=headers).status_code for _ in range(3)]
        assert statuses == [503, 503, 200]
        assert client.get("/v4/matches").status_code == 200  # the other provider is unaffected
        client.post("/admin/faults", json={"provider": "any", "status": 429, "retry_after": "2", "count": 1})
        limited = client.get("/v4/matches")
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
        client.post("/admin/faults", json={"provider": "football-data", "delay": 0.5, "duration": 5})
        with pytest.raises(httpx.ReadTimeout):
            client.get("/v4/matches", timeout=0.2)
        client.delete("/admin/faults")
        assert client.get("/admin/faults").json() == {"faults": []}
        time.sleep(0.6)  # the delayed request is logged once its response has been sent
        assert client.post("/admin/faults", json={"provider": "nobody", "status": 500}).status_code == 400
        entries = client.get("/admin/requests").json()["requests"]
    assert [e["fault"] for e in entries if "fault" in e] == [503, 503, 429, "delay"]


def test_mock_request_log_and_clock(mock):
    with httpx.Client(base_url=mock.url, timeout=5) as client:
        client.get("/v4/matches", params={"competitions": "TESTCUP2030"})
        first = client.get("/admin/requests").json()
        assert first["requests"][-1]["query"] == {"competitions": "TESTCUP2030"}
        assert first["requests"][-1]["provider"] == "football-data"
        assert client.get("/admin/requests", params={"since": first["next"]}).json()["requests"] == []
        clock = client.post("/admin/clock", json={"start": "2030-06-01T19:00:00Z", "speed": 1}).json()
        assert clock["now"].startswith("2030-06-01T19:00")
        matches = client.get("/admin/matches").json()["matches"]
        assert [m["phase"] for m in matches] == ["ended", "ended", "extra_first"]
    lines = mock.request_log.read_text().splitlines()
    assert json.loads(lines[0])["path"] == "/v4/matches"


def test_fault_spec_validation():
    with pytest.raises(ValueError, match="status"):
        fault_from_spec({"status": 200})
    with pytest.raises(ValueError, match="needs a status"):
        fault_from_spec({"provider": "any"})
    with pytest.raises(ValueError, match="unknown fault fields"):
        fault_from_spec({"status": 500, "colour": "red"})


def test_simulated_clock_runs_faster():
    clock = SimulatedClock(parse_kickoff("2030-01-01", "12:00", timedelta(0)), 600.0)
    start = clock.now()
    time.sleep(0.1)
    assert 50 <= (clock.now() - start).total_seconds() <= 120
