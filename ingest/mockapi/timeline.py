"""Recorded matches (openfootball JSON files) replayed as live matches.

An openfootball file gives, per match, the date, kick-off time, teams and
scores: half-time (``ht``), full-time (``ft``, after 90 minutes),
extra-time (``et``, cumulative) and shoot-out (``p``). Per team it lists
goals with minute, optional stoppage ``offset`` and ``penalty`` /
``owngoal`` flags, under the team they count for. Some files (league
seasons) carry no goals at all, only scores.

A Timeline places every goal at a point of simulated time after kick-off
and computes the match at any time T: status, minute, score per period
and the goals so far. The model of a match:

    first half   45 min + stoppage   (stoppage: 2 min, or longer to fit a 45+N goal)
    half-time    15 min
    second half  45 min + stoppage   (4 min, or longer to fit a 90+N goal)
    -- only with extra time --
    break         5 min, first half of extra time 15 min + 1, break 1 min,
    second half of extra time 15 min + 1
    -- only with a shoot-out --
    shoot-out    10 min, its score revealed kick by kick in proportion to time
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HALF_TIME_BREAK = 15.0
EXTRA_TIME_BREAK = 5.0
EXTRA_TIME_HALF_BREAK = 1.0
SHOOTOUT_MINUTES = 10.0
DEFAULT_STOPPAGE = {1: 2, 2: 4, 3: 1, 4: 1}

# Phases of a replayed match.
BEFORE = "before"
FIRST_HALF = "first_half"
HALF_TIME = "half_time"
SECOND_HALF = "second_half"
BREAK_BEFORE_EXTRA = "break_before_extra"
EXTRA_FIRST = "extra_first"
EXTRA_BREAK = "extra_break"
EXTRA_SECOND = "extra_second"
SHOOTOUT = "shootout"
ENDED = "ended"

# Known files: code, football-data competition id, API-Football league id, name.
KNOWN_COMPETITIONS = (
    (re.compile(r"^worldcup"), "WC", 2000, 1, "FIFA World Cup"),
    (re.compile(r"^en\.1"), "PL", 2021, 39, "Premier League"),
)

_OFFSET = re.compile(r"UTC\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?$")


@dataclass(frozen=True)
class Competition:
    code: str
    name: str
    fd_id: int
    af_id: int
    season: int


@dataclass(frozen=True)
class Goal:
    side: str          # "home" or "away": the team the goal counts for
    minute: int
    offset: int | None
    scorer: str | None
    penalty: bool
    own_goal: bool
    period: int        # 1, 2 (regular halves) or 3, 4 (extra-time halves)
    at: float          # minutes after kick-off when it is scored


@dataclass(frozen=True)
class MatchState:
    phase: str
    minute: int | None
    stoppage: int | None
    score: tuple[int, int]
    half_time: tuple[int, int] | None
    regular_time: tuple[int, int] | None
    extra_time: tuple[int, int] | None     # goals of extra time alone
    penalties: tuple[int, int] | None
    goals: tuple[Goal, ...]
    has_extra_time: bool
    has_shootout: bool


@dataclass
class Timeline:
    index: int
    competition: Competition
    round: str | None
    group: str | None
    ground: str | None
    home: str
    away: str
    kickoff: datetime
    half_time: tuple[int, int] | None
    regular_time: tuple[int, int]
    after_extra_time: tuple[int, int] | None
    penalties: tuple[int, int] | None
    goals: list[Goal]
    has_goal_details: bool
    stoppage: dict[int, int] = field(default_factory=dict)

    @property
    def final_score(self) -> tuple[int, int]:
        return self.after_extra_time or self.regular_time

    # Period lengths in minutes, then the start of each phase after kick-off.
    def _schedule(self) -> list[tuple[str, float]]:
        phases = [
            (FIRST_HALF, 45 + self.stoppage[1]),
            (HALF_TIME, HALF_TIME_BREAK),
            (SECOND_HALF, 45 + self.stoppage[2]),
        ]
        if self.after_extra_time is not None:
            phases += [
                (BREAK_BEFORE_EXTRA, EXTRA_TIME_BREAK),
                (EXTRA_FIRST, 15 + self.stoppage[3]),
                (EXTRA_BREAK, EXTRA_TIME_HALF_BREAK),
                (EXTRA_SECOND, 15 + self.stoppage[4]),
            ]
        if self.penalties is not None:
            phases.append((SHOOTOUT, SHOOTOUT_MINUTES))
        return phases

    def period_start(self, period: int) -> float:
        """Minutes after kick-off at which regular (1, 2) or extra-time (3, 4) half ``period`` starts."""
        name = {1: FIRST_HALF, 2: SECOND_HALF, 3: EXTRA_FIRST, 4: EXTRA_SECOND}[period]
        start = 0.0
        for phase, length in self._schedule():
            if phase == name:
                return start
            start += length
        raise ValueError(f"match {self.home} v {self.away} has no period {period}")

    @property
    def duration_minutes(self) -> float:
        return sum(length for _, length in self._schedule())

    @property
    def end(self) -> datetime:
        return self.kickoff + timedelta(minutes=self.duration_minutes)

    def phase_at(self, elapsed: float) -> tuple[str, float]:
        """Return the phase at ``elapsed`` minutes after kick-off and the minutes into it."""
        if elapsed < 0:
            return BEFORE, elapsed
        start = 0.0
        for phase, length in self._schedule():
            if elapsed < start + length:
                return phase, elapsed - start
            start += length
        return ENDED, elapsed - start

    def state_at(self, moment: datetime) -> MatchState:
        elapsed = (moment - self.kickoff).total_seconds() / 60.0
        phase, into = self.phase_at(elapsed)
        goals = tuple(goal for goal in self.goals if goal.at <= elapsed)
        home = sum(1 for goal in goals if goal.side == "home")
        away = sum(1 for goal in goals if goal.side == "away")
        order = [name for name, _ in self._schedule()]
        if phase in order:
            reached = order.index(phase)
        elif phase == ENDED:
            reached = len(order)
        else:
            reached = -1

        def past(name: str) -> bool:
            return name in order and reached > order.index(name)

        half_time = None
        if past(FIRST_HALF):
            half_time = self.half_time or _count(g for g in self.goals if g.period == 1)
        regular = None
        if past(SECOND_HALF):
            regular = self.regular_time
        extra = None
        if self.after_extra_time is not None and reached > order.index(SECOND_HALF):
            extra = (home - (regular or (0, 0))[0], away - (regular or (0, 0))[1])
            if past(EXTRA_SECOND):
                extra = (self.after_extra_time[0] - self.regular_time[0],
                         self.after_extra_time[1] - self.regular_time[1])
        penalties = None
        if self.penalties is not None and phase in (SHOOTOUT, ENDED):
            if phase == ENDED:
                penalties = self.penalties
            else:
                share = into / SHOOTOUT_MINUTES
                penalties = (int(self.penalties[0] * share), int(self.penalties[1] * share))

        if not self.has_goal_details:
            # Scores only: show the half-time score from half-time on, the final at the end.
            home, away = 0, 0
            if half_time is not None:
                home, away = half_time
            if regular is not None:
                home, away = regular
        if phase == ENDED or past(EXTRA_SECOND):
            home, away = self.final_score

        minute, stoppage = self._clock(phase, into)
        return MatchState(
            phase=phase, minute=minute, stoppage=stoppage, score=(home, away),
            half_time=half_time, regular_time=regular, extra_time=extra, penalties=penalties,
            goals=goals, has_extra_time=self.after_extra_time is not None and reached > order.index(SECOND_HALF),
            has_shootout=self.penalties is not None and phase in (SHOOTOUT, ENDED),
        )

    def _clock(self, phase: str, into: float) -> tuple[int | None, int | None]:
        """Return the minute a scoreboard shows: "45+2" is (45, 2)."""
        bases = {FIRST_HALF: (0, 45), SECOND_HALF: (45, 90), EXTRA_FIRST: (90, 105), EXTRA_SECOND: (105, 120)}
        if phase in bases:
            start, end = bases[phase]
            shown = start + int(into) + 1
            return (shown, None) if shown <= end else (end, shown - end)
        return {
            BEFORE: (None, None), HALF_TIME: (45, None), BREAK_BEFORE_EXTRA: (90, None),
            EXTRA_BREAK: (105, None), SHOOTOUT: (120, None),
            ENDED: (120 if self.after_extra_time is not None else 90, None),
        }[phase]


def _count(goals) -> tuple[int, int]:
    goals = list(goals)
    return (sum(1 for goal in goals if goal.side == "home"), sum(1 for goal in goals if goal.side == "away"))


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0], value[1]
    return None


def _period_of(minute: int, offset: int | None) -> int:
    if minute <= 45:
        return 1
    if minute <= 90:
        return 2
    if minute <= 105:
        return 3
    return 4


def parse_kickoff(date: str, time_text: str | None, default_offset: timedelta) -> datetime:
    """Kick-off in UTC from "2018-06-25" and "18:00 UTC+4" (or "19:00" in ``default_offset``)."""
    day = datetime.strptime(date, "%Y-%m-%d")
    offset = default_offset
    hour, minute = 12, 0
    if time_text:
        text = time_text.strip()
        found = _OFFSET.search(text)
        if found:
            sign = 1 if found.group(1) == "+" else -1
            offset = sign * timedelta(hours=int(found.group(2)), minutes=int(found.group(3) or 0))
            text = text[: found.start()].strip()
        parts = text.split(":")
        if len(parts) == 2 and all(part.isdigit() for part in parts):
            hour, minute = int(parts[0]), int(parts[1])
    local = day.replace(hour=hour, minute=minute, tzinfo=timezone(offset))
    return local.astimezone(timezone.utc)


def competition_for_file(path: Path, name: str, position: int, first_year: int) -> Competition:
    for pattern, code, fd_id, af_id, display in KNOWN_COMPETITIONS:
        if pattern.search(path.stem):
            return Competition(code, display, fd_id, af_id, first_year)
    code = re.sub(r"[^A-Za-z0-9]", "", path.stem).upper()[:12] or f"C{position}"
    return Competition(code, name or path.stem, 9000 + position, 9000 + position, first_year)


def load_file(path: Path, position: int, first_index: int, default_offset: timedelta) -> list[Timeline]:
    data = json.loads(path.read_text(encoding="utf-8"))
    matches = data.get("matches") or []
    years = [int(match["date"][:4]) for match in matches if isinstance(match.get("date"), str)]
    competition = competition_for_file(path, data.get("name", ""), position, min(years) if years else 0)
    timelines = []
    for number, match in enumerate(matches):
        timeline = _timeline(path, match, competition, first_index + len(timelines), default_offset)
        if timeline is None:
            log.warning("%s: match %d skipped: it has no date, teams or full-time score", path.name, number)
            continue
        timelines.append(timeline)
    return timelines


def _timeline(path: Path, match: dict, competition: Competition, index: int,
              default_offset: timedelta) -> Timeline | None:
    score = match.get("score") or {}
    regular = _pair(score.get("ft"))
    if not (isinstance(match.get("date"), str) and match.get("team1") and match.get("team2") and regular):
        return None
    after_extra = _pair(score.get("et"))
    timeline = Timeline(
        index=index, competition=competition, round=match.get("round"), group=match.get("group"),
        ground=match.get("ground"), home=match["team1"], away=match["team2"],
        kickoff=parse_kickoff(match["date"], match.get("time"), default_offset),
        half_time=_pair(score.get("ht")), regular_time=regular, after_extra_time=after_extra,
        penalties=_pair(score.get("p")), goals=[],
        # 0-0 matches have no goal lists at all; league files have none for any match.
        has_goal_details="goals1" in match or "goals2" in match or (after_extra or regular) == (0, 0),
    )
    raw_goals = []
    for side, key in (("home", "goals1"), ("away", "goals2")):
        for goal in match.get(key) or []:
            minute = goal.get("minute")
            if not isinstance(minute, int):
                continue
            offset = goal.get("offset") if isinstance(goal.get("offset"), int) else None
            raw_goals.append((side, minute, offset, goal))
    stoppage = dict(DEFAULT_STOPPAGE)
    for _, minute, offset, _ in raw_goals:
        period = _period_of(minute, offset)
        if offset:
            stoppage[period] = max(stoppage[period], offset + 1)
    timeline.stoppage = stoppage
    for side, minute, offset, goal in raw_goals:
        period = _period_of(minute, offset)
        period_first_minute = {1: 0, 2: 45, 3: 90, 4: 105}[period]
        # A goal "in minute M" falls inside that minute: half a minute before its end.
        at = timeline.period_start(period) + (minute - period_first_minute - 1) + (offset or 0) + 0.5
        timeline.goals.append(Goal(side, minute, offset, goal.get("name"), bool(goal.get("penalty")),
                                   bool(goal.get("owngoal")), period, at))
    timeline.goals.sort(key=lambda goal: goal.at)
    if timeline.has_goal_details and _count(timeline.goals) != timeline.final_score:
        log.warning("%s: %s v %s: goals add up to %s but the final score is %s; the final score wins "
                    "at full time", path.name, timeline.home, timeline.away, _count(timeline.goals),
                    timeline.final_score)
    if timeline.half_time and timeline.has_goal_details and \
            _count(g for g in timeline.goals if g.period == 1) != timeline.half_time:
        log.info("%s: %s v %s: the recorded half-time score %s differs from the first-half goals; "
                 "the recorded score is replayed", path.name, timeline.home, timeline.away, timeline.half_time)
    return timeline


def load_timelines(directory: str | Path, default_offset: timedelta = timedelta(0)) -> list[Timeline]:
    """Load every ``*.json`` file of ``directory`` in name order; ids follow that order."""
    folder = Path(directory)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no .json timeline files in {folder}")
    timelines: list[Timeline] = []
    for position, path in enumerate(files):
        timelines.extend(load_file(path, position, len(timelines), default_offset))
    return timelines
