"""The canonical match document that ingest publishes, whatever the provider.

``docs/match-document.md`` describes every field. This module contains
the closed vocabularies (statuses, event types), the validator, the
stable event ids and the per-competition summary document.

The shape extends the one ``ingest/simulator.py`` publishes: the same
top-level keys (id, competition, status, minute, teams, score, events,
lineups, statistics) with optional extra keys, so the scoreboard page and
clients read both the same way.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any, Iterable

MATCH_CHANNEL_PREFIX = "sport-livescore"
COMPETITION_CHANNEL_PREFIX = "sport-livescore-competition"

# Canonical statuses. docs/match-document.md gives the meaning of each.
SCHEDULED = "SCHEDULED"
IN_PLAY = "IN_PLAY"
PAUSED = "PAUSED"
EXTRA_TIME = "EXTRA_TIME"
PENALTY_SHOOTOUT = "PENALTY_SHOOTOUT"
FINISHED = "FINISHED"
SUSPENDED = "SUSPENDED"
POSTPONED = "POSTPONED"
CANCELLED = "CANCELLED"
ABANDONED = "ABANDONED"
AWARDED = "AWARDED"

STATUSES = (
    SCHEDULED, IN_PLAY, PAUSED, EXTRA_TIME, PENALTY_SHOOTOUT, FINISHED,
    SUSPENDED, POSTPONED, CANCELLED, ABANDONED, AWARDED,
)
# Statuses of a match that has kicked off and not ended: the competition
# channel lists these.
LIVE_STATUSES = frozenset({IN_PLAY, PAUSED, EXTRA_TIME, PENALTY_SHOOTOUT, SUSPENDED})
# Statuses after which a provider's data for the match no longer changes.
FINAL_STATUSES = frozenset({FINISHED, POSTPONED, CANCELLED, ABANDONED, AWARDED})

EVENT_TYPES = (
    "goal", "missed_penalty", "yellow_card", "second_yellow_card", "red_card",
    "substitution", "shootout_kick",
)
GOAL_DETAILS = ("normal", "penalty", "own_goal")
SIDES = ("home", "away")

TOP_LEVEL_KEYS = (
    "id", "competition", "status", "minute", "teams", "score", "events",
    "lineups", "statistics",
)
OPTIONAL_TOP_LEVEL_KEYS = ("stoppage", "kickoff", "provider", "venue")
SCORE_PERIOD_KEYS = ("half_time", "regular_time", "extra_time", "full_time", "penalties")
EVENT_REQUIRED_KEYS = ("id", "type", "minute", "team")
EVENT_OPTIONAL_KEYS = ("stoppage", "player", "detail", "assist", "player_out", "scored", "order")
TEAM_OPTIONAL_KEYS = ("short", "formation", "coach")
PLAYER_KEYS = ("name", "number", "position", "starter")


class DocumentInvalid(ValueError):
    """A match document that breaks the canonical schema.

    ``problems`` lists every broken rule as "path: reason".
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"invalid match document: {shown}{more}")


def match_channel(match_id: str) -> str:
    return f"{MATCH_CHANNEL_PREFIX}/{match_id}"


def competition_channel(code: str) -> str:
    return f"{COMPETITION_CHANNEL_PREFIX}/{code}"


# --- validation ---------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_pair(problems: list[str], path: str, value: Any, allow_none: bool) -> None:
    """Check a {"home": int, "away": int} score pair."""
    if value is None and allow_none:
        return
    if not isinstance(value, dict) or set(value) != {"home", "away"}:
        problems.append(f"{path}: must be an object with exactly home and away")
        return
    for side in SIDES:
        if not _is_int(value[side]) or value[side] < 0:
            problems.append(f"{path}.{side}: must be an integer >= 0, got {value[side]!r}")


def _check_unknown_keys(problems: list[str], path: str, value: dict, allowed: Iterable[str]) -> None:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        problems.append(f"{path}: unknown keys {unknown}")


def _check_team(problems: list[str], path: str, team: Any) -> None:
    if not isinstance(team, dict):
        problems.append(f"{path}: must be an object")
        return
    _check_unknown_keys(problems, path, team, ("name", *TEAM_OPTIONAL_KEYS))
    if not isinstance(team.get("name"), str) or not team["name"].strip():
        problems.append(f"{path}.name: must be a non-empty string")
    for key in TEAM_OPTIONAL_KEYS:
        if key in team and not isinstance(team[key], str):
            problems.append(f"{path}.{key}: must be a string when present")


