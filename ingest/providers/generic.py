"""Adapter for any JSON provider, driven by a field mapping in the configuration.

Each mapping entry is a path (``ingest/providers/paths.py``) into the
response. The first ``[]`` of ``match_id`` marks the list of matches, and
every other match field must start with the same prefix:

    match_id  = "response[].fixture.id"
    home_name = "response[].teams.home.name"

``events`` names the list of events inside a match, and the event fields
start with it (``events = "response[].events[]"``, ``event_minute =
"response[].events[].time.elapsed"``). ``status_map`` translates the
provider's statuses and ``event_types`` its event types (``"Goal/Penalty"
= "goal/penalty"``, ``"Var" = "ignore"``; the most specific of "type/detail/comment",
"type/detail" and "type" wins). docs/ingest.md lists every key.
"""

from __future__ import annotations

from typing import Any, Mapping

from ingest.document import EVENT_TYPES, FINISHED, GOAL_DETAILS, IN_PLAY, SCHEDULED, STATUSES
from ingest.providers.base import (
    Adapter, OptionError, ProviderMatch, Request, as_int, as_text, params_table,
    parse_minute, score_pair, utc_iso,
)
from ingest.providers.paths import Path, PathError, find_all, find_one, parse_path

REQUIRED_FIELDS = ("match_id", "status", "home_name", "away_name")
MATCH_FIELDS = (
    "competition_id", "competition_name", "competition_code", "kickoff", "minute", "stoppage",
    "venue", "home_id", "away_id", "home_short", "away_short", "home_score", "away_score",
    "half_time_home", "half_time_away", "regular_time_home", "regular_time_away",
    "extra_time_home", "extra_time_away", "penalties_home", "penalties_away", "events",
)
EVENT_FIELDS = (
    "event_type", "event_detail", "event_comment", "event_minute", "event_stoppage", "event_team",
    "event_player", "event_assist", "event_player_out",
)
PROVIDER_OPTIONS = ("mapping", "status_map", "event_types", "auth_header", "auth_prefix", "by_ids")
SCORE_PERIODS = ("half_time", "regular_time", "extra_time", "penalties")
IGNORE = "ignore"


SHOOTOUT_OUTCOMES = ("scored", "missed")


def _canonical_event_type(value: str, path: str) -> tuple[str, str | None]:
    """Split "goal/penalty" into ("goal", "penalty"); validate both parts."""
    if value == IGNORE:
        return IGNORE, None
    kind, _, detail = value.partition("/")
    if kind not in EVENT_TYPES:
        raise OptionError(path, f"must be one of {', '.join(EVENT_TYPES)} or {IGNORE}, "
                          "optionally goal/DETAIL or shootout_kick/scored|missed", value)
    if kind == "shootout_kick":
        if detail not in SHOOTOUT_OUTCOMES:
            raise OptionError(path, "a shootout_kick must say shootout_kick/scored or shootout_kick/missed", value)
        return kind, detail
    if detail and (kind != "goal" or detail not in GOAL_DETAILS):
        raise OptionError(path, f"only goal takes a detail, one of {', '.join(GOAL_DETAILS)}", value)
    return kind, detail or None


