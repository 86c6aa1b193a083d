"""Small hand-made provider payloads and openfootball-style timelines.

They follow the shapes of the real formats closely enough to take the
same code paths as the recorded responses, and they add the cases those
lack: own goals, red cards, unknown statuses and event types, missing
names and teams.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

FD_MATCH = {
    "area": {"id": 2072, "name": "England", "code": "ENG"},
    "competition": {"id": 2021, "name": "Premier League", "code": "PL", "type": "LEAGUE"},
    "season": {"id": 1, "startDate": "2024-08-16", "endDate": "2025-05-25"},
    "id": 5001,
    "utcDate": "2024-09-01T15:00:00Z",
    "status": "IN_PLAY",
    "minute": 67,
    "injuryTime": None,
    "venue": "Home Park",
    "homeTeam": {
        "id": 1, "name": "Home City FC", "shortName": "Home City", "tla": "HCF ",
        "coach": {"id": 9, "name": "A. Coach"}, "formation": "4-3-3",
        "lineup": [{"id": 11, "name": "Keeper One", "position": "Goalkeeper", "shirtNumber": 1}],
        "bench": [{"id": 12, "name": "Sub Two", "position": "Midfield", "shirtNumber": 14}],
        "statistics": {"ball_possession": 58, "shots": 11, "shots_on_goal": 5, "corner_kicks": 4,
                       "made_up_stat": 3},
    },
    "awayTeam": {"id": 2, "name": "Away United", "shortName": "Away Utd", "tla": "AWU",
                 "statistics": {"ball_possession": 42, "shots": 6, "shots_on_goal": 2, "corner_kicks": 1}},
    "score": {"winner": None, "duration": "REGULAR",
              "fullTime": {"home": 2, "away": 1}, "halfTime": {"home": 1, "away": 0}},
    "goals": [
        {"minute": 12, "injuryTime": None, "type": "REGULAR", "team": {"id": 1, "name": "Home City FC"},
         "scorer": {"id": 100, "name": "First Scorer"}, "assist": {"id": 101, "name": "Helper"}},
        {"minute": 45, "injuryTime": 2, "type": "OWN", "team": {"id": 2, "name": "Away United"},
         "scorer": {"id": 102, "name": "Unlucky Defender"}, "assist": None},
        {"minute": 60, "injuryTime": None, "type": "PENALTY", "team": {"id": 1, "name": "Home City FC"},
         "scorer": {"id": 100, "name": "First Scorer"}, "assist": None},
    ],
    "bookings": [
        {"minute": 30, "team": {"id": 2, "name": "Away United"}, "player": {"id": 103, "name": "Hard Tackler"},
         "card": "YELLOW"},
        {"minute": 55, "team": {"id": 2, "name": "Away United"}, "player": {"id": 103, "name": "Hard Tackler"},
         "card": "YELLOW_RED"},
        {"minute": 58, "team": {"id": 1}, "player": {"id": 104, "name": "Someone"}, "card": "PURPLE"},
    ],
    "substitutions": [
        {"minute": 46, "team": {"id": 1, "name": "Home City FC"}, "playerOut": {"id": 105, "name": "Tired Legs"},
         "playerIn": {"id": 106, "name": "Fresh Legs"}},
    ],
}

AF_FIXTURE = {
    "fixture": {
        "id": 9001, "referee": None, "timezone": "UTC", "date": "2024-03-13T20:00:00+00:00",
        "timestamp": 1710360000, "venue": {"id": 1, "name": "Cup Ground", "city": "Town"},
        "status": {"long": "Match Finished", "short": "PEN", "elapsed": 120, "extra": None},
    },
    "league": {"id": 2, "name": "Cup Competition", "country": "World", "season": 2023},
    "teams": {"home": {"id": 10, "name": "Red Side"}, "away": {"id": 20, "name": "Blue Side"}},
    "goals": {"home": 1, "away": 1},
    "score": {"halftime": {"home": 0, "away": 1}, "fulltime": {"home": 1, "away": 1},
              "extratime": {"home": 0, "away": 0}, "penalty": {"home": 4, "away": 3}},
    "events": [
        {"time": {"elapsed": 20, "extra": None}, "team": {"id": 20, "name": "Blue Side"},
         "player": {"id": 1, "name": "Blue Striker"}, "assist": {"id": None, "name": None},
         "type": "Goal", "detail": "Normal Goal", "comments": None},
        {"time": {"elapsed": 35, "extra": None}, "team": {"id": 10, "name": "Red Side"},
         "player": {"id": None, "name": None}, "assist": {"id": None, "name": None},
         "type": "Card", "detail": "Yellow Card", "comments": None},
        {"time": {"elapsed": 61, "extra": None}, "team": {"id": 10, "name": "Red Side"},
         "player": {"id": 2, "name": "Going Off"}, "assist": {"id": 3, "name": "Coming On"},
         "type": "subst", "detail": "Substitution 1", "comments": None},
        {"time": {"elapsed": 88, "extra": None}, "team": {"id": 10, "name": "Red Side"},
         "player": {"id": 3, "name": "Coming On"}, "assist": {"id": None, "name": None},
         "type": "Goal", "detail": "Penalty", "comments": None},
        {"time": {"elapsed": 90, "extra": 3}, "team": {"id": 20, "name": "Blue Side"},
         "player": {"id": 4, "name": "Blue Hothead"}, "assist": {"id": None, "name": None},
         "type": "Card", "detail": "Red Card", "comments": None},
        {"time": {"elapsed": 100, "extra": None}, "team": {"id": 20, "name": "Blue Side"},
         "player": {"id": 5, "name": "Blue Taker"}, "assist": {"id": None, "name": None},
         "type": "Goal", "detail": "Missed Penalty", "comments": None},
        {"time": {"elapsed": 104, "extra": None}, "team": {"id": 20, "name": "Blue Side"},
         "player": {"id": 6, "name": "Reviewed"}, "assist": {"id": None, "name": None},
         "type": "Var", "detail": "Goal cancelled", "comments": None},
        {"time": {"elapsed": 110, "extra": None}, "team": {"id": 99, "name": "Nobody"},
         "player": {"id": 7, "name": "Ghost"}, "assist": {"id": None, "name": None},
         "type": "Goal", "detail": "Normal Goal", "comments": None},
        {"time": {"elapsed": 112, "extra": None}, "team": {"id": 10, "name": "Red Side"},
         "player": {"id": 8, "name": "Juggler"}, "assist": {"id": None, "name": None},
         "type": "Trick", "detail": "Rainbow", "comments": None},
        {"time": {"elapsed": 120, "extra": 2}, "team": {"id": 20, "name": "Blue Side"},
         "player": {"id": 5, "name": "Blue Taker"}, "assist": {"id": None, "name": None},
         "type": "Goal", "detail": "Missed Penalty", "comments": "Penalty Shootout"},
        {"time": {"elapsed": 120, "extra": 1}, "team": {"id": 10, "name": "Red Side"},
         "player": {"id": 3, "name": "Coming On"}, "assist": {"id": None, "name": None},
         "type": "Goal", "detail": "Penalty", "comments": "Penalty Shootout"},
    ],
    "lineups": [
        {"team": {"id": 10, "name": "Red Side"}, "formation": "4-4-2", "coach": {"id": 1, "name": "Red Coach"},
         "startXI": [{"player": {"id": 2, "name": "Going Off", "number": 9, "pos": "F", "grid": "4:1"}}],
         "substitutes": [{"player": {"id": 3, "name": "Coming On", "number": 19, "pos": "F", "grid": None}}]},
    ],
    "statistics": [
        {"team": {"id": 10, "name": "Red Side"}, "statistics": [
            {"type": "Ball Possession", "value": "61%"}, {"type": "Total Shots", "value": 14},
            {"type": "expected_goals", "value": "1.84"}, {"type": "Offsides", "value": None},
            {"type": "Mood", "value": "great"}]},
        {"team": {"id": 20, "name": "Blue Side"}, "statistics": [
            {"type": "Ball Possession", "value": "39%"}, {"type": "Total Shots", "value": 7}]},
    ],
}


def fd_payload(*matches: dict) -> dict:
    chosen = list(matches) or [copy.deepcopy(FD_MATCH)]
    return {"filters": {}, "resultSet": {"count": len(chosen)}, "matches": chosen}


def af_payload(*fixtures: dict) -> dict:
    chosen = list(fixtures) or [copy.deepcopy(AF_FIXTURE)]
    return {"get": "fixtures", "parameters": {"live": "all"}, "errors": [], "results": len(chosen),
            "paging": {"current": 1, "total": 1}, "response": chosen}


# An openfootball-style season with three matches on one day: two at the
# same time (one with goals in stoppage time and an own goal) and one
# that goes to extra time and penalties.
TIMELINE = {
    "name": "Test Cup 2030",
    "matches": [
        {"round": "Matchday 1", "date": "2030-06-01", "time": "15:00 UTC+0", "team1": "Alpha", "team2": "Beta",
         "score": {"ft": [2, 1], "ht": [1, 1]},
         "goals1": [{"name": "A. One", "minute": 10}, {"name": "A. Two", "minute": 90, "offset": 3}],
         "goals2": [{"name": "B. Own", "minute": 45, "offset": 1, "owngoal": True}],
         "group": "Group A", "ground": "Alpha Park"},
        {"round": "Matchday 1", "date": "2030-06-01", "time": "15:00 UTC+0", "team1": "Gamma", "team2": "Delta",
         "score": {"ft": [0, 0]}, "group": "Group A", "ground": "Gamma Field"},
        {"round": "Final", "date": "2030-06-01", "time": "19:00 UTC+2", "team1": "Epsilon", "team2": "Zeta",
         "score": {"ft": [1, 1], "ht": [0, 0], "et": [2, 2], "p": [4, 3]},
         "goals1": [{"name": "E. Pen", "minute": 70, "penalty": True}, {"name": "E. Late", "minute": 115}],
         "goals2": [{"name": "Z. Quick", "minute": 88}, {"name": "Z. Later", "minute": 120, "offset": 1}],
         "ground": "Final Arena"},
    ],
}


def write_timeline(directory: Path, data: dict | None = None, name: str = "testcup-2030.json") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(data or TIMELINE))
    return path
