"""The benchmark's publisher process: plays a workload against one target.

livegate is published to through Redis with ``ingest.publisher.Publisher``,
the way the ingest process publishes. Flask-SSE is published to with its
own ``sse.publish`` inside the peer app's context, against the same
private Redis. nchan is published to by HTTP POST to its publisher
location on loopback. The peers receive the same event data that livegate
builds for a delta, ``{"channel", "version", "patch"}``, with the patch
computed by livegate's differ, so every target carries events of the same
size. Neither peer has channel patterns, so for them each update is
published a second time to a channel named ``sport-livescore/*``, which
the pattern clients subscribe to.

Commands arrive one per line on standard input; each prints one JSON line:

    prepare               publish the first version of every channel
    run KIND SECONDS      play matchday, burst or throughput for SECONDS
    replay                publish the documents of a recorded match
    stop                  exit

The process exits by itself after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import json
import random
import select
import sys
import time
import traceback

import orjson

from bench.loadgen import Histogram
from bench.workloads import (
    PATTERN, REPLAY_CHANNEL, MatchFeed, Workload, channel_names, replay_documents,
)
from ingest.diff import diff

# Publish errors printed to standard error at most, per run.
MAX_ERRORS_SHOWN = 5


class LivegateClient:
    name = "livegate"

    def __init__(self, options: argparse.Namespace):
        import redis

        from ingest.publisher import Publisher

        self.publisher = Publisher(redis.Redis.from_url(options.redis_url))

    def publish(self, channel: str, document: dict, aggregate: bool) -> int:
        """Publish ``document``; return the bytes a client would receive as a full snapshot."""
        from livegate.frames import encode_frame, snapshot_data
        from ingest.publisher import canonical_json

        result = self.publisher.publish(channel, document)
        if not result.changed:
            return 0
        data = snapshot_data(channel, result.version, canonical_json(document))
        return len(encode_frame(b"snapshot", data, result.id))

    def prepare(self, channel: str, document: dict) -> None:
        self.publisher.publish(channel, document)


class PeerClient:
    """Common part of the peers: local documents, versions and patches."""

    def __init__(self):
        self.documents: dict[str, dict] = {}
        self.versions: dict[str, int] = {}

    def delta_data(self, channel: str, document: dict) -> bytes:
        old = self.documents.get(channel)
        version = self.versions.get(channel, 0) + 1
        self.versions[channel] = version
        self.documents[channel] = document
        if old is None:
            return orjson.dumps({"channel": channel, "version": version, "data": document})
        return orjson.dumps({"channel": channel, "version": version,
                             "patch": diff(old, document)})

    def prepare(self, channel: str, document: dict) -> None:
        self.documents[channel] = document
        self.versions[channel] = 1
        # The pattern channel stores the last of these, so that pattern
        # subscribers receive a first message too.
        self.send(channel, orjson.dumps({"channel": channel, "version": 1, "data": document}),
                  "snapshot", aggregate=True)

    def publish(self, channel: str, document: dict, aggregate: bool) -> int:
        self.send(channel, self.delta_data(channel, document), "delta", aggregate)
        return 0

    def send(self, channel: str, data: bytes, event: str, aggregate: bool) -> None:
        raise NotImplementedError


class FlaskSseClient(PeerClient):
    name = "flask-sse"

    def __init__(self, options: argparse.Namespace):
        super().__init__()
        import os

        os.environ["REDIS_URL"] = options.redis_url
        from flask_sse import sse

        from bench.peers.flask_sse_app import app

        app.config["REDIS_URL"] = options.redis_url
        self.sse = sse
        self.context = app.app_context()
        self.context.push()

    def prepare(self, channel: str, document: dict) -> None:
        # Flask-SSE keeps no messages: a stream only receives what is
        # published after it subscribed.
        self.documents[channel] = document
        self.versions[channel] = 1

    def send(self, channel: str, data: bytes, event: str, aggregate: bool) -> None:
        text = data.decode("utf-8")
        self.sse.publish(text, type=event, channel=channel)
        if aggregate:
            self.sse.publish(text, type=event, channel=PATTERN)


class NchanClient(PeerClient):
    name = "nchan"

    def __init__(self, options: argparse.Namespace):
        super().__init__()
        self.port = options.port
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def send(self, channel: str, data: bytes, event: str, aggregate: bool) -> None:
        path = f"/pub-also/{channel}?also={PATTERN}" if aggregate else f"/pub/{channel}"
        headers = {"Content-Type": "application/json", "X-EventSource-Event": event}
        for attempt in range(2):
            try:
                self.connection.request("POST", path, body=data, headers=headers)
                response = self.connection.getresponse()
                response.read()
                break
            except (OSError, http.client.HTTPException):
                # One retry on a fresh connection: nginx closes idle keep-alives.
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt:
                    raise
        if response.status not in (200, 201, 202):
            raise RuntimeError(f"nchan publish to {path} failed with HTTP {response.status}")


CLIENTS = {"livegate": LivegateClient, "flask-sse": FlaskSseClient, "nchan": NchanClient}


class Player:
    """Plays workloads through one client and reports what it published."""

    def __init__(self, client, workload: Workload):
        self.client = client
        self.workload = workload
        self.feed = MatchFeed(workload)
        self.channels = channel_names(workload.channels)
        self.rng = random.Random(workload.seed + 7)

    def prepare(self) -> dict:
        started = time.monotonic()
        for channel in self.channels:
            self.client.prepare(channel, self.feed.document(channel))
        return {"type": "prepared", "channels": len(self.channels),
                "seconds": time.monotonic() - started}

    def _publish(self, report: dict, channel: str, document: dict, due: float,
                 aggregate: bool) -> None:
        started = time.monotonic()
        report["late_max"] = max(report["late_max"], started - due)
        try:
            full_bytes = self.client.publish(channel, document, aggregate)
        except Exception as error:  # noqa: BLE001 - counted and shown, the run goes on
            report["errors"] += 1
            if report["errors"] <= MAX_ERRORS_SHOWN:
                print(f"publish to {channel} failed: {error!r}", file=sys.stderr, flush=True)
                traceback.print_exc(file=sys.stderr)
            return
        self.durations.add(time.monotonic() - started)
        report["publishes"] += 1
        report["full_document_bytes"] += full_bytes

    def run(self, kind: str, seconds: float) -> dict:
        report = {"type": "ran", "kind": kind, "seconds": seconds, "publishes": 0, "errors": 0,
                  "late_max": 0.0, "full_document_bytes": 0}
        self.durations = Histogram()
        start = time.monotonic()
        end = start + seconds
        workload = self.workload
        aggregate = workload.pattern_share > 0
        if kind == "matchday":
            due_times = [(start + self.rng.uniform(0, workload.period), channel)
                         for channel in self.channels]
            heapq.heapify(due_times)
            while due_times and due_times[0][0] < end:
                due, channel = heapq.heappop(due_times)
                _sleep_until(due)
                self._publish(report, channel, self.feed.advance(channel), due, aggregate)
                spread = self.rng.uniform(1 - workload.jitter, 1 + workload.jitter)
                heapq.heappush(due_times, (due + workload.period * spread, channel))
        elif kind == "burst":
            top = self.channels[0]
            for goal in range(workload.goals):
                due = start + 0.5 + goal * workload.goal_interval
                if due >= end:
                    break
                _sleep_until(due)
                self._publish(report, top, self.feed.goal(top, self.rng), due, aggregate)
        elif kind == "throughput":
            interval = 1.0 / workload.rate
            for count in range(int(seconds * workload.rate)):
                due = start + count * interval
                _sleep_until(due)
                channel = self.channels[count % len(self.channels)]
                self._publish(report, channel, self.feed.advance(channel), due, False)
        else:
            raise ValueError(f"unknown workload kind {kind!r}; expected matchday, burst or "
                             "throughput")
        _sleep_until(end)
        report["elapsed"] = time.monotonic() - start
        report["publish_seconds"] = self.durations.to_json()
        return report

    def replay(self) -> dict:
        """Publish a recorded match poll by poll and count the bytes of full documents.

        ``full_document_bytes`` counts a snapshot frame for every change,
        ``poll_document_bytes`` one for every poll, changed or not.
        """
        report = {"type": "ran", "kind": "replay", "publishes": 0, "errors": 0, "late_max": 0.0,
                  "full_document_bytes": 0, "poll_document_bytes": 0}
        self.durations = Histogram()
        start = time.monotonic()
        documents = replay_documents()
        changes = 0
        for document in documents:
            report["poll_document_bytes"] += snapshot_frame_bytes(REPLAY_CHANNEL, document)
            before = report["full_document_bytes"]
            self._publish(report, REPLAY_CHANNEL, document, time.monotonic(), False)
            if report["full_document_bytes"] > before:
                changes += 1
            # Paced so that the stream reads each change before the next one.
            time.sleep(0.005)
        report["documents"] = len(documents)
        report["changes"] = changes
        report["elapsed"] = time.monotonic() - start
        report["publish_seconds"] = self.durations.to_json()
        return report


def snapshot_frame_bytes(channel: str, document: dict) -> int:
    """Return the size of a snapshot frame of ``document``, with an id of typical length."""
    from ingest.publisher import canonical_json
    from livegate.frames import encode_frame, snapshot_data

    data = snapshot_data(channel, 100, canonical_json(document))
    return len(encode_frame(b"snapshot", data, "0123456789ab-100000"))


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=sorted(CLIENTS), required=True)
    parser.add_argument("--redis-url", required=True, help="the run's private Redis")
    parser.add_argument("--port", type=int, required=True, help="loopback port of the target")
    parser.add_argument("--workload", required=True, help="Workload parameters as JSON")
    parser.add_argument("--max-seconds", type=float, default=3600.0,
                        help="hard end of the process, seconds (default 3600)")
    options = parser.parse_args(argv)

    workload = Workload(**json.loads(options.workload))
    player = Player(CLIENTS[options.target](options), workload)
    deadline = time.monotonic() + options.max_seconds
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sys.stdin], [], [], 1.0)
        if not readable:
            continue
        line = sys.stdin.readline()
        if not line or line.strip() == "stop":
            break
        if line.strip():
            print(json.dumps(execute(player, line.split(), deadline)), flush=True)
    return 0


def execute(player: Player, words: list[str], deadline: float) -> dict:
    """Run one command line and return the JSON message that reports it."""
    try:
        if words[0] == "prepare":
            return player.prepare()
        if words[0] == "run" and len(words) == 3:
            return player.run(words[1], min(float(words[2]), deadline - time.monotonic()))
        if words[0] == "replay":
            return player.replay()
    except Exception as error:  # noqa: BLE001 - reported to the runner, which decides
        traceback.print_exc(file=sys.stderr)
        return {"type": "error", "message": f"{words[0]} failed: {error!r}"}
    return {"type": "error", "message": f"unknown command {' '.join(words)!r}; "
            "expected prepare, run KIND SECONDS, replay or stop"}


if __name__ == "__main__":
    sys.exit(main())
