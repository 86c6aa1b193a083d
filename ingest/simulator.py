"""A simulated football day for the demo feed: a dozen live matches.

Each tick advances every match by one match minute and may add a goal,
a card, a substitution and changes to the statistics, so documents change
the way a live score service's do: small edits and appended events on a
document that otherwise stays the same. Seeded, so runs are repeatable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

TEAMS = [
    ("Bangkok United", "BKU"), ("Buriram United", "BRU"), ("Port FC", "PRT"),
    ("BG Pathum United", "BGP"), ("Muangthong United", "MTU"), ("Chiangrai United", "CRU"),
    ("Ratchaburi", "RBR"), ("Chonburi", "CHB"), ("Arsenal", "ARS"), ("Liverpool", "LIV"),
    ("Manchester City", "MCI"), ("Chelsea", "CHE"), ("Barcelona", "BAR"), ("Real Madrid", "RMA"),
    ("Sevilla", "SEV"), ("Valencia", "VAL"), ("Bayern", "FCB"), ("Dortmund", "BVB"),
    ("Leipzig", "RBL"), ("Freiburg", "SCF"), ("Inter", "INT"), ("Milan", "ACM"),
    ("Napoli", "NAP"), ("Roma", "ROM"),
]
COMPETITIONS = [("T1", "Thai League 1"), ("PL", "Premier League"),
                ("PD", "La Liga"), ("BL1", "Bundesliga"), ("SA", "Serie A")]
FIRST_NAMES = ["A.", "B.", "C.", "D.", "E.", "F.", "G.", "H.", "J.", "K.", "L.", "M."]
LAST_NAMES = ["Silva", "Sato", "Meyer", "Rossi", "Garcia", "Smith", "Chaiyo", "Kim",
              "Dubois", "Novak", "Jensen", "Costa", "Okafor", "Tanaka", "Suzuki", "Lopez"]


@dataclass
class SimulatedMatch:
    match_id: str
    competition: tuple[str, str]
    home: tuple[str, str]
    away: tuple[str, str]
    rng: random.Random
    minute: int = 0
    status: str = "SCHEDULED"
    events: list[dict] = field(default_factory=list)
    score: dict = field(default_factory=lambda: {"home": 0, "away": 0})
    half_time: dict | None = None
    statistics: dict = field(default_factory=dict)
    lineups: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.statistics = _empty_statistics()
        self.lineups = {"home": self._lineup(), "away": self._lineup()}

    def play_return_fixture(self) -> None:
        """Reset to kick-off with home and away swapped, on the same channel."""
        self.home, self.away = self.away, self.home
        self.minute = 0
        self.status = "SCHEDULED"
        self.events = []
        self.score = {"home": 0, "away": 0}
        self.half_time = None
        self.statistics = _empty_statistics()
        self.lineups = {"home": self.lineups["away"], "away": self.lineups["home"]}

    def _lineup(self) -> list[dict]:
        return [
            {"number": number, "name": f"{self.rng.choice(FIRST_NAMES)} {self.rng.choice(LAST_NAMES)}"}
            for number in range(1, 12)
        ]

    def tick(self) -> None:
        """Advance one match minute."""
        if self.status == "FINISHED":
            return
        if self.status == "SCHEDULED":
            self.status = "IN_PLAY"
        self.minute += 1
        if self.minute == 45 and self.status == "IN_PLAY":
            self.status = "PAUSED"
            self.half_time = dict(self.score)
            return
        if self.status == "PAUSED":
            self.status = "IN_PLAY"
        if self.minute >= 90:
            self.status = "FINISHED"
            return
        self._play_minute()

    def _play_minute(self) -> None:
        rng = self.rng
        side = "home" if rng.random() < 0.55 else "away"
        stats = self.statistics
        swing = rng.randint(-2, 2)
        home_possession = min(75, max(25, stats["possession"]["home"] + swing))
        stats["possession"] = {"home": home_possession, "away": 100 - home_possession}
        if rng.random() < 0.25:
            stats["shots"][side] += 1
            if rng.random() < 0.4:
                stats["shots_on_target"][side] += 1
                if rng.random() < 0.3:
                    self.score[side] += 1
                    self._event("goal", side)
        if rng.random() < 0.08:
            stats["corners"][side] += 1
        if rng.random() < 0.15:
            stats["fouls"][side] += 1
            if rng.random() < 0.2:
                self._event("yellow_card", side)
        if self.minute > 55 and rng.random() < 0.06:
            self._event("substitution", side)

    def _event(self, kind: str, side: str) -> None:
        player = self.rng.choice(self.lineups[side])["name"]
        self.events.append({
            "id": f"{self.match_id}-{len(self.events) + 1}",
            "type": kind, "minute": self.minute, "team": side, "player": player,
        })

    def document(self) -> dict:
        return {
            "id": self.match_id,
            "competition": {"code": self.competition[0], "name": self.competition[1]},
            "status": self.status,
            "minute": self.minute,
            "teams": {
                "home": {"name": self.home[0], "short": self.home[1]},
                "away": {"name": self.away[0], "short": self.away[1]},
            },
            "score": {"home": self.score["home"], "away": self.score["away"],
                      "half_time": self.half_time},
            "events": list(self.events),
            "lineups": self.lineups,
            "statistics": self.statistics,
        }


def _empty_statistics() -> dict:
    return {
        "possession": {"home": 50, "away": 50},
        "shots": {"home": 0, "away": 0},
        "shots_on_target": {"home": 0, "away": 0},
        "corners": {"home": 0, "away": 0},
        "fouls": {"home": 0, "away": 0},
    }


def simulated_matches(count: int = 12, seed: int = 2026) -> list[SimulatedMatch]:
    """Create ``count`` matches with kick-offs a few minutes apart."""
    rng = random.Random(seed)
    teams = TEAMS[:]
    rng.shuffle(teams)
    matches = []
    for index in range(count):
        home = teams[(2 * index) % len(teams)]
        away = teams[(2 * index + 1) % len(teams)]
        match = SimulatedMatch(
            match_id=str(4300 + index),
            competition=COMPETITIONS[index % len(COMPETITIONS)],
            home=home, away=away, rng=random.Random(seed * 100 + index),
        )
        # Staggered kick-offs, so some matches are mid-game at start.
        for _ in range(rng.randint(0, 60)):
            match.tick()
        matches.append(match)
    return matches
