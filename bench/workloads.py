"""Workloads: who subscribes to what, and what changes when.

*Match day*: 200 channels, each changed every 15 s with jitter. Every
client subscribes to one match chosen with a Zipf skew, except 5 % of the
clients, which subscribe to the pattern ``sport-livescore/*``. Heartbeats
come every 20 s (the gateway's default). *Burst*: goals in the most subscribed match,
on the match day subscriptions. *Throughput*: a fixed number of publishes
per second over channels with evenly spread subscribers. *Connect storm*:
clients connecting at a set rate, with no publishes. *Replay*: one real
match, polled every 15 s of match time, to compare the bytes of deltas
with the bytes of full documents, sent at every change or at every poll.

Documents are the demo feed's simulated matches (``ingest.simulator``),
so a change is what a live score service sends: a minute, a statistic, now
and then an event. Every published document carries ``sent_at``, the
publisher's ``time.time()``, from which the load generator computes the
publish-to-arrival delay.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta, timezone
from pathlib import Path

from ingest.simulator import SimulatedMatch, simulated_matches

CHANNEL_PREFIX = "sport-livescore"
PATTERN = f"{CHANNEL_PREFIX}/*"
FIRST_MATCH_ID = 1000
SHARED_DATA_ENV = "LIVEGATE_SHARED_DATA"


def channel_names(count: int) -> list[str]:
    return [f"{CHANNEL_PREFIX}/{FIRST_MATCH_ID + i}" for i in range(count)]


@dataclass
class Workload:
    """Parameters of one workload, passed to the publisher process as JSON."""

    kind: str                      # matchday, burst, throughput, storm, replay
    channels: int = 200
    zipf_exponent: float = 1.0
    pattern_share: float = 0.05
    period: float = 15.0           # matchday: seconds between changes of one channel
    jitter: float = 0.2            # matchday: the period varies by this share either way
    rate: float = 200.0            # throughput: publishes per second
    goals: int = 5                 # burst: goals published
    goal_interval: float = 2.0     # burst: seconds between goals
    seed: int = 2026

    def to_json(self) -> dict:
        return asdict(self)


def zipf_channel_weights(count: int, exponent: float) -> list[float]:
    """Return cumulative weights for channel ranks 1..count under a Zipf law."""
    weights = [1.0 / (rank ** exponent) for rank in range(1, count + 1)]
    return list(itertools.accumulate(weights))


def matchday_subscriptions(clients: int, workload: Workload) -> list[str]:
    """Return one subscription per client: a Zipf-chosen match, or the pattern for some clients.

    Channel rank 1 (the most subscribed) is ``channel_names()[0]``.
    """
    rng = random.Random(workload.seed)
    names = channel_names(workload.channels)
    cumulative = zipf_channel_weights(workload.channels, workload.zipf_exponent)
    total = cumulative[-1]
    subscriptions = []
    for _ in range(clients):
        if rng.random() < workload.pattern_share:
            subscriptions.append(PATTERN)
            continue
        position = bisect.bisect_left(cumulative, rng.random() * total)
        subscriptions.append(names[min(position, len(names) - 1)])
    return subscriptions


def even_subscriptions(clients: int, workload: Workload) -> list[str]:
    """Return one subscription per client, spread round-robin over the channels."""
    names = channel_names(workload.channels)
    return [names[i % len(names)] for i in range(clients)]


def subscriptions_for(kind: str, clients: int, workload: Workload) -> list[str]:
    if kind == "throughput":
        return even_subscriptions(clients, workload)
    if kind == "replay":
        return [REPLAY_CHANNEL] * clients
    return matchday_subscriptions(clients, workload)


def expected_burst_recipients(subscriptions: list[str]) -> int:
    """Return how many streams a change of the most subscribed match reaches."""
    top = channel_names(1)[0]
    return sum(1 for s in subscriptions if s == top or s == PATTERN)


# -- documents ----------------------------------------------------------------------


@dataclass
class MatchFeed:
    """The simulated matches of a workload and their current documents."""

    workload: Workload
    matches: dict[str, SimulatedMatch] = field(default_factory=dict)

    def __post_init__(self):
        names = channel_names(self.workload.channels)
        simulated = simulated_matches(count=len(names), seed=self.workload.seed)
        self.matches = dict(zip(names, simulated))

    def document(self, channel: str) -> dict:
        document = self.matches[channel].document()
        document["sent_at"] = time.time()
        return document

    def advance(self, channel: str) -> dict:
        """Play one match minute of ``channel`` and return its new document."""
        match = self.matches[channel]
        if match.status == "FINISHED":
            match.play_return_fixture()
        match.tick()
        return self.document(channel)

    def goal(self, channel: str, rng: random.Random) -> dict:
        """Add a goal to ``channel`` and return its new document."""
        match = self.matches[channel]
        side = "home" if rng.random() < 0.5 else "away"
        match.score[side] += 1
        match.events.append({
            "id": f"{match.match_id}-{len(match.events) + 1}", "type": "goal",
            "minute": match.minute, "team": side,
            "player": rng.choice(match.lineups[side])["name"],
        })
        return self.document(channel)


# -- replay of a real match ------------------------------------------------------------

REPLAY_CHANNEL = f"{CHANNEL_PREFIX}/replay"
REPLAY_FILE = "worldcup-2022.json"
REPLAY_POLL_SECONDS = 15.0


def shared_data_dir() -> Path:
    """Return the folder of real public data: $LIVEGATE_SHARED_DATA, else shared/data beside the repository."""
    configured = os.environ.get(SHARED_DATA_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def replay_documents() -> list[dict]:
    """Return the canonical documents of the 2022 World Cup final, polled every 15 s of match time.

    The match is the openfootball record, rendered as football-data.org's
    v4 match resource by the mock partner API from 5 minutes before
    kick-off to 5 minutes after the end. The ingest's football-data adapter
    maps each poll to livegate's match document, as the ingest process
    would publish it. Raises FileNotFoundError naming the folder when the
    data is absent.
    """
    from ingest.document import assign_event_ids
    from ingest.mockapi.render import TeamIds, fd_match
    from ingest.mockapi.timeline import load_file
    from ingest.providers.football_data import FootballDataAdapter

    path = shared_data_dir() / "openfootball" / REPLAY_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is absent; set {SHARED_DATA_ENV} to the folder of "
                                "real public data to run the replay workload")
    timelines = load_file(path, 0, 0, timedelta(0))
    final = max(timelines, key=lambda timeline: timeline.kickoff)
    teams = TeamIds(timelines)
    adapter = FootballDataAdapter("replay", {}, {})
    documents = []
    moment = final.kickoff - timedelta(minutes=5)
    end = final.end + timedelta(minutes=5)
    # At most one poll per 15 s over a match of at most about three hours.
    for _ in range(2000):
        if moment > end:
            break
        resource = fd_match(final, final.state_at(moment), teams, moment.astimezone(timezone.utc))
        match = adapter.parse(resource)[0]
        # The fields ingest.normalise.canonical_document adds, without a
        # configuration: id, competition and provider.
        document = {"id": "replay",
                    "competition": {"code": match.competition_code or "WC",
                                    "name": match.competition_name or "FIFA World Cup"},
                    **match.document, "provider": "football-data"}
        document["events"] = assign_event_ids(match.document.get("events", []))
        documents.append(document)
        moment += timedelta(seconds=REPLAY_POLL_SECONDS)
    return documents