class CompiledMapping:
    """The mapping with its paths parsed and split into list prefix and relative part."""

    def __init__(self, mapping: Mapping[str, Any], path: str):
        if not isinstance(mapping, dict):
            raise OptionError(path, "must be a table of field paths", mapping)
        for key in mapping:
            if key not in REQUIRED_FIELDS + MATCH_FIELDS + EVENT_FIELDS:
                raise OptionError(f"{path}.{key}", "unknown mapping key; docs/ingest.md lists them")
        for key in REQUIRED_FIELDS:
            if key not in mapping:
                raise OptionError(f"{path}.{key}", "missing: the generic adapter needs "
                                  f"{', '.join(REQUIRED_FIELDS)}")
        parsed: dict[str, Path] = {}
        for key, text in mapping.items():
            try:
                parsed[key] = parse_path(text)
            except PathError as error:
                raise OptionError(f"{path}.{key}", str(error), text) from None

        match_id = parsed["match_id"]
        if match_id.each_count != 1:
            raise OptionError(f"{path}.match_id", "must contain exactly one [] marking the list of matches",
                              match_id.text)
        self.matches, self.match_id = match_id.split_at_first_each()
        self.fields: dict[str, Path] = {"match_id": self.match_id}
        for key in REQUIRED_FIELDS[1:] + MATCH_FIELDS:
            if key not in parsed or key == "events":
                continue
            self.fields[key] = self._relative(parsed[key], self.matches, f"{path}.{key}")
            if self.fields[key].each_count:
                raise OptionError(f"{path}.{key}", "must name one value per match, without a further []",
                                  parsed[key].text)

        self.events: Path | None = None
        self.event_fields: dict[str, Path] = {}
        if "events" in parsed:
            events = self._relative(parsed["events"], self.matches, f"{path}.events")
            if events.each_count != 1 or not events.steps[-1].each:
                raise OptionError(f"{path}.events", "must end with [] marking the list of events",
                                  parsed["events"].text)
            self.events = events
            events_absolute = parsed["events"]
            for key in EVENT_FIELDS:
                if key in parsed:
                    self.event_fields[key] = self._relative(parsed[key], events_absolute, f"{path}.{key}")
            for key in ("event_type", "event_minute", "event_team"):
                if key not in self.event_fields:
                    raise OptionError(f"{path}.{key}", "missing: events need event_type, event_minute "
                                      "and event_team")
        else:
            stray = [key for key in EVENT_FIELDS if key in parsed]
            if stray:
                raise OptionError(f"{path}.{stray[0]}", "needs the events path as well")

    @staticmethod
    def _relative(path: Path, prefix: Path, where: str) -> Path:
        try:
            return path.relative_to(prefix)
        except PathError:
            raise OptionError(where, f"must start with {prefix.text!r}, the list it belongs to",
                              path.text) from None


