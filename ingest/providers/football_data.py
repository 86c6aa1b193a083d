"""Adapter for the football-data.org API v4.

Requests carry the key in ``X-Auth-Token``. Match resources are read as
the v4 documentation describes them, including the fields only paid tiers
return: ``minute``, ``injuryTime``, ``goals``, ``bookings``,
``substitutions``, ``penalties``, team ``lineup``, ``bench`` and
``statistics``. The free tier leaves them out, so its documents have no
events.

Scores, as football-data.org's v4 page "Dealing with scores" describes
them and recorded Champions League responses show: ``fullTime`` is the
running score and, after a shoot-out, includes the shoot-out goals.
``extraTime`` and ``penalties`` count only the goals of their period, and
``regularTime`` is often null even when the match went to extra time. The
canonical score is derived from those rules.
"""

from __future__ import annotations

from typing import Any, Mapping

from ingest.document import (
    ABANDONED, AWARDED, CANCELLED, EXTRA_TIME, FINISHED, IN_PLAY, PAUSED,
    PENALTY_SHOOTOUT, POSTPONED, SCHEDULED, SUSPENDED,
)
from ingest.providers.base import (
    Adapter, OptionError, ProviderError, ProviderMatch, Request, as_int, as_number,
    as_text, dig, params_table, parse_minute, score_pair, string_list, subtract, utc_iso,
)

STATUSES = {
    "SCHEDULED": SCHEDULED, "TIMED": SCHEDULED, "IN_PLAY": IN_PLAY, "LIVE": IN_PLAY,
    "PAUSED": PAUSED, "EXTRA_TIME": EXTRA_TIME, "PENALTY_SHOOTOUT": PENALTY_SHOOTOUT,
    "FINISHED": FINISHED, "SUSPENDED": SUSPENDED, "POSTPONED": POSTPONED,
    "CANCELLED": CANCELLED, "CANCELED": CANCELLED, "ABANDONED": ABANDONED, "AWARDED": AWARDED,
}
GOAL_TYPES = {"REGULAR": "normal", "PENALTY": "penalty", "OWN": "own_goal"}
CARDS = {"YELLOW": "yellow_card", "YELLOW_RED": "second_yellow_card", "RED": "red_card"}
TEAM_STATISTICS = {
    "ball_possession": "possession", "shots": "shots", "shots_on_goal": "shots_on_target",
    "shots_off_goal": "shots_off_target", "corner_kicks": "corners", "fouls": "fouls",
    "offsides": "offsides", "saves": "saves", "yellow_cards": "yellow_cards",
    "yellow_red_cards": "second_yellow_cards", "red_cards": "red_cards",
    "free_kicks": "free_kicks", "goal_kicks": "goal_kicks", "throw_ins": "throw_ins",
}
ENDPOINTS = ("matches", "competition")
# v4 accepts a comma-separated ids filter on /v4/matches; batches stay small.
IDS_PER_REQUEST = 20


