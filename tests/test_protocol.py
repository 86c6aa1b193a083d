"""A producer that publishes with a Redis client and msgpack alone.

These tests never import the Python publisher: they follow the key layout
and the publish script as docs/protocol.md describes them, the way a
producer in another language would, and check what SSE clients receive.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
import redis

from tests.support.gateway import Gateway
from tests.support.mirror import Mirror
from tests.support.sse import SSEClient

pytestmark = pytest.mark.integration

SCRIPT = (Path(__file__).resolve().parents[1] / "ingest" / "publish.lua").read_text()
PREFIX = "proto"


@pytest.fixture(scope="module")
def gateway(redis_server_module, tmp_path_factory):
    server = Gateway(redis_server_module.url, workers=2, env={"LIVEGATE_KEY_PREFIX": PREFIX},
                     log_dir=tmp_path_factory.mktemp("gateway"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(redis_server_module):
    return redis.Redis.from_url(redis_server_module.url)


def run_publish_script(client, channel, base_version, kind, patch, document):
    """Call the publish script exactly as docs/protocol.md lists its keys and arguments."""
    keys = [f"{PREFIX}:epoch", f"{PREFIX}:seq", f"{PREFIX}:channels",
            f"{PREFIX}:state:{channel}", f"{PREFIX}:log:{channel}", f"{PREFIX}:log"]
    args = [channel, base_version, kind, json.dumps(patch), json.dumps(document),
            "foreignepoch1", 100, 1000, f"{PREFIX}:bus"]
    return client.eval(SCRIPT, len(keys), *keys, *args)


def open_stream(gateway, channel):
    sse = SSEClient(f"{gateway.url}/v1/stream", params=[("channel", channel)])
    sse.start()
    assert sse.status_code == 200
    return sse


class TestForeignProducer:
    def test_script_publish_reaches_clients(self, gateway, client):
        channel = "foreign/match-1"
        document = {"home": "Team A with a long name", "away": "Team B", "score": [0, 0]}
        status, version, seq, epoch = run_publish_script(client, channel, 0, "snapshot", [], document)
        assert (status, version) == (1, 1)
        sse = open_stream(gateway, channel)
        try:
            sse.wait_for_count(1)
            patch = [{"op": "replace", "path": "/score/0", "value": 1}]
            document["score"] = [1, 0]
            status, version, _, _ = run_publish_script(client, channel, 1, "delta", patch, document)
            assert (status, version) == (1, 2)
            events = sse.wait_for_count(2)
            assert events[1].event == "delta"
            assert events[1].json() == {"channel": channel, "version": 2, "patch": patch}
            mirror = Mirror()
            mirror.apply_events(events)
            assert mirror.documents()[channel] == document
        finally:
            sse.close()

    def test_stale_base_version_is_rejected(self, client):
        channel = "foreign/race"
        run_publish_script(client, channel, 0, "snapshot", [], {"n": 0})
        status, current, seq, _ = run_publish_script(client, channel, 0, "snapshot", [], {"n": 1})
        assert status == 0
        assert current == 1
        assert seq == 0

    def test_state_and_envelope_follow_the_documented_layout(self, client):
        channel = "foreign/layout"
        document = {"a": [1, 2, 3]}
        _, _, seq, epoch = run_publish_script(client, channel, 0, "snapshot", [], document)
        state = client.hgetall(f"{PREFIX}:state:{channel}")
        assert set(state) == {b"version", b"seq", b"ts", b"doc"}
        assert json.loads(state[b"doc"]) == document
        assert int(state[b"seq"]) == seq
        assert client.hget(f"{PREFIX}:channels", channel) == b"1"
        (raw, score), = client.zrange(f"{PREFIX}:log:{channel}", 0, -1, withscores=True)
        assert score == seq
        envelope = msgpack.unpackb(raw, raw=False)
        assert envelope["v"] == 1
        assert envelope["kind"] == "snapshot"
        assert envelope["channel"] == channel
        assert envelope["version"] == 1
        assert envelope["seq"] == seq
        assert envelope["prev_seq"] == 0
        assert envelope["epoch"] == epoch.decode()
        assert json.loads(envelope["data"]) == document

    def test_pretty_printed_json_is_framed_on_one_line(self, gateway, client):
        channel = "foreign/pretty"
        sse = open_stream(gateway, channel)
        try:
            document = {"text": "line one\nline two", "list": [1, 2]}
            keys = [f"{PREFIX}:epoch", f"{PREFIX}:seq", f"{PREFIX}:channels",
                    f"{PREFIX}:state:{channel}", f"{PREFIX}:log:{channel}", f"{PREFIX}:log"]
            pretty = json.dumps(document, indent=2)
            client.eval(SCRIPT, len(keys), *keys, channel, 0, "snapshot", "[]", pretty,
                        "foreignepoch1", 100, 1000, f"{PREFIX}:bus")
            event = sse.wait_for_count(1)[0]
            assert event.event == "snapshot"
            assert "\n" not in event.data
            assert event.json()["data"] == document
        finally:
            sse.close()


class TestHostileBusMessages:
    def test_subscriber_skips_garbage_and_keeps_serving(self, gateway, client):
        channel = "foreign/after-garbage"
        document = {"team": "a team name long enough for deltas", "n": 0}
        run_publish_script(client, channel, 0, "snapshot", [], document)
        sse = open_stream(gateway, channel)
        subscriber = gateway.subscriber_pid()
        try:
            sse.wait_for_count(1)
            garbage = [
                b"not msgpack at all \xc1",
                msgpack.packb([1, 2, 3]),
                msgpack.packb({"v": 1}),
                msgpack.packb({"v": 99, "kind": "delta"}),
                msgpack.packb({"v": 1, "epoch": "foreignepoch1", "seq": 10**6, "channel": "x\ny",
                               "version": 1, "prev_seq": 0, "ts": 0, "kind": "snapshot",
                               "data": "{}"}),
                msgpack.packb({"v": 1, "epoch": "foreignepoch1", "seq": 10**6 + 1,
                               "channel": channel, "version": 1, "prev_seq": 0, "ts": 0,
                               "kind": "delta", "patch": "[not json"}),
            ]
            garbage.append(msgpack.packb({
                "v": 1, "epoch": "otherepoch", "seq": 1, "channel": channel, "version": 9,
                "prev_seq": 0, "ts": 0, "kind": "snapshot", "data": "{}"}))
            for message in garbage:
                client.publish(f"{PREFIX}:bus", message)
            for n in range(1, 4):
                patch = [{"op": "replace", "path": "/n", "value": n}]
                document["n"] = n
                run_publish_script(client, channel, n, "delta", patch, document)
            events = sse.wait_for_count(4, timeout=10)
            assert [e.event for e in events] == ["snapshot", "delta", "delta", "delta"]
            assert [e.json()["version"] for e in events] == [1, 2, 3, 4]
            assert gateway.subscriber_pid() == subscriber
            assert all("x\ny" not in e.data for e in sse.events)
            gateway.wait_for_log("skipped invalid bus message")
        finally:
            sse.close()