def _check_event(problems: list[str], path: str, event: Any) -> None:
    if not isinstance(event, dict):
        problems.append(f"{path}: must be an object")
        return
    _check_unknown_keys(problems, path, event, EVENT_REQUIRED_KEYS + EVENT_OPTIONAL_KEYS)
    for key in EVENT_REQUIRED_KEYS:
        if key not in event:
            problems.append(f"{path}.{key}: missing")

    if not isinstance(event.get("id"), str) or not event.get("id"):
        problems.append(f"{path}.id: must be a non-empty string")
    if event.get("type") not in EVENT_TYPES:
        problems.append(f"{path}.type: must be one of {', '.join(EVENT_TYPES)}, got {event.get('type')!r}")

    minute = event.get("minute")
    # A shoot-out kick has no match minute; every other event has one.
    if event.get("type") == "shootout_kick":
        if minute is not None:
            problems.append(f"{path}.minute: must be null for a shootout_kick")
    elif not _is_int(minute) or minute < 0:
        problems.append(f"{path}.minute: must be an integer >= 0, got {minute!r}")
    if "stoppage" in event and (not _is_int(event["stoppage"]) or event["stoppage"] < 0):
        problems.append(f"{path}.stoppage: must be an integer >= 0 when present")
    if event.get("team") not in SIDES:
        problems.append(f"{path}.team: must be home or away, got {event.get('team')!r}")

    for key in ("player", "assist", "player_out", "detail"):
        if key in event and not isinstance(event[key], str):
            problems.append(f"{path}.{key}: must be a string when present")
    if event.get("type") == "goal" and event.get("detail", "normal") not in GOAL_DETAILS:
        problems.append(f"{path}.detail: a goal's detail must be one of {', '.join(GOAL_DETAILS)}")
    if "scored" in event and not isinstance(event["scored"], bool):
        problems.append(f"{path}.scored: must be true or false when present")
    if "order" in event and (not _is_int(event["order"]) or event["order"] < 1):
        problems.append(f"{path}.order: must be an integer >= 1 when present")


def _check_player(problems: list[str], path: str, player: Any) -> None:
    if not isinstance(player, dict):
        problems.append(f"{path}: must be an object")
        return
    _check_unknown_keys(problems, path, player, PLAYER_KEYS)
    if not isinstance(player.get("name"), str):
        problems.append(f"{path}.name: must be a string")
    if "number" in player and not _is_int(player["number"]):
        problems.append(f"{path}.number: must be an integer when present")
    if "position" in player and not isinstance(player["position"], str):
        problems.append(f"{path}.position: must be a string when present")
    if "starter" in player and not isinstance(player["starter"], bool):
        problems.append(f"{path}.starter: must be true or false when present")