class FootballDataAdapter(Adapter):
    type_name = "football-data-v4"
    auth_header = "X-Auth-Token"

    @classmethod
    def check_source_options(cls, options: Mapping[str, Any], path: str) -> None:
        for key in options:
            if key not in ("competitions", "endpoint", "params"):
                raise OptionError(f"{path}.{key}", f"unknown option for type {cls.type_name}; "
                                  "use competitions, endpoint or params")
        endpoint = options.get("endpoint", "matches")
        if endpoint not in ENDPOINTS:
            raise OptionError(f"{path}.endpoint", f"must be one of {', '.join(ENDPOINTS)}", endpoint)
        competitions = string_list(options.get("competitions", []), f"{path}.competitions")
        if endpoint == "competition" and not competitions:
            raise OptionError(f"{path}.competitions", "must name at least one competition "
                              "when endpoint is \"competition\"")
        params_table(options.get("params", {}), f"{path}.params")

    def list_requests(self) -> list[Request]:
        competitions = [str(code) for code in self.source_options.get("competitions", [])]
        params = params_table(self.source_options.get("params", {}), "params")
        if self.source_options.get("endpoint", "matches") == "competition":
            return [Request(f"/v4/competitions/{code}/matches", params) for code in competitions]
        if competitions:
            params = {"competitions": ",".join(competitions), **params}
        # Without date filters /v4/matches returns the provider's "today",
        # scheduled, live and finished matches alike.
        return [Request("/v4/matches", params)]

    def by_ids_requests(self, provider_ids: list[str]) -> list[Request]:
        return [
            Request("/v4/matches", {"ids": ",".join(provider_ids[start:start + IDS_PER_REQUEST])})
            for start in range(0, len(provider_ids), IDS_PER_REQUEST)
        ]

    def check_errors(self, payload: Any) -> None:
        if isinstance(payload, dict) and "errorCode" in payload and "matches" not in payload:
            raise ProviderError(f"football-data error {payload.get('errorCode')}: {payload.get('message')}")

    def parse(self, payload: Any) -> list[ProviderMatch]:
        if isinstance(payload, dict) and isinstance(payload.get("matches"), list):
            items = payload["matches"]
        elif isinstance(payload, dict) and "id" in payload and "homeTeam" in payload:
            items = [payload]  # GET /v4/matches/{id} returns one match resource
        else:
            raise ProviderError("football-data response has neither a matches list nor a match")
        matches = []
        for item in items:
            match = self._parse_match(item)
            if match is not None:
                matches.append(match)
        return matches

    def _parse_match(self, item: Any) -> ProviderMatch | None:
        provider_id = as_text(dig(item, "id"))
        if provider_id is None:
            self.fields.missing("matches[].id", "match skipped")
            return None
        raw_status = as_text(dig(item, "status"))
        status = STATUSES.get(raw_status or "")
        minute, stoppage = parse_minute(dig(item, "minute"))
        if stoppage is None:
            stoppage = as_int(dig(item, "injuryTime"))
        if status is None:
            self.fields.missing("matches[].status", f"unknown value {raw_status!r}")
            status = IN_PLAY if minute is not None else SCHEDULED

        teams = {}
        for side, key in (("home", "homeTeam"), ("away", "awayTeam")):
            teams[side] = self._team(dig(item, key), key)
        document: dict[str, Any] = {
            "status": status,
            "minute": minute if status != SCHEDULED else None,
            "teams": teams,
            "score": self._score(dig(item, "score"), status),
            "events": self._events(item),
            "lineups": {side: self._lineup(dig(item, key)) for side, key in
                        (("home", "homeTeam"), ("away", "awayTeam"))},
            "statistics": self._statistics(item),
        }
        if stoppage and status != SCHEDULED:
            document["stoppage"] = stoppage
        kickoff = utc_iso(dig(item, "utcDate"))
        if kickoff:
            document["kickoff"] = kickoff
        venue = as_text(dig(item, "venue"))
        if venue:
            document["venue"] = venue

        competition = dig(item, "competition") or {}
        keys = tuple(key for key in (as_text(dig(competition, "code")), as_text(dig(competition, "id")))
                     if key)
        return ProviderMatch(
            provider_id=provider_id,
            competition_keys=keys,
            competition_name=as_text(dig(competition, "name")),
            competition_code=as_text(dig(competition, "code")),
            document=document,
        )

    def _team(self, team: Any, key: str) -> dict:
        name = as_text(dig(team, "name")) or as_text(dig(team, "shortName"))
        if name is None:
            # Knockout fixtures list their teams as null until they are known.
            self.fields.missing(f"matches[].{key}.name", "named TBD")
            name = "TBD"
        result = {"name": name}
        short = as_text(dig(team, "tla"))
        if short:
            result["short"] = short
        formation = as_text(dig(team, "formation"))
        if formation:
            result["formation"] = formation
        coach = as_text(dig(team, "coach", "name"))
        if coach:
            result["coach"] = coach
        return result

    def _score(self, score: Any, status: str) -> dict:
        running = score_pair(dig(score, "fullTime", "home"), dig(score, "fullTime", "away"))
        penalties = score_pair(dig(score, "penalties", "home"), dig(score, "penalties", "away"))
        extra_time = score_pair(dig(score, "extraTime", "home"), dig(score, "extraTime", "away"))
        in_play = subtract(running, penalties) or {"home": 0, "away": 0}
        result: dict[str, Any] = {
            "home": in_play["home"],
            "away": in_play["away"],
            "half_time": score_pair(dig(score, "halfTime", "home"), dig(score, "halfTime", "away")),
        }
        regular = score_pair(dig(score, "regularTime", "home"), dig(score, "regularTime", "away"))
        if regular is None and extra_time is not None:
            regular = subtract(in_play, extra_time)
        if regular is None and status == FINISHED and dig(score, "duration") in (None, "REGULAR"):
            regular = dict(in_play)
        if regular is not None:
            result["regular_time"] = regular
        if extra_time is not None:
            result["extra_time"] = extra_time
        if penalties is not None:
            result["penalties"] = penalties
        if status == FINISHED:
            result["full_time"] = dict(in_play)
        return result

    def _side(self, item: Any, team: Any, path: str) -> str | None:
        team_id = dig(team, "id")
        for side, key in (("home", "homeTeam"), ("away", "awayTeam")):
            if team_id is not None and team_id == dig(item, key, "id"):
                return side
        name = as_text(dig(team, "name"))
        for side, key in (("home", "homeTeam"), ("away", "awayTeam")):
            if name is not None and name == as_text(dig(item, key, "name")):
                return side
        self.fields.missing(path, "team matches neither side; event skipped")
        return None

    def _timed_event(self, item: Any, raw: Any, kind: str, path: str) -> dict | None:
        minute, stoppage = parse_minute(dig(raw, "minute"))
        if minute is None:
            self.fields.missing(f"{path}.minute", "event skipped")
            return None
        side = self._side(item, dig(raw, "team"), f"{path}.team")
        if side is None:
            return None
        event: dict[str, Any] = {"type": kind, "minute": minute, "team": side}
        stoppage = stoppage if stoppage is not None else as_int(dig(raw, "injuryTime"))
        if stoppage:
            event["stoppage"] = stoppage
        return event

    def _events(self, item: Any) -> list[dict]:
        events = []
        for raw in dig(item, "goals") or []:
            event = self._timed_event(item, raw, "goal", "matches[].goals[]")
            if event is None:
                continue
            raw_type = as_text(dig(raw, "type")) or "REGULAR"
            detail = GOAL_TYPES.get(raw_type)
            if detail is None:
                self.fields.missing("matches[].goals[].type", f"unknown value {raw_type!r}")
                detail = "normal"
            event["detail"] = detail
            _put_name(event, "player", dig(raw, "scorer", "name"))
            _put_name(event, "assist", dig(raw, "assist", "name"))
            events.append(event)
        for raw in dig(item, "bookings") or []:
            raw_card = as_text(dig(raw, "card"))
            kind = CARDS.get(raw_card or "")
            if kind is None:
                self.fields.missing("matches[].bookings[].card", f"unknown value {raw_card!r}")
                continue
            event = self._timed_event(item, raw, kind, "matches[].bookings[]")
            if event is None:
                continue
            _put_name(event, "player", dig(raw, "player", "name"))
            events.append(event)
        for raw in dig(item, "substitutions") or []:
            event = self._timed_event(item, raw, "substitution", "matches[].substitutions[]")
            if event is None:
                continue
            _put_name(event, "player", dig(raw, "playerIn", "name"))
            _put_name(event, "player_out", dig(raw, "playerOut", "name"))
            events.append(event)
        for order, raw in enumerate(dig(item, "penalties") or [], start=1):
            side = self._side(item, dig(raw, "team"), "matches[].penalties[].team")
            if side is None:
                continue
            event = {"type": "shootout_kick", "minute": None, "team": side, "order": order}
            scored = dig(raw, "scored")
            if isinstance(scored, bool):
                event["scored"] = scored
            _put_name(event, "player", dig(raw, "player", "name"))
            events.append(event)
        return events

    def _lineup(self, team: Any) -> list[dict]:
        players = []
        for group, starter in (("lineup", True), ("bench", False)):
            for raw in dig(team, group) or []:
                name = as_text(dig(raw, "name"))
                if name is None:
                    self.fields.missing(f"matches[].homeTeam.{group}[].name", "player skipped")
                    continue
                player: dict[str, Any] = {"name": name, "starter": starter}
                number = as_int(dig(raw, "shirtNumber"))
                if number is not None:
                    player["number"] = number
                position = as_text(dig(raw, "position"))
                if position:
                    player["position"] = position
                players.append(player)
        return players

    def _statistics(self, item: Any) -> dict:
        statistics: dict[str, dict] = {}
        for side, key in (("home", "homeTeam"), ("away", "awayTeam")):
            raw = dig(item, key, "statistics")
            if not isinstance(raw, dict):
                continue
            for name, value in raw.items():
                canonical = TEAM_STATISTICS.get(name)
                if canonical is None:
                    self.fields.missing(f"matches[].{key}.statistics.{name}", "unknown statistic")
                    continue
                statistics.setdefault(canonical, {"home": None, "away": None})[side] = as_number(value)
        return statistics


def _put_name(event: dict, key: str, value: Any) -> None:
    text = as_text(value)
    if text:
        event[key] = text