class GenericJsonAdapter(Adapter):
    type_name = "generic-json"

    def __init__(self, source: str, provider_options: Mapping[str, Any], source_options: Mapping[str, Any]):
        super().__init__(source, provider_options, source_options)
        self.mapping = CompiledMapping(provider_options["mapping"], "mapping")
        self.status_map = {str(key): value for key, value in provider_options.get("status_map", {}).items()}
        self.event_types = {
            str(key).lower(): _canonical_event_type(value, "event_types")
            for key, value in provider_options.get("event_types", {}).items()
        }

    @classmethod
    def check_provider_options(cls, options: Mapping[str, Any], path: str) -> None:
        for key in options:
            if key not in PROVIDER_OPTIONS:
                raise OptionError(f"{path}.{key}", f"unknown option for type {cls.type_name}; "
                                  f"use {', '.join(PROVIDER_OPTIONS)}")
        if "mapping" not in options:
            raise OptionError(f"{path}.mapping", "missing: a generic-json provider needs a field mapping")
        CompiledMapping(options["mapping"], f"{path}.mapping")

        status_map = options.get("status_map", {})
        if not isinstance(status_map, dict):
            raise OptionError(f"{path}.status_map", "must be a table", status_map)
        for key, value in status_map.items():
            if value not in STATUSES:
                raise OptionError(f"{path}.status_map.{key}", f"must be one of {', '.join(STATUSES)}", value)
        event_types = options.get("event_types", {})
        if not isinstance(event_types, dict):
            raise OptionError(f"{path}.event_types", "must be a table", event_types)
        for key, value in event_types.items():
            if not isinstance(value, str):
                raise OptionError(f"{path}.event_types.{key}", "must be a string", value)
            _canonical_event_type(value, f"{path}.event_types.{key}")

        for key in ("auth_header", "auth_prefix"):
            if key in options and not isinstance(options[key], str):
                raise OptionError(f"{path}.{key}", "must be a string", options[key])

        by_ids = options.get("by_ids")
        if by_ids is not None:
            if not isinstance(by_ids, dict) or not isinstance(by_ids.get("path"), str) \
                    or not isinstance(by_ids.get("param"), str):
                raise OptionError(f"{path}.by_ids", "must be a table with path and param "
                                  "(and optionally separator and batch)", by_ids)
            batch = by_ids.get("batch", 20)
            if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
                raise OptionError(f"{path}.by_ids.batch", "must be an integer >= 1", batch)

    @classmethod
    def check_source_options(cls, options: Mapping[str, Any], path: str) -> None:
        for key in options:
            if key not in ("path", "params"):
                raise OptionError(f"{path}.{key}", f"unknown option for type {cls.type_name}; use path or params")
        if not isinstance(options.get("path"), str) or not options["path"].startswith("/"):
            raise OptionError(f"{path}.path", "must be the request path, starting with /", options.get("path"))
        params_table(options.get("params", {}), f"{path}.params")

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        header = self.provider_options.get("auth_header")
        if api_key is None or not header:
            return {}
        return {header: self.provider_options.get("auth_prefix", "") + api_key}

    def list_requests(self) -> list[Request]:
        return [Request(self.source_options["path"], params_table(self.source_options.get("params", {}), "params"))]

    def by_ids_requests(self, provider_ids: list[str]) -> list[Request]:
        by_ids = self.provider_options.get("by_ids")
        if not by_ids:
            return []
        batch = by_ids.get("batch", 20)
        separator = by_ids.get("separator", ",")
        return [
            Request(by_ids["path"], {by_ids["param"]: separator.join(provider_ids[start:start + batch])})
            for start in range(0, len(provider_ids), batch)
        ]

    def parse(self, payload: Any) -> list[ProviderMatch]:
        matches = []
        for item in find_all(payload, self.mapping.matches):
            match = self._parse_match(item)
            if match is not None:
                matches.append(match)
        return matches

    def _value(self, item: Any, key: str, fields: dict[str, Path] | None = None,
               required: bool = False) -> Any:
        """Return the value of mapping ``key`` in ``item``, reporting a missing required one.

        Optional fields are often null for a reason (no half-time score
        before half-time, no scorer name yet), so only required ones log.
        """
        paths = self.mapping.fields if fields is None else fields
        path = paths.get(key)
        if path is None:
            return None
        value = find_one(item, path)
        if value is None and required:
            self.fields.missing(key, f"no value at {path.text!r}")
        return value

    def _status(self, raw: Any, minute: int | None) -> str:
        text = as_text(raw)
        if text is not None and text in self.status_map:
            return self.status_map[text]
        if text is not None and text.upper() in STATUSES:
            return text.upper()
        self.fields.missing("status", f"unknown value {text!r}")
        return IN_PLAY if minute is not None else SCHEDULED

    def _parse_match(self, item: Any) -> ProviderMatch | None:
        provider_id = as_text(self._value(item, "match_id", required=True))
        if provider_id is None:
            return None
        minute, stoppage = parse_minute(self._value(item, "minute"))
        if stoppage is None:
            stoppage = as_int(self._value(item, "stoppage"))
        status = self._status(self._value(item, "status", required=True), minute)

        teams = {}
        for side in ("home", "away"):
            team = {"name": as_text(self._value(item, f"{side}_name", required=True)) or "TBD"}
            short = as_text(self._value(item, f"{side}_short"))
            if short:
                team["short"] = short
            teams[side] = team

        running = score_pair(self._value(item, "home_score"), self._value(item, "away_score"))
        running = running or {"home": 0, "away": 0}
        score: dict[str, Any] = {"home": running["home"], "away": running["away"], "half_time": None}
        for period in SCORE_PERIODS:
            home_key, away_key = f"{period}_home", f"{period}_away"
            if home_key not in self.mapping.fields:
                continue
            pair = score_pair(self._value(item, home_key), self._value(item, away_key))
            if pair is not None:
                score[period] = pair
        # Some providers fill the half-time score while the first half runs.
        if status == SCHEDULED or (status == IN_PLAY and minute is not None and minute <= 45):
            score["half_time"] = None
        if status == FINISHED:
            score["full_time"] = dict(running)

        document: dict[str, Any] = {
            "status": status,
            "minute": minute if status != SCHEDULED else None,
            "teams": teams,
            "score": score,
            "events": self._events(item, teams),
            "lineups": {"home": [], "away": []},
            "statistics": {},
        }
        if stoppage and status != SCHEDULED:
            document["stoppage"] = stoppage
        kickoff = utc_iso(self._value(item, "kickoff"))
        if kickoff:
            document["kickoff"] = kickoff
        venue = as_text(self._value(item, "venue"))
        if venue:
            document["venue"] = venue

        competition_keys = tuple(key for key in (as_text(self._value(item, "competition_code")),
                                                 as_text(self._value(item, "competition_id"))) if key)
        return ProviderMatch(
            provider_id=provider_id,
            competition_keys=competition_keys,
            competition_name=as_text(self._value(item, "competition_name")),
            competition_code=as_text(self._value(item, "competition_code")),
            document=document,
        )

    def _side(self, item: Any, raw: Any, teams: dict) -> str | None:
        text = as_text(raw)
        if text is None:
            return None
        if text.lower() in ("home", "away"):
            return text.lower()
        for side in ("home", "away"):
            if text == as_text(self._value(item, f"{side}_id")) or text == teams[side]["name"]:
                return side
        return None

    def _events(self, item: Any, teams: dict) -> list[dict]:
        if self.mapping.events is None:
            return []
        fields = self.mapping.event_fields
        events = []
        shootout_kicks = 0
        for raw in find_all(item, self.mapping.events):
            raw_type = (as_text(self._value(raw, "event_type", fields, required=True)) or "").lower()
            raw_detail = (as_text(self._value(raw, "event_detail", fields)) or "").lower()
            raw_comment = (as_text(self._value(raw, "event_comment", fields)) or "").lower()
            # The most specific key wins: type/detail/comment, then type/detail, then type.
            mapped = (self.event_types.get(f"{raw_type}/{raw_detail}/{raw_comment}")
                      or self.event_types.get(f"{raw_type}/{raw_detail}")
                      or self.event_types.get(raw_type))
            if mapped is None and raw_type in EVENT_TYPES and raw_type != "shootout_kick":
                mapped = (raw_type, None)
            if mapped is None:
                self.fields.missing("event_type", f"unknown value {raw_type!r}; event skipped")
                continue
            kind, detail = mapped
            if kind == IGNORE:
                continue
            if kind == "shootout_kick":
                side = self._side(item, self._value(raw, "event_team", fields, required=True), teams)
                if side is None:
                    self.fields.missing("event_team", "event skipped")
                    continue
                shootout_kicks += 1
                kick: dict[str, Any] = {"type": kind, "minute": None, "team": side, "order": shootout_kicks,
                                        "scored": detail == "scored"}
                player = as_text(self._value(raw, "event_player", fields))
                if player:
                    kick["player"] = player
                events.append(kick)
                continue
            minute, stoppage = parse_minute(self._value(raw, "event_minute", fields, required=True))
            if stoppage is None and "event_stoppage" in fields:
                stoppage = as_int(self._value(raw, "event_stoppage", fields))
            side = self._side(item, self._value(raw, "event_team", fields, required=True), teams)
            if minute is None or side is None:
                self.fields.missing("event_minute" if minute is None else "event_team", "event skipped")
                continue
            event: dict[str, Any] = {"type": kind, "minute": minute, "team": side}
            if stoppage:
                event["stoppage"] = stoppage
            if kind == "goal":
                event["detail"] = detail or "normal"
            for key, target in (("event_player", "player"), ("event_assist", "assist"),
                                ("event_player_out", "player_out")):
                if key in fields:
                    text = as_text(self._value(raw, key, fields))
                    if text:
                        event[target] = text
            events.append(event)
        return events