def match_document_problems(document: Any) -> list[str]:
    """Return every way ``document`` breaks the canonical schema (empty when valid)."""
    problems: list[str] = []
    if not isinstance(document, dict):
        return ["document: must be an object"]
    for key in TOP_LEVEL_KEYS:
        if key not in document:
            problems.append(f"{key}: missing")
    _check_unknown_keys(problems, "document", document, TOP_LEVEL_KEYS + OPTIONAL_TOP_LEVEL_KEYS)
    if problems:
        return problems

    if not isinstance(document["id"], str) or not document["id"]:
        problems.append("id: must be a non-empty string")

    competition = document["competition"]
    if not isinstance(competition, dict) or set(competition) != {"code", "name"}:
        problems.append("competition: must be an object with exactly code and name")
    else:
        for key in ("code", "name"):
            if not isinstance(competition[key], str) or not competition[key]:
                problems.append(f"competition.{key}: must be a non-empty string")

    if document["status"] not in STATUSES:
        problems.append(f"status: must be one of {', '.join(STATUSES)}, got {document['status']!r}")
    minute = document["minute"]
    if minute is not None and (not _is_int(minute) or minute < 0):
        problems.append(f"minute: must be null or an integer >= 0, got {minute!r}")
    if "stoppage" in document and (not _is_int(document["stoppage"]) or document["stoppage"] < 0):
        problems.append("stoppage: must be an integer >= 0 when present")
    for key in ("kickoff", "provider", "venue"):
        if key in document and not isinstance(document[key], str):
            problems.append(f"{key}: must be a string when present")

    teams = document["teams"]
    if not isinstance(teams, dict) or set(teams) != set(SIDES):
        problems.append("teams: must be an object with exactly home and away")
    else:
        for side in SIDES:
            _check_team(problems, f"teams.{side}", teams[side])

    score = document["score"]
    if not isinstance(score, dict):
        problems.append("score: must be an object")
    else:
        _check_unknown_keys(problems, "score", score, ("home", "away", *SCORE_PERIOD_KEYS))
        for side in SIDES:
            if not _is_int(score.get(side)) or score[side] < 0:
                problems.append(f"score.{side}: must be an integer >= 0, got {score.get(side)!r}")
        if "half_time" not in score:
            problems.append("score.half_time: missing (null until half-time)")
        for key in SCORE_PERIOD_KEYS:
            if key in score:
                _check_pair(problems, f"score.{key}", score[key], allow_none=True)

    events = document["events"]
    if not isinstance(events, list):
        problems.append("events: must be a list")
    else:
        for index, event in enumerate(events):
            _check_event(problems, f"events[{index}]", event)
        ids = [event.get("id") for event in events if isinstance(event, dict)]
        duplicates = sorted(str(i) for i, count in Counter(ids).items() if count > 1)
        if duplicates:
            problems.append(f"events: duplicate ids {duplicates}")

    lineups = document["lineups"]
    if not isinstance(lineups, dict) or not set(lineups) <= set(SIDES):
        problems.append("lineups: must be an object with home and/or away lists")
    else:
        for side, players in lineups.items():
            if not isinstance(players, list):
                problems.append(f"lineups.{side}: must be a list")
                continue
            for index, player in enumerate(players):
                _check_player(problems, f"lineups.{side}[{index}]", player)

    statistics = document["statistics"]
    if not isinstance(statistics, dict):
        problems.append("statistics: must be an object")
    else:
        for name, pair in statistics.items():
            if not isinstance(pair, dict) or set(pair) != set(SIDES):
                problems.append(f"statistics.{name}: must be an object with exactly home and away")
                continue
            for side in SIDES:
                if pair[side] is not None and not _is_number(pair[side]):
                    problems.append(f"statistics.{name}.{side}: must be a number or null")
    return problems


def validate_match_document(document: Any) -> dict:
    """Return ``document`` unchanged, or raise DocumentInvalid listing every problem."""
    problems = match_document_problems(document)
    if problems:
        raise DocumentInvalid(problems)
    return document


# --- stable event ids ---------------------------------------------------------

_ID_UNSAFE = re.compile(r"[^a-z0-9]+")


def normalise_name(name: str) -> str:
    """Lower-case ASCII letters and digits of ``name``: "Álvaro Morata" -> "alvaro-morata"."""
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return _ID_UNSAFE.sub("-", ascii_only).strip("-")


def event_sort_key(event: dict) -> tuple:
    """Order events by match time; shoot-out kicks come last, in kick order."""
    if event.get("type") == "shootout_kick":
        return (1, 0, 0, event.get("order") or 0)
    return (0, event.get("minute") or 0, event.get("stoppage") or 0, 0)


def assign_event_ids(events: list[dict]) -> list[dict]:
    """Sort ``events`` by match time and give each an id built from its facts.

    The id is type, side and minute (with stoppage, as "45+2") plus an
    ordinal among events that share them: ``goal-home-45+2-1``. Shoot-out
    kicks use their kick order instead of the minute. The player's name is
    left out on purpose. Providers spell names differently and often fill
    them in a poll or two after the event, and the id must not change when
    the name arrives or when the fallback provider takes over. The sort is
    stable, so events of one minute keep the provider's order, and a new
    event at a later minute is an append. ``reconcile_event_ids`` then
    keeps ids stable when a provider corrects an event's minute.
    """
    ordered = sorted(events, key=event_sort_key)
    seen: Counter = Counter()
    result = []
    for event in ordered:
        if event["type"] == "shootout_kick":
            time_part = f"k{event.get('order', 0)}"
        else:
            time_part = str(event["minute"])
            if event.get("stoppage"):
                time_part += f"+{event['stoppage']}"
        key = f"{event['type']}-{event['team']}-{time_part}"
        seen[key] += 1
        result.append({**event, "id": f"{key}-{seen[key]}"})
    return result


def _total_minute(event: dict) -> int:
    return (event.get("minute") or 0) + (event.get("stoppage") or 0)


def _same_player(first: dict, second: dict) -> bool | None:
    """True or False when both name a player; None when either does not."""
    if not first.get("player") or not second.get("player"):
        return None
    return normalise_name(first["player"]) == normalise_name(second["player"])


