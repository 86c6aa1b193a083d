"""End to end on real data: mock partner API -> `python -m ingest` -> Redis -> gateway -> SSE clients.

Four real World Cup 2022 matches of 29 November 2022 are replayed 1500
times faster than real time: two kick off at 18:00 and two at 22:00,
local time UTC+3. The test moves the simulated clock over the gap between
the two kick-offs. Each SSE client's final documents must equal the
recorded results: score, half-time score and every goal in order of minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ingest.replay import MockApiProcess, ReplayOptions, match_channel_id, replay_config
from tests.ingest_fixtures import require_shared
from tests.support.mirror import Mirror
from tests.support.sse import RawSSEReader, SSEClient
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
DAY = "2022-11-29"
KEY_PREFIX = "e2e"


def expected_result(match: dict) -> dict:
    """The final document's facts, computed from the recorded match alone."""
    score = match["score"]
    final = score.get("et") or score["ft"]
    goals = []
    for side, key in (("home", "goals1"), ("away", "goals2")):
        for goal in match.get(key) or []:
            detail = "normal"
            if goal.get("owngoal"):
                detail = "own_goal"
            elif goal.get("penalty"):
                detail = "penalty"
            goals.append((goal["minute"], goal.get("offset") or 0, side, goal["name"], detail))
    goals.sort(key=lambda goal: (goal[0], goal[1]))
    half_time = score.get("ht")
    if half_time is None:
        half_time = [sum(1 for g in goals if g[2] == side and g[0] <= 45) for side in ("home", "away")]
    return {
        "teams": (match["team1"], match["team2"]),
        "score": {"home": final[0], "away": final[1]},
        "half_time": {"home": half_time[0], "away": half_time[1]},
        "goals": [(g[2], g[0], g[1] or None, g[3], g[4]) for g in goals],
    }


def document_facts(document: dict) -> dict:
    return {
        "teams": (document["teams"]["home"]["name"], document["teams"]["away"]["name"]),
        "score": {"home": document["score"]["home"], "away": document["score"]["away"]},
        "half_time": document["score"]["half_time"],
        "goals": [(e["team"], e["minute"], e.get("stoppage"), e.get("player"), e["detail"])
                  for e in document["events"] if e["type"] == "goal"],
    }


def finished(client: SSEClient, channels: list[str]):
    def check(events):
        mirror = Mirror()
        mirror.apply_events(events)
        documents = mirror.documents()
        done = all(documents.get(c, {}).get("status") == "FINISHED" for c in channels)
        return done and documents
    return check


def replay_day(tmp_path: Path) -> tuple[list[dict], MockApiProcess]:
    """Start the mock partner API on a copy of the day's four recorded matches."""
    source = require_shared("openfootball", "worldcup-2022.json")
    recorded = json.loads(source.read_text())
    day_matches = [m for m in recorded["matches"] if m["date"] == DAY]
    assert len(day_matches) == 4
    data_dir = tmp_path / "timelines"
    data_dir.mkdir()
    # A copy of that day's records in the test's temporary folder, never in the repository.
    (data_dir / "worldcup-2022.json").write_text(json.dumps({"name": recorded["name"], "matches": day_matches}))
    mock = MockApiProcess(data_dir, speed=1500, start=f"{DAY}T17:59",
                          extra_args=["--default-utc-offset", "+03:00", "--fd-per-minute", "0",
                                      "--af-per-minute", "0", "--af-per-day", "0"],
                          log_path=tmp_path / "mockapi.log").start()
    return day_matches, mock


def write_ingest_config(tmp_path: Path, mock: MockApiProcess) -> tuple[Path, dict[str, dict], list[str]]:
    """Write the ingest configuration; return it, the channels and the channels by kick-off."""
    listed = mock.matches()
    channels = {f"sport-livescore/{match_channel_id(m)}": m for m in listed}
    by_kickoff = sorted(channels, key=lambda c: (channels[c]["kickoff"], c))
    config = tmp_path / "ingest.toml"
    config.write_text(replay_config(mock.url, listed, ReplayOptions(
        poll_interval=0.05, requests_per_minute=6000, lease_ttl=5, stale_after=2, switch_back_after=2)))
    return config, channels, by_kickoff


