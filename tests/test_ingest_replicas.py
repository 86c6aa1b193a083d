"""Two `python -m ingest` replicas on one Redis: one polls, the other takes over when it is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonpatch
import pytest
import redis

from ingest.lease import lease_key
from ingest.publisher import Publisher
from ingest.replay import MockApiProcess, ReplayOptions, match_channel_id, replay_config
from livegate.wire import decode_envelope
from tests.ingest_fixtures.harness import wait_until
from tests.ingest_fixtures.samples import write_timeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
KEY_PREFIX = "rep"
LEASE_TTL = 1.5
SOURCES = ("football-data-today", "api-football-live")


class Replica:
    def __init__(self, name: str, config: Path, redis_url: str, folder: Path):
        self.stats_file = folder / f"{name}-stats.json"
        self.log_path = folder / f"{name}.log"
        environment = {**os.environ, "REDIS_URL": redis_url, "LIVEGATE_KEY_PREFIX": KEY_PREFIX,
                       "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ingest", "--config", str(config), "--stats-file", str(self.stats_file)],
                cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT)

    def totals(self) -> dict:
        try:
            return json.loads(self.stats_file.read_text())["totals"]
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def lease_holders(client: redis.Redis) -> set:
    return {(client.get(lease_key(KEY_PREFIX, source)) or b"").decode() for source in SOURCES}


def test_killed_replica_hands_over_within_lease_period(tmp_path, redis_server):
    write_timeline(tmp_path / "data")
    # Alpha v Beta kicks off at 15:00 UTC and lasts about 111 simulated minutes.
    mock = MockApiProcess(tmp_path / "data", speed=900, start="2030-06-01T14:59:30Z",
                          extra_args=["--fd-per-minute", "0", "--af-per-minute", "0", "--af-per-day", "0"],
                          log_path=tmp_path / "mockapi.log").start()
    replicas: list[Replica] = []
    client = redis.Redis.from_url(redis_server.url)
    try:
        listed = mock.matches()
        config = tmp_path / "ingest.toml"
        config.write_text(replay_config(mock.url, listed, ReplayOptions(
            poll_interval=0.05, requests_per_minute=6000, lease_ttl=LEASE_TTL, stale_after=2,
            switch_back_after=2, stats_interval=60)))
        channel = f"sport-livescore/{match_channel_id(listed[0])}"

        first = Replica("first", config, redis_server.url, tmp_path)
        replicas.append(first)
        wait_until(lambda: all(f":{first.process.pid}:" in holder for holder in lease_holders(client)),
                   timeout=10, message="the first replica to hold both leases")
        second = Replica("second", config, redis_server.url, tmp_path)
        replicas.append(second)
        wait_until(lambda: second.totals().get("polls_total") == 0 and first.totals().get("requests_total", 0) > 5,
                   timeout=10, message="both replicas to report their counters")
        time.sleep(1.0)
        # Only the lease holder polls; the standby sends nothing.
        assert second.totals()["requests_total"] == 0
        assert second.totals()["lease_acquired_total"] == 0
        assert first.totals()["requests_total"] > 10

        publisher = Publisher(client, key_prefix=KEY_PREFIX)
        before = publisher.current(channel)[1]
        assert before is not None and before["status"] in ("IN_PLAY", "PAUSED")
        killed_at = time.monotonic()
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=5)
        wait_until(lambda: all(f":{second.process.pid}:" in holder for holder in lease_holders(client)),
                   timeout=LEASE_TTL + 3, interval=0.01, message="the second replica to take both leases")
        handover = time.monotonic() - killed_at
        assert handover <= LEASE_TTL + 0.3, f"handover took {handover:.2f} s"

        def finished():
            document = publisher.current(channel)[1]
            return document["status"] == "FINISHED" and document

        document = wait_until(finished, timeout=20, message="the match to finish after the handover")
        # Nothing was lost: the final document contains the whole match.
        assert (document["score"]["home"], document["score"]["away"]) == (2, 1)
        assert [(e["team"], e["minute"], e.get("stoppage"), e.get("player")) for e in document["events"]] == [
            ("home", 10, None, "A. One"), ("away", 45, 1, "B. Own"), ("home", 90, 3, "A. Two")]
        assert document["score"]["half_time"] == {"home": 1, "away": 1}
        # Replaying the channel's log from version 1 gives the final document,
        # with the goal count never going down: no update was lost or reordered.
        version, _ = publisher.current(channel)
        envelopes = [decode_envelope(raw) for raw in client.zrange(f"{KEY_PREFIX}:log:{channel}", 0, -1)]
        assert [e.version for e in envelopes] == list(range(1, version + 1))
        replayed = None
        goal_counts = []
        for envelope in envelopes:
            body = json.loads(envelope.body)
            replayed = body if envelope.kind == "snapshot" else jsonpatch.apply_patch(replayed, body)
            goal_counts.append(sum(1 for e in replayed["events"] if e["type"] == "goal"))
        assert replayed == document
        assert goal_counts == sorted(goal_counts)
        assert second.totals()["lease_acquired_total"] == 2
    finally:
        for replica in replicas:
            replica.stop()
        mock.stop()
    assert replicas[1].process.returncode == 0, replicas[1].log_path.read_text()[-3000:]
    # After the handover the second replica's polls went through without errors.
    assert replicas[1].totals()["poll_errors_total"] == 0


def test_demo_replay_flag_runs_real_ingest(tmp_path, redis_server):
    """`python -m ingest.demo --replay DIR` polls the mock API with the real ingest process."""
    write_timeline(tmp_path / "data")
    environment = {**os.environ, "REDIS_URL": redis_server.url, "LIVEGATE_KEY_PREFIX": "demo"}
    with open(tmp_path / "demo.log", "wb") as log:
        demo = subprocess.Popen([sys.executable, "-m", "ingest.demo", "--replay", str(tmp_path / "data"),
                                 "--tick", "0.025"], cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT)
    publisher = Publisher(redis.Redis.from_url(redis_server.url), key_prefix="demo")
    channel = "sport-livescore/testcup2030-2030-06-01-400001"
    try:
        def finished():
            document = publisher.current(channel)[1]
            return document is not None and document["status"] == "FINISHED" and document

        document = wait_until(finished, timeout=20, interval=0.1, message="the replayed match to finish")
        assert (document["score"]["home"], document["score"]["away"]) == (2, 1)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            demo.wait(timeout=30)
    assert demo.returncode == 0, (tmp_path / "demo.log").read_text()[-3000:]


def test_demo_invalid_setting_one_line():
    """An invalid setting stops the demo before it starts anything, with one line naming it."""
    environment = {**os.environ, "LIVEGATE_BATCH_FULL_RATE": "0"}
    completed = subprocess.run([sys.executable, "-m", "ingest.demo", "--serve"], cwd=REPO,
                               env=environment, capture_output=True, text=True, timeout=60)

    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: invalid LIVEGATE_BATCH_FULL_RATE='0': must be between 1 and 1e+06 "
        "(updates per second); fix it and start again"]
    assert completed.stdout == ""