# How far apart two reports of one event may be, in minutes: with the same
# player named, and when one report has no player yet.
SAME_PLAYER_MINUTES = 5
UNNAMED_MINUTES = 2


def reconcile_event_ids(previous: list[dict] | None, events: list[dict]) -> list[dict]:
    """Keep the ids that events had in the previously published document.

    A fact-based id changes when a provider corrects an event's minute (a
    card moved from 37 to 35 between two real polls) or when the fallback
    provider reports it a minute apart. So each event, in three passes,
    takes over the id of a previous event of the same type and side:

    1. the previous event with its own id, unless both name different players;
    2. else one naming the same player within SAME_PLAYER_MINUTES, or one
       within UNNAMED_MINUTES where one of the two names no player;
    3. else one at the very same minute: a corrected scorer.

    Events that match nothing are new. A new event's fact-based id gets a
    higher ordinal if a previous event had it, so ids stay unique and an
    event that matched nothing never takes over another event's id.
    Shoot-out kicks are matched by id only.
    """
    if not previous:
        return events
    previous_by_id = {event["id"]: event for event in previous if isinstance(event, dict) and "id" in event}
    used: set[str] = set()
    result: list[dict | None] = [None] * len(events)

    def comparable(earlier: dict, event: dict) -> bool:
        return (earlier["id"] not in used and earlier.get("type") == event["type"]
                and earlier.get("team") == event["team"])

    for index, event in enumerate(events):
        earlier = previous_by_id.get(event["id"])
        if earlier is not None and comparable(earlier, event) and _same_player(earlier, event) is not False:
            result[index] = event
            used.add(event["id"])

    def claim_closest(accept) -> None:
        for index, event in enumerate(events):
            if result[index] is not None or event["type"] == "shootout_kick":
                continue
            best, best_distance = None, None
            for earlier in previous_by_id.values():
                if not comparable(earlier, event):
                    continue
                distance = abs(_total_minute(earlier) - _total_minute(event))
                if accept(earlier, event, distance) and (best_distance is None or distance < best_distance):
                    best, best_distance = earlier, distance
            if best is not None:
                result[index] = {**event, "id": best["id"]}
                used.add(best["id"])

    def nearby(earlier: dict, event: dict, distance: int) -> bool:
        same = _same_player(earlier, event)
        return (same is True and distance <= SAME_PLAYER_MINUTES) or (same is None and distance <= UNNAMED_MINUTES)

    claim_closest(nearby)
    claim_closest(lambda earlier, event, distance: distance == 0 and _total_minute(event) > 0)

    taken = set(previous_by_id) | used
    for index, event in enumerate(events):
        if result[index] is not None:
            continue
        base, _, number = event["id"].rpartition("-")
        ordinal = int(number) if number.isdigit() else 1
        candidate = event["id"]
        while candidate in taken:
            ordinal += 1
            candidate = f"{base}-{ordinal}"
        result[index] = {**event, "id": candidate}
        taken.add(candidate)
    return result  # type: ignore[return-value]


# --- building documents -------------------------------------------------------


def empty_match_document(match_id: str, competition_code: str, competition_name: str) -> dict:
    """Return a document with every required key at its "nothing known yet" value."""
    return {
        "id": match_id,
        "competition": {"code": competition_code, "name": competition_name},
        "status": SCHEDULED,
        "minute": None,
        "teams": {"home": {"name": "Home"}, "away": {"name": "Away"}},
        "score": {"home": 0, "away": 0, "half_time": None},
        "events": [],
        "lineups": {"home": [], "away": []},
        "statistics": {},
    }


def competition_entry(document: dict) -> dict:
    """Return the summary of one match that the competition channel lists."""
    entry = {
        "id": document["id"],
        "status": document["status"],
        "minute": document["minute"],
        "teams": {
            side: {key: document["teams"][side][key]
                   for key in ("name", "short") if key in document["teams"][side]}
            for side in SIDES
        },
        "score": {"home": document["score"]["home"], "away": document["score"]["away"]},
    }
    if document.get("stoppage"):
        entry["stoppage"] = document["stoppage"]
    if document.get("kickoff"):
        entry["kickoff"] = document["kickoff"]
    return entry


def competition_document(code: str, name: str, entries: Iterable[dict]) -> dict:
    """Build the competition's document: its live matches ordered by kick-off, then id."""
    live = [entry for entry in entries if entry["status"] in LIVE_STATUSES]
    live.sort(key=lambda entry: (entry.get("kickoff") or "", entry["id"]))
    return {"code": code, "name": name, "matches": live}