def stop_process(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_real_matches_reach_sse_clients(tmp_path, redis_server, gateway_factory):
    gateway = gateway_factory(redis_server.url, workers=2,
                              env={"LIVEGATE_KEY_PREFIX": KEY_PREFIX, "LIVEGATE_HEARTBEAT_INTERVAL": "1",
                                   "LIVEGATE_SHUTDOWN_WINDOW": "0.5"})
    day_matches, mock = replay_day(tmp_path)
    ingest = None
    clients: list[SSEClient] = []
    try:
        config, channels, by_kickoff = write_ingest_config(tmp_path, mock)

        wildcard = SSEClient(f"{gateway.url}/v1/stream",
                             params=[("channel", "sport-livescore/*"), ("channel", "sport-livescore-competition/*")])
        named = SSEClient(f"{gateway.url}/v1/stream", params=[("channel", c) for c in by_kickoff])
        for client in (wildcard, named):
            clients.append(client.start())
            assert client.status_code == 200

        environment = {**os.environ, "REDIS_URL": redis_server.url, "LIVEGATE_KEY_PREFIX": KEY_PREFIX,
                       "PYTHONUNBUFFERED": "1"}
        stats_file = tmp_path / "stats.json"
        with open(tmp_path / "ingest.log", "wb") as log:
            ingest = subprocess.Popen([sys.executable, "-m", "ingest", "--config", str(config),
                                       "--stats-file", str(stats_file)],
                                      cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT)

        early = by_kickoff[:2]
        wildcard.wait_for(finished(wildcard, early), timeout=20)
        # Skip the idle hours between the kick-offs: 21:59 local time.
        mock.admin("POST", "/admin/clock", {"start": f"{DAY}T18:59:00Z"})
        for client in clients:
            documents = client.wait_for(finished(client, by_kickoff), timeout=20)
            for channel, listed_match in channels.items():
                record = next(m for m in day_matches
                              if (m["team1"], m["team2"]) == (listed_match["home"], listed_match["away"]))
                document = documents[channel]
                assert document_facts(document) == expected_result(record), channel
                ids = [event["id"] for event in document["events"]]
                assert len(ids) == len(set(ids)), channel
                minutes = [(e["minute"], e.get("stoppage") or 0) for e in document["events"]]
                assert minutes == sorted(minutes)
                assert document["competition"] == {"code": "WC", "name": "FIFA World Cup"}
                assert document["provider"] == "football-data"

        # Every goal arrived as an appended event in a delta, never as a rewrite.
        mirror = Mirror()
        mirror.apply_events(wildcard.events)
        assert mirror.deltas > 0
        competition = mirror.documents()["sport-livescore-competition/WC"]
        assert competition["matches"] == []  # no match is live any more
        assert mirror.channels["sport-livescore-competition/WC"].version > 4
    finally:
        for client in clients:
            client.close()
        stop_process(ingest)
        mock.stop()

    assert ingest.returncode == 0, (tmp_path / "ingest.log").read_text()[-3000:]
    stats = json.loads(stats_file.read_text())["totals"]
    assert stats["poll_errors_total"] == 0
    assert stats["matches_invalid_total"] == 0
    assert stats["changes_total"] > 40
    assert stats["publishes_total"] > stats["changes_total"]
    requests = [json.loads(line) for line in mock.request_log.read_text().splitlines()]
    assert not any(entry.get("rate_limited") for entry in requests)


def mirrored_documents(events) -> dict:
    """Return a client's documents after it applies ``events``."""
    mirror = Mirror()
    mirror.apply_events(e for e in events if e.event in ("snapshot", "delta"))
    return mirror.documents()


SCORE_FIELDS = ("id", "competition", "status", "minute", "stoppage", "teams", "score")
FEATURED = "sport-livescore/featured"


def test_replayed_alias_switch_and_view(tmp_path, redis_server, gateway_factory):
    """An editor points the featured alias at the second early match while both are played:
    every featured subscriber moves at once, and a score-view subscriber receives the
    projection of what full-document subscribers receive, for a fraction of the bytes."""
    admin_token = "replay-admin-token-0123456789"
    gateway = gateway_factory(redis_server.url, workers=2, env={
        "LIVEGATE_KEY_PREFIX": KEY_PREFIX, "LIVEGATE_SHUTDOWN_WINDOW": "0.5",
        "LIVEGATE_CHANNELS_FILE": str(REPO / "config" / "channels.example.toml"),
        "LIVEGATE_ADMIN_TOKENS": admin_token,
    })
    _, mock = replay_day(tmp_path)
    ingest = None
    readers: list = []
    try:
        config, _, by_kickoff = write_ingest_config(tmp_path, mock)
        first, second = by_kickoff[:2]
        http = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {admin_token}"})
        assert http.put(f"/v1/aliases/{FEATURED}", json={"target": first}).status_code == 200

        url = f"{gateway.url}/v1/stream"
        featured = [SSEClient(url, params={"channel": FEATURED}).start() for _ in range(20)]
        full = SSEClient(url, params={"channel": "sport-livescore/*"}).start()
        view = SSEClient(url, params={"channel": "sport-livescore/*", "view": "score"}).start()
        full_raw = RawSSEReader(url, params={"channel": "sport-livescore/*"}).start()
        view_raw = RawSSEReader(url, params={"channel": "sport-livescore/*", "view": "score"}).start()
        readers = [*featured, full, view, full_raw, view_raw]

        environment = {**os.environ, "REDIS_URL": redis_server.url, "LIVEGATE_KEY_PREFIX": KEY_PREFIX,
                       "LIVEGATE_CHANNELS_FILE": str(REPO / "config" / "channels.example.toml"),
                       "PYTHONUNBUFFERED": "1"}
        with open(tmp_path / "ingest.log", "wb") as log:
            ingest = subprocess.Popen([sys.executable, "-m", "ingest", "--config", str(config)],
                                      cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT)

        # Switch while the first match is under way.
        def minute(events) -> int:
            return (mirrored_documents(events).get(FEATURED) or {}).get("minute") or 0

        featured[0].wait_for(lambda events: minute(events) >= 20, timeout=20)
        switch = http.put(f"/v1/aliases/{FEATURED}", json={"target": second})
        assert switch.status_code == 200, switch.text
        switch_seq = int(switch.json()["id"].rpartition("-")[2])

        full.wait_for(finished(full, [first, second]), timeout=30)
        final = mirrored_documents(full.events)
        for client in featured:
            client.wait_for(lambda events: mirrored_documents(events).get(FEATURED) == final[second],
                            timeout=20)
            received = [e for e in client.events if e.event in ("snapshot", "delta")]
            moved = [n for n, e in enumerate(received) if int(e.id.rpartition("-")[2]) >= switch_seq]
            # The first event at or after the switch is the new target's snapshot.
            assert received[moved[0]].event == "snapshot"
            assert received[moved[0]].json()["data"]["id"] == final[second]["id"]

        expected = {channel: {key: document[key] for key in SCORE_FIELDS if key in document}
                    for channel, document in final.items()}
        view.wait_for(lambda events: mirrored_documents(events) == expected, timeout=20)
        wait_for(lambda: full_raw.raw.count(b"event: ") == len(full.events)
                 and view_raw.raw.count(b"event: ") == len(view.events),
                 timeout=10, message="byte readers caught up")
        ratio = len(view_raw.raw) / len(full_raw.raw)
        kinds = {name: [e.event for e in client.events].count for name, client in
                 (("view", view), ("full", full))}
        print(f"score view {len(view_raw.raw)} bytes ({kinds['view']('snapshot')} snapshots, "
              f"{kinds['view']('delta')} deltas), full documents {len(full_raw.raw)} bytes "
              f"({kinds['full']('snapshot')} snapshots, {kinds['full']('delta')} deltas), "
              f"ratio {ratio:.3f}")
        # The recorded matches carry no lineups or statistics, and nearly every
        # change is a clock tick inside the view, so the saving here is small.
        # tests/test_channel_mapping.py measures changes outside a view.
        assert ratio < 1.0
    finally:
        for reader in readers:
            reader.close()
        stop_process(ingest)
        mock.stop()


