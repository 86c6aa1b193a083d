"""Adapter for the API-Football v3 format (api-sports.io).

Requests carry the key in ``x-apisports-key``. A poll reads
``GET /fixtures?live=all``, ``live=ID-ID`` for some leagues, or any
``/fixtures`` filter from the configuration. Fixtures that drop out of
the live list are fetched once more with ``/fixtures?ids=...`` for their
final state.

Format facts the adapter relies on, checked against recorded responses:

- ``goals`` is the running score.
- ``score.halftime`` is already filled during the first half, so it only
  counts once the first half is over.
- ``score.fulltime`` is the score after 90 minutes, and
  ``score.extratime`` contains the extra-time goals alone.
- In a ``subst`` event ``player`` is the player going off and ``assist``
  the one coming on.
- Shoot-out kicks are ``Goal`` events with ``comments`` "Penalty
  Shootout", detail "Penalty" or "Missed Penalty", and their kick order
  in ``time.extra``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from ingest.document import (
    ABANDONED, AWARDED, CANCELLED, EXTRA_TIME, FINISHED, IN_PLAY, PAUSED,
    PENALTY_SHOOTOUT, POSTPONED, SCHEDULED, SUSPENDED,
)
from ingest.providers.base import (
    Adapter, OptionError, ProviderError, ProviderMatch, ProviderRateLimited, Request,
    as_int, as_number, as_text, dig, params_table, score_pair, string_list, utc_iso,
)

STATUSES = {
    "TBD": SCHEDULED, "NS": SCHEDULED, "1H": IN_PLAY, "2H": IN_PLAY, "LIVE": IN_PLAY,
    "HT": PAUSED, "BT": PAUSED, "ET": EXTRA_TIME, "P": PENALTY_SHOOTOUT,
    "SUSP": SUSPENDED, "INT": SUSPENDED, "FT": FINISHED, "AET": FINISHED, "PEN": FINISHED,
    "PST": POSTPONED, "CANC": CANCELLED, "ABD": ABANDONED, "AWD": AWARDED, "WO": AWARDED,
}
# Statuses in which score.halftime is not yet the half-time score.
BEFORE_HALF_TIME = {"TBD", "NS", "1H", "PST", "CANC"}
GOAL_DETAILS = {"normal goal": "normal", "penalty": "penalty", "own goal": "own_goal"}
CARDS = {"yellow card": "yellow_card", "second yellow card": "second_yellow_card",
         "red card": "red_card"}
STATISTICS = {
    "ball possession": "possession", "total shots": "shots", "shots on goal": "shots_on_target",
    "shots off goal": "shots_off_target", "blocked shots": "shots_blocked",
    "shots insidebox": "shots_inside_box", "shots outsidebox": "shots_outside_box",
    "corner kicks": "corners", "fouls": "fouls", "offsides": "offsides",
    "goalkeeper saves": "saves", "yellow cards": "yellow_cards", "red cards": "red_cards",
    "total passes": "passes", "passes accurate": "passes_accurate",
    "passes %": "pass_accuracy", "expected_goals": "expected_goals",
    "goals_prevented": "goals_prevented",
}
ENDPOINTS = ("live", "fixtures")
# API-Football accepts at most 20 ids in one ``ids`` filter.
IDS_PER_REQUEST = 20


class ApiFootballAdapter(Adapter):
    type_name = "api-football-v3"
    auth_header = "x-apisports-key"

    @classmethod
    def check_source_options(cls, options: Mapping[str, Any], path: str) -> None:
        for key in options:
            if key not in ("endpoint", "leagues", "params"):
                raise OptionError(f"{path}.{key}", f"unknown option for type {cls.type_name}; "
                                  "use endpoint, leagues or params")
        endpoint = options.get("endpoint", "live")
        if endpoint not in ENDPOINTS:
            raise OptionError(f"{path}.endpoint", f"must be one of {', '.join(ENDPOINTS)}", endpoint)
        string_list(options.get("leagues", []), f"{path}.leagues")
        params = params_table(options.get("params", {}), f"{path}.params")
        if endpoint == "fixtures" and not params:
            raise OptionError(f"{path}.params", "must give the /fixtures filters "
                              "(for example league, season, date) when endpoint is \"fixtures\"")

    def list_requests(self) -> list[Request]:
        params = params_table(self.source_options.get("params", {}), "params")
        if self.source_options.get("endpoint", "live") == "fixtures":
            return [Request("/fixtures", params)]
        leagues = [str(league) for league in self.source_options.get("leagues", [])]
        return [Request("/fixtures", {"live": "-".join(leagues) if leagues else "all", **params})]

    def by_ids_requests(self, provider_ids: list[str]) -> list[Request]:
        return [
            Request("/fixtures", {"ids": "-".join(provider_ids[start:start + IDS_PER_REQUEST])})
            for start in range(0, len(provider_ids), IDS_PER_REQUEST)
        ]

    def check_errors(self, payload: Any) -> None:
        errors = dig(payload, "errors")
        if not errors:
            return
        # API-Football reports quota errors inside a 200 response.
        if isinstance(errors, dict) and "rateLimit" in errors:
            raise ProviderRateLimited(f"API-Football rate limit: {errors['rateLimit']}", 60.0)
        if isinstance(errors, dict) and "requests" in errors:
            now = datetime.now(timezone.utc)
            midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            raise ProviderRateLimited(f"API-Football daily quota: {errors['requests']}",
                                      (midnight - now).total_seconds())
        raise ProviderError(f"API-Football errors: {errors!r}"[:500])

    def parse(self, payload: Any) -> list[ProviderMatch]:
        items = dig(payload, "response")
        if not isinstance(items, list):
            raise ProviderError("API-Football response has no response list")
        matches = []
        for item in items:
            match = self._parse_fixture(item)
            if match is not None:
                matches.append(match)
        return matches

    def _parse_fixture(self, item: Any) -> ProviderMatch | None:
        provider_id = as_text(dig(item, "fixture", "id"))
        if provider_id is None:
            self.fields.missing("response[].fixture.id", "fixture skipped")
            return None
        short = as_text(dig(item, "fixture", "status", "short"))
        status = STATUSES.get(short or "")
        elapsed = as_int(dig(item, "fixture", "status", "elapsed"))
        if status is None:
            self.fields.missing("response[].fixture.status.short", f"unknown value {short!r}")
            status = IN_PLAY if elapsed is not None else SCHEDULED

        teams = {side: self._team(item, side) for side in ("home", "away")}
        document: dict[str, Any] = {
            "status": status,
            "minute": elapsed if status != SCHEDULED else None,
            "teams": teams,
            "score": self._score(item, short or "", status),
            "events": self._events(item),
            "lineups": {"home": [], "away": []},
            "statistics": self._statistics(item),
        }
        extra = as_int(dig(item, "fixture", "status", "extra"))
        if extra and status != SCHEDULED:
            document["stoppage"] = extra
        kickoff = utc_iso(dig(item, "fixture", "date")) or utc_iso(dig(item, "fixture", "timestamp"))
        if kickoff:
            document["kickoff"] = kickoff
        venue = as_text(dig(item, "fixture", "venue", "name"))
        if venue:
            document["venue"] = venue
        self._lineups(item, document)

        league_id = as_text(dig(item, "league", "id"))
        return ProviderMatch(
            provider_id=provider_id,
            competition_keys=(league_id,) if league_id else (),
            competition_name=as_text(dig(item, "league", "name")),
            competition_code=None,
            document=document,
        )

    def _team(self, item: Any, side: str) -> dict:
        name = as_text(dig(item, "teams", side, "name"))
        if name is None:
            self.fields.missing(f"response[].teams.{side}.name", "named TBD")
            name = "TBD"
        return {"name": name}

    def _score(self, item: Any, short: str, status: str) -> dict:
        running = score_pair(dig(item, "goals", "home"), dig(item, "goals", "away")) or {"home": 0, "away": 0}
        result: dict[str, Any] = {"home": running["home"], "away": running["away"], "half_time": None}
        half_time = score_pair(dig(item, "score", "halftime", "home"), dig(item, "score", "halftime", "away"))
        elapsed = as_int(dig(item, "fixture", "status", "elapsed")) or 0
        suspended_early = short in ("SUSP", "INT", "ABD") and elapsed <= 45
        if short not in BEFORE_HALF_TIME and not suspended_early:
            result["half_time"] = half_time
        regular = score_pair(dig(item, "score", "fulltime", "home"), dig(item, "score", "fulltime", "away"))
        if regular is not None:
            result["regular_time"] = regular
        extra_time = score_pair(dig(item, "score", "extratime", "home"), dig(item, "score", "extratime", "away"))
        if extra_time is not None:
            result["extra_time"] = extra_time
        penalties = score_pair(dig(item, "score", "penalty", "home"), dig(item, "score", "penalty", "away"))
        if penalties is not None:
            result["penalties"] = penalties
        if status == FINISHED:
            result["full_time"] = dict(running)
            if "regular_time" not in result and short == "FT":
                result["regular_time"] = dict(running)
        return result

    def _side(self, item: Any, team: Any) -> str | None:
        team_id = dig(team, "id")
        for side in ("home", "away"):
            if team_id is not None and team_id == dig(item, "teams", side, "id"):
                return side
        name = as_text(dig(team, "name"))
        for side in ("home", "away"):
            if name is not None and name == as_text(dig(item, "teams", side, "name")):
                return side
        return None

    def _events(self, item: Any) -> list[dict]:
        events = []
        shootout_kicks = 0
        for raw in dig(item, "events") or []:
            kind_raw = (as_text(dig(raw, "type")) or "").lower()
            detail_raw = (as_text(dig(raw, "detail")) or "").lower()
            comments = (as_text(dig(raw, "comments")) or "").lower()
            side = self._side(item, dig(raw, "team"))
            if side is None:
                self.fields.missing("response[].events[].team", "team matches neither side; event skipped")
                continue
            elapsed = as_int(dig(raw, "time", "elapsed"))
            extra = as_int(dig(raw, "time", "extra"))
            player = as_text(dig(raw, "player", "name"))
            assist = as_text(dig(raw, "assist", "name"))

            if kind_raw == "goal" and comments == "penalty shootout":
                shootout_kicks += 1
                event: dict[str, Any] = {
                    "type": "shootout_kick", "minute": None, "team": side,
                    "order": extra if extra and extra > 0 else shootout_kicks,
                    "scored": detail_raw == "penalty",
                }
                if player:
                    event["player"] = player
                events.append(event)
                continue

            if kind_raw == "var":
                continue  # VAR reviews change other events; they are not events of their own
            if elapsed is None:
                self.fields.missing("response[].events[].time.elapsed", "event skipped")
                continue
            event = {"minute": elapsed, "team": side}
            if extra:
                event["stoppage"] = extra
            if kind_raw == "goal" and detail_raw == "missed penalty":
                event["type"] = "missed_penalty"
                if player:
                    event["player"] = player
            elif kind_raw == "goal":
                # NOTE: the recorded responses contain no own goal. The event's team
                # is taken to be the side the goal counts for, as users of the API
                # report. If it is the scorer's side instead, own goals land on the
                # wrong side.
                detail = GOAL_DETAILS.get(detail_raw)
                if detail is None:
                    self.fields.missing("response[].events[].detail", f"unknown goal detail {detail_raw!r}")
                    detail = "normal"
                event.update(type="goal", detail=detail)
                if player:
                    event["player"] = player
                if assist:
                    event["assist"] = assist
            elif kind_raw == "card":
                kind = CARDS.get(detail_raw)
                if kind is None:
                    self.fields.missing("response[].events[].detail", f"unknown card {detail_raw!r}; event skipped")
                    continue
                event["type"] = kind
                if player:
                    event["player"] = player
            elif kind_raw == "subst":
                event["type"] = "substitution"
                if assist:
                    event["player"] = assist
                if player:
                    event["player_out"] = player
            else:
                self.fields.missing("response[].events[].type", f"unknown type {kind_raw!r}; event skipped")
                continue
            events.append(event)
        return events

    def _lineups(self, item: Any, document: dict) -> None:
        for raw in dig(item, "lineups") or []:
            side = self._side(item, dig(raw, "team"))
            if side is None:
                self.fields.missing("response[].lineups[].team", "lineup skipped")
                continue
            players = []
            for group, starter in (("startXI", True), ("substitutes", False)):
                for entry in dig(raw, group) or []:
                    name = as_text(dig(entry, "player", "name"))
                    if name is None:
                        self.fields.missing(f"response[].lineups[].{group}[].player.name", "player skipped")
                        continue
                    player: dict[str, Any] = {"name": name, "starter": starter}
                    number = as_int(dig(entry, "player", "number"))
                    if number is not None:
                        player["number"] = number
                    position = as_text(dig(entry, "player", "pos"))
                    if position:
                        player["position"] = position
                    players.append(player)
            document["lineups"][side] = players
            formation = as_text(dig(raw, "formation"))
            if formation:
                document["teams"][side]["formation"] = formation
            coach = as_text(dig(raw, "coach", "name"))
            if coach:
                document["teams"][side]["coach"] = coach

    def _statistics(self, item: Any) -> dict:
        statistics: dict[str, dict] = {}
        for raw in dig(item, "statistics") or []:
            side = self._side(item, dig(raw, "team"))
            if side is None:
                self.fields.missing("response[].statistics[].team", "statistics skipped")
                continue
            for entry in dig(raw, "statistics") or []:
                name = (as_text(dig(entry, "type")) or "").lower()
                canonical = STATISTICS.get(name)
                if canonical is None:
                    self.fields.missing(f"response[].statistics[].statistics[{name}]", "unknown statistic")
                    continue
                statistics.setdefault(canonical, {"home": None, "away": None})[side] = as_number(
                    dig(entry, "value"))
        return statistics
