"""A replayed match in the two provider formats: football-data.org v4 and API-Football v3.

The field names, nesting and value conventions follow the recorded
responses of both providers. Values the timelines do not carry are
synthetic: team and match ids are numbered from the data folder, and the
three-letter team code is the first three letters of the name.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timezone
from typing import Any

from ingest.mockapi.timeline import (
    BEFORE, BREAK_BEFORE_EXTRA, ENDED, EXTRA_BREAK, EXTRA_FIRST, EXTRA_SECOND, FIRST_HALF,
    HALF_TIME, SECOND_HALF, SHOOTOUT, Goal, MatchState, Timeline,
)

FD_MATCH_ID_BASE = 400_001
AF_FIXTURE_ID_BASE = 1_000_001
FD_TEAM_ID_BASE = 7_000
AF_TEAM_ID_BASE = 8_000


def fd_match_id(timeline: Timeline) -> int:
    return FD_MATCH_ID_BASE + timeline.index


def af_fixture_id(timeline: Timeline) -> int:
    return AF_FIXTURE_ID_BASE + timeline.index


def team_code(name: str) -> str:
    letters = "".join(c for c in unicodedata.normalize("NFKD", name) if c.isascii() and c.isalpha())
    return (letters[:3] or "TBD").upper()


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pair(value: tuple[int, int] | None) -> dict:
    if value is None:
        return {"home": None, "away": None}
    return {"home": value[0], "away": value[1]}


class TeamIds:
    """Stable synthetic team ids, one per team name."""

    def __init__(self, timelines: list[Timeline]):
        names = sorted({t.home for t in timelines} | {t.away for t in timelines})
        self._ids = {name: position for position, name in enumerate(names)}

    def fd(self, name: str) -> int:
        return FD_TEAM_ID_BASE + self._ids[name]

    def af(self, name: str) -> int:
        return AF_TEAM_ID_BASE + self._ids[name]


# --- football-data.org v4 -------------------------------------------------------

FD_STATUS = {
    BEFORE: "TIMED", FIRST_HALF: "IN_PLAY", HALF_TIME: "PAUSED", SECOND_HALF: "IN_PLAY",
    BREAK_BEFORE_EXTRA: "PAUSED", EXTRA_FIRST: "EXTRA_TIME", EXTRA_BREAK: "PAUSED",
    EXTRA_SECOND: "EXTRA_TIME", SHOOTOUT: "PENALTY_SHOOTOUT", ENDED: "FINISHED",
}


def fd_match(timeline: Timeline, state: MatchState, teams: TeamIds, now: datetime) -> dict:
    """Render one v4 match resource with the paid-tier live fields (minute, goals)."""
    competition = timeline.competition
    home_id, away_id = teams.fd(timeline.home), teams.fd(timeline.away)
    duration = "REGULAR"
    if state.has_extra_time:
        duration = "EXTRA_TIME"
    if state.has_shootout:
        duration = "PENALTY_SHOOTOUT"
    # v4's fullTime is the running score and includes shoot-out goals.
    full_time = None
    if state.phase != BEFORE:
        shootout = state.penalties or (0, 0)
        full_time = (state.score[0] + shootout[0], state.score[1] + shootout[1])
    score: dict[str, Any] = {
        "winner": _winner(timeline, state) if state.phase == ENDED else None,
        "duration": duration,
        "fullTime": _pair(full_time),
        "halfTime": _pair(state.half_time),
    }
    if duration != "REGULAR":
        score["regularTime"] = _pair(state.regular_time)
        score["extraTime"] = _pair(state.extra_time or (0, 0))
    if state.has_shootout:
        score["penalties"] = _pair(state.penalties or (0, 0))

    goals = []
    running = [0, 0]
    for goal in state.goals:
        running[0 if goal.side == "home" else 1] += 1
        team_name = timeline.home if goal.side == "home" else timeline.away
        goals.append({
            "minute": goal.minute,
            "injuryTime": goal.offset,
            "type": _fd_goal_type(goal),
            "team": {"id": teams.fd(team_name), "name": team_name},
            "scorer": {"id": None, "name": goal.scorer},
            "assist": None,
            "score": {"home": running[0], "away": running[1]},
        })
    return {
        "area": {"id": 2267, "name": "World", "code": "INT", "flag": None},
        "competition": {"id": competition.fd_id, "name": competition.name, "code": competition.code,
                        "type": "CUP" if competition.code == "WC" else "LEAGUE", "emblem": None},
        "season": {"id": competition.season, "startDate": None, "endDate": None,
                   "currentMatchday": None, "winner": None},
        "id": fd_match_id(timeline),
        "utcDate": _iso(timeline.kickoff),
        "status": FD_STATUS[state.phase],
        "minute": state.minute,
        "injuryTime": state.stoppage,
        "venue": timeline.ground,
        "matchday": None,
        "stage": _fd_stage(timeline),
        "group": timeline.group.upper().replace(" ", "_") if timeline.group else None,
        "lastUpdated": _iso(now),
        "homeTeam": {"id": home_id, "name": timeline.home, "shortName": timeline.home,
                     "tla": team_code(timeline.home), "crest": None},
        "awayTeam": {"id": away_id, "name": timeline.away, "shortName": timeline.away,
                     "tla": team_code(timeline.away), "crest": None},
        "score": score,
        "goals": goals,
        "bookings": [],
        "substitutions": [],
        "odds": {"msg": "Activate Odds-Package in User-Panel to retrieve odds."},
        "referees": [],
    }


def _fd_stage(timeline: Timeline) -> str:
    if timeline.group:
        return "GROUP_STAGE"
    if timeline.competition.code == "WC":
        return "KNOCKOUT"
    return "REGULAR_SEASON"


def _fd_goal_type(goal: Goal) -> str:
    if goal.own_goal:
        return "OWN"
    if goal.penalty:
        return "PENALTY"
    return "REGULAR"


def _af_goal_detail(goal: Goal) -> str:
    if goal.own_goal:
        return "Own Goal"
    if goal.penalty:
        return "Penalty"
    return "Normal Goal"


def _winner(timeline: Timeline, state: MatchState) -> str:
    home, away = state.score
    if state.penalties:
        home, away = state.penalties
    if home > away:
        return "HOME_TEAM"
    if away > home:
        return "AWAY_TEAM"
    return "DRAW"


def fd_match_list(matches: list[dict], filters: dict, competition: dict | None = None) -> dict:
    days = sorted(match["utcDate"][:10] for match in matches)
    body: dict[str, Any] = {
        "filters": filters,
        "resultSet": {
            "count": len(matches),
            "competitions": ",".join(sorted({m["competition"]["code"] for m in matches})),
            "first": days[0] if days else None,
            "last": days[-1] if days else None,
            "played": sum(1 for m in matches if m["status"] == "FINISHED"),
        },
        "matches": matches,
    }
    if competition is not None:
        body["competition"] = competition
    return body


# --- API-Football v3 --------------------------------------------------------------

AF_STATUS = {
    BEFORE: ("Not Started", "NS"), FIRST_HALF: ("First Half", "1H"), HALF_TIME: ("Halftime", "HT"),
    SECOND_HALF: ("Second Half", "2H"), BREAK_BEFORE_EXTRA: ("Break Time", "BT"),
    EXTRA_FIRST: ("Extra Time", "ET"), EXTRA_BREAK: ("Break Time", "BT"),
    EXTRA_SECOND: ("Extra Time", "ET"), SHOOTOUT: ("Penalty In Progress", "P"),
}


def af_fixture(timeline: Timeline, state: MatchState, teams: TeamIds) -> dict:
    """Render one /fixtures response item with the live fields and embedded events."""
    if state.phase == ENDED:
        short = "FT"
        if timeline.penalties:
            short = "PEN"
        elif timeline.after_extra_time:
            short = "AET"
        status = {"long": "Match Finished", "short": short}
    else:
        long, short = AF_STATUS[state.phase]
        status = {"long": long, "short": short}
    status["elapsed"] = state.minute
    status["extra"] = state.stoppage

    def team(name: str) -> dict:
        return {"id": teams.af(name), "name": name, "logo": None}

    events = []
    for goal in state.goals:
        name = timeline.home if goal.side == "home" else timeline.away
        events.append({
            "time": {"elapsed": goal.minute, "extra": goal.offset},
            "team": team(name),
            "player": {"id": None, "name": goal.scorer},
            "assist": {"id": None, "name": None},
            "type": "Goal",
            "detail": _af_goal_detail(goal),
            "comments": None,
        })
    winner_home = winner_away = None
    if state.phase == ENDED:
        result = _winner(timeline, state)
        winner_home, winner_away = result == "HOME_TEAM", result == "AWAY_TEAM"
        if result == "DRAW":
            winner_home = winner_away = None
    kickoff = timeline.kickoff.astimezone(timezone.utc)
    return {
        "fixture": {
            "id": af_fixture_id(timeline),
            "referee": None,
            "timezone": "UTC",
            "date": kickoff.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "timestamp": int(kickoff.timestamp()),
            "periods": {"first": int(kickoff.timestamp()) if state.phase != BEFORE else None, "second": None},
            "venue": {"id": None, "name": timeline.ground, "city": None},
            "status": status,
        },
        "league": {"id": timeline.competition.af_id, "name": timeline.competition.name, "country": "World",
                   "logo": None, "flag": None, "season": timeline.competition.season, "round": timeline.round},
        "teams": {
            "home": {**team(timeline.home), "winner": winner_home},
            "away": {**team(timeline.away), "winner": winner_away},
        },
        "goals": _pair(state.score if state.phase != BEFORE else None),
        "score": {
            # API-Football fills the half-time score while the first half runs.
            "halftime": _pair(state.half_time if state.half_time is not None else
                              (state.score if state.phase == FIRST_HALF else None)),
            "fulltime": _pair(state.regular_time),
            "extratime": _pair(state.extra_time if state.has_extra_time else None),
            "penalty": _pair(state.penalties),
        },
        "events": events,
    }


def af_envelope(parameters: dict, response: list[dict], errors: Any = None) -> dict:
    return {
        "get": "fixtures",
        "parameters": parameters,
        "errors": errors if errors is not None else [],
        "results": len(response),
        "paging": {"current": 1, "total": 1},
        "response": response,
    }
