"""Channel mapping end to end: aliases switched at run time, views, namespaces and rules.

One gateway with two gevent workers reads a channels file, and a private Redis stores the
channels. Clients are real SSE connections, documents are checked by applying the
events the way a client library does (tests.support.mirror).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
import redis

from ingest.publisher import Publisher
from livegate.channel_config import parse
from livegate.settings import Settings
from tests.support.gateway import Gateway, GatewayError
from tests.support.mirror import Mirror
from tests.support.sse import RawSSEReader, SSEClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PREFIX = "mapping"
ADMIN_TOKEN = "admin-token-for-channel-mapping-tests"
JWT_SECRET = "a-secret-of-at-least-thirty-two-bytes-for-hs256"
CHANNELS_FILE = """
[namespaces."mapped/short"]
log_length = 2
heartbeat_interval = 1

[namespaces."mapped/snap"]
mode = "snapshot"

[namespaces."mapped/private"]
auth = true

[namespaces."mapped/limited"]
max_subscribers = 2

[views.score]
paths = ["/teams", "/score", "/status", "/minute"]

[[rules]]
name = "provider-to-live"
source = "mapped/provider/{id}"
targets = ["mapped/live/{id}"]
"""
# A long constant field keeps each patch smaller than its document, so changes
# travel as deltas rather than as snapshots.
PAD = "constant text that makes every patch smaller than its document " * 16
CLIENTS = 100


def match(home: str, away: str) -> dict[str, Any]:
    return {"teams": [home, away], "score": [0, 0], "status": "live", "minute": 1,
            "events": [], "stats": {"shots": [0, 0]}, "pad": PAD}


@pytest.fixture(scope="module")
def channels_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("channels") / "channels.toml"
    path.write_text(CHANNELS_FILE)
    return path


def gateway_env(channels_file) -> dict[str, str]:
    return {
        "LIVEGATE_KEY_PREFIX": PREFIX,
        "LIVEGATE_CHANNELS_FILE": str(channels_file),
        "LIVEGATE_ADMIN_TOKENS": f"{ADMIN_TOKEN},scoped-admin-token-0123@mapped/scoped",
        "LIVEGATE_SUBSCRIBE_JWT_SECRET": JWT_SECRET,
        "LIVEGATE_SHUTDOWN_WINDOW": "0.5",
    }


@pytest.fixture(scope="module")
def gateway(redis_server_module, channels_file, tmp_path_factory):
    server = Gateway(redis_server_module.url, workers=2, env=gateway_env(channels_file),
                     log_dir=tmp_path_factory.mktemp("gateway"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def publisher(redis_server_module, channels_file):
    settings = Settings.from_env({"LIVEGATE_KEY_PREFIX": PREFIX})
    return Publisher(redis.Redis.from_url(redis_server_module.url), key_prefix=PREFIX,
                     channel_config=parse(channels_file.read_text(), settings))


@pytest.fixture(scope="module")
def http(gateway):
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield client


def set_alias(http: httpx.Client, alias: str, target: str, token: str = ADMIN_TOKEN):
    return http.put(f"/v1/aliases/{alias}", json={"target": target},
                    headers={"Authorization": f"Bearer {token}"})


def mirror_of(client: SSEClient) -> Mirror:
    mirror = Mirror()
    mirror.apply_events(event for event in client.events if event.event in ("snapshot", "delta"))
    return mirror


def documents_equal(client: SSEClient, channel: str, expected: Any) -> bool:
    return mirror_of(client).documents().get(channel) == expected


def close_all(clients) -> None:
    for client in clients:
        client.close()


class TestAliases:
    def test_switch_moves_streaming_clients(self, gateway, http, publisher):
        first, second = "mapped/match/1", "mapped/match/2"
        documents = {first: match("Arsenal", "Chelsea"), second: match("Leeds", "Everton")}
        for channel, document in documents.items():
            publisher.publish(channel, document)
        alias = "mapped/featured"
        response = set_alias(http, alias, first)
        assert response.status_code == 200, response.text
        assert response.json()["changed"] is True

        clients = [SSEClient(f"{gateway.url}/v1/stream", params={"channel": alias}).start()
                   for _ in range(CLIENTS)]
        try:
            for client in clients:
                client.wait_for(lambda events: documents_equal(client, alias, documents[first]))

            documents[first]["score"] = [1, 0]
            publisher.publish(first, documents[first])
            for client in clients:
                client.wait_for(lambda events: documents_equal(client, alias, documents[first]))
            before_switch = [len(client.events) for client in clients]

            response = set_alias(http, alias, second)
            assert response.status_code == 200, response.text
            assert response.json()["previous"] == first
            switch_seq = int(response.json()["id"].rpartition("-")[2])
            # The old target keeps changing; its changes must not reach the alias.
            documents[first]["minute"] = 50
            publisher.publish(first, documents[first])
            documents[second]["score"] = [0, 1]
            publisher.publish(second, documents[second])

            for client, count in zip(clients, before_switch):
                client.wait_for(lambda events: documents_equal(client, alias, documents[second]))
                after = [e for e in client.events[count:] if e.event in ("snapshot", "delta")]
                # First the new target's snapshot, taken at or after the switch ...
                assert after[0].event == "snapshot", after
                assert after[0].json()["data"]["teams"] == ["Leeds", "Everton"]
                assert int(after[0].id.rpartition("-")[2]) >= switch_seq
                # ... then only deltas of the new target.
                assert all(e.event == "delta" for e in after[1:]), after
                assert all(e.json()["channel"] == alias for e in after)

            # A reconnect resumes on the current target with the deltas it missed.
            resumed = clients[0]
            last_id = resumed.last_event_id
            resumed.close()
            documents[second]["minute"] = 2
            publisher.publish(second, documents[second])
            again = SSEClient(f"{gateway.url}/v1/stream", params={"channel": alias},
                              last_event_id=last_id).start()
            clients[0] = again
            again.wait_for(lambda events: any(e.event == "delta" for e in events))
            received = [e for e in again.events if e.event in ("snapshot", "delta")]
            assert [e.event for e in received] == ["delta"]
            assert received[0].json()["patch"] == [
                {"op": "replace", "path": "/minute", "value": 2}]

            # A client that left before a switch gets the new target's snapshot on resume.
            last_id = again.last_event_id
            again.close()
            assert set_alias(http, alias, first).status_code == 200
            back = SSEClient(f"{gateway.url}/v1/stream", params={"channel": alias},
                             last_event_id=last_id).start()
            clients[0] = back
            back.wait_for(lambda events: documents_equal(back, alias, documents[first]))
            assert [e.event for e in back.events if e.event != "message"][:1] == ["snapshot"]
        finally:
            close_all(clients)

    def test_alias_survives_restart_across_gateways(
        self, gateway, redis_server_module, channels_file, http, publisher, tmp_path
    ):
        document = match("Fulham", "Brentford")
        other = match("Wolves", "Burnley")
        publisher.publish("mapped/match/3", document)
        publisher.publish("mapped/match/4", other)
        assert set_alias(http, "mapped/restart", "mapped/match/3").status_code == 200
        # A gateway started after the alias was set, beside the running one.
        fresh = Gateway(redis_server_module.url, workers=1, env=gateway_env(channels_file),
                        log_dir=tmp_path)
        fresh.start()
        clients = []
        try:
            for server in (fresh, gateway):
                clients.append(SSEClient(f"{server.url}/v1/stream",
                                         params={"channel": "mapped/restart"}).start())
            for client in clients:
                client.wait_for(lambda events: documents_equal(client, "mapped/restart", document))
            document["score"] = [2, 2]
            publisher.publish("mapped/match/3", document)
            for client in clients:
                client.wait_for(lambda events: documents_equal(client, "mapped/restart", document))
            assert set_alias(http, "mapped/restart", "mapped/match/4").status_code == 200
            # The new target is at the version the old one had when the first
            # snapshot went out: that snapshot must not be served again.
            for client in clients:
                client.wait_for(lambda events: documents_equal(client, "mapped/restart", other))
        finally:
            close_all(clients)
            fresh.stop()

    def test_admin_token_must_cover_alias(self, http):
        assert set_alias(http, "mapped/a", "mapped/match/1", token="wrong-token-0123456789")\
            .status_code == 401
        response = http.put("/v1/aliases/mapped/a", json={"target": "mapped/match/1"})
        assert response.status_code == 401
        assert "Bearer" in response.headers["WWW-Authenticate"]
        scoped = "scoped-admin-token-0123"
        assert set_alias(http, "mapped/a", "mapped/match/1", token=scoped).status_code == 403
        assert set_alias(http, "mapped/scoped/a", "mapped/match/1", token=scoped)\
            .status_code == 200

    def test_invalid_alias_changes_rejected(self, http, publisher):
        publisher.publish("mapped/match/9", match("A", "B"))
        assert set_alias(http, "mapped/x", "mapped/x").json()["error"] == "alias_is_target"
        assert set_alias(http, "mapped/match/9", "mapped/match/1").json()["error"] \
            == "alias_is_channel"
        assert set_alias(http, "mapped/y", "mapped/match/9").status_code == 200
        assert set_alias(http, "mapped/z", "mapped/y").json()["error"] == "target_is_alias"
        assert set_alias(http, "mapped/z", "bad channel").json()["error"] == "invalid_channel"
        bad_body = http.put("/v1/aliases/mapped/z", content=b"[1]",
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert bad_body.status_code == 400
        too_large = http.put("/v1/aliases/mapped/z", content=b" " * 5000 + b"{}",
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert too_large.status_code == 413
        assert too_large.json()["error"] == "body_too_large"
        # Publishing to an alias name would hide the target from its subscribers.
        response = http.post("/v1/publish/mapped/y", json={"a": 1})
        assert response.status_code == 409
        assert response.json()["error"] == "channel_is_alias"

    def test_alias_removal_keeps_streams_open(self, gateway, http, publisher):
        publisher.publish("mapped/match/11", match("Q", "R"))
        assert set_alias(http, "mapped/removed", "mapped/match/11").status_code == 200
        clients = [SSEClient(f"{gateway.url}/v1/stream", params={"channel": "mapped/removed"})
                   .start() for _ in range(4)]
        try:
            for client in clients:
                client.wait_for(lambda events: any(e.event == "snapshot" for e in events))
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            assert http.delete("/v1/aliases/mapped/removed", headers=headers).status_code == 200
            # Their resync finds nothing to send; the workers must keep serving.
            for _ in range(5):
                assert http.get("/healthz", timeout=2).status_code == 200
            assert not any(client.finished for client in clients)
        finally:
            close_all(clients)

    def test_alias_before_first_publish(self, gateway, http, publisher):
        assert set_alias(http, "mapped/early", "mapped/later/1").status_code == 200
        with SSEClient(f"{gateway.url}/v1/stream",
                       params={"channel": "mapped/early"}).start() as client:
            document = match("S", "T")
            publisher.publish("mapped/later/1", document)
            client.wait_for(lambda events: documents_equal(client, "mapped/early", document))
        response = http.get("/v1/channels/mapped/early")
        assert response.status_code == 404
        assert response.json()["target"] == "mapped/later/1"

    def test_aliases_listed_and_removed(self, http, publisher):
        publisher.publish("mapped/match/10", match("C", "D"))
        assert set_alias(http, "mapped/listed", "mapped/match/10").status_code == 200
        again = set_alias(http, "mapped/listed", "mapped/match/10").json()
        assert again["changed"] is False
        entry = http.get("/v1/aliases/mapped/listed").json()
        assert entry["target"] == "mapped/match/10"
        assert "mapped/listed" in [a["alias"] for a in http.get("/v1/aliases").json()["aliases"]]
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert http.delete("/v1/aliases/mapped/listed", headers=headers).status_code == 200
        assert http.get("/v1/aliases/mapped/listed").status_code == 404
        assert http.delete("/v1/aliases/mapped/listed", headers=headers).status_code == 404


class TestViews:
    def test_view_streams_projection_and_bytes(self, gateway, http,
                                                                        publisher):
        channels = [f"mapped/view/{n}" for n in range(5)]
        documents = {c: match(f"Home {n}", f"Away {n}") for n, c in enumerate(channels)}
        for channel, document in documents.items():
            publisher.publish(channel, document)
        url = f"{gateway.url}/v1/stream"
        view_client = SSEClient(url, params={"channel": "mapped/view/*", "view": "score"}).start()
        full_client = SSEClient(url, params={"channel": "mapped/view/*"}).start()
        view_bytes = RawSSEReader(url, params={"channel": "mapped/view/*", "view": "score"}).start()
        full_bytes = RawSSEReader(url, params={"channel": "mapped/view/*"}).start()
        readers = [view_client, full_client, view_bytes, full_bytes]
        fields = ("teams", "score", "status", "minute")

        def projection(document):
            return {key: document[key] for key in fields if key in document}

        def caught_up():
            expected = {c: projection(d) for c, d in documents.items()}
            full = {c: d for c, d in documents.items()}
            return (mirror_of(view_client).documents() == expected
                    and mirror_of(full_client).documents() == full)

        def all_synced():
            # The byte readers too, because one that syncs after the first change
            # gets that change in its snapshot and counts one event fewer.
            byte_readers = (view_bytes, full_bytes)
            snapshots = [reader.raw.count(b"event: snapshot") for reader in byte_readers]
            return caught_up() and snapshots == [len(channels)] * 2

        try:
            wait_for(all_synced, timeout=10, message="first snapshots")
            for step in range(1, 31):
                channel = channels[step % len(channels)]
                document = documents[channel]
                if step % 6 == 0:
                    document["score"] = [document["score"][0] + 1, document["score"][1]]
                    document["minute"] = step
                elif step % 3 == 0:
                    document["minute"] = step
                else:
                    # Outside the view: the view client gets no event for it.
                    document["events"] = document["events"] + [{"minute": step, "type": "card"}]
                    document["stats"] = {"shots": [step, step + 1]}
                view_events = len(view_client.events)
                publisher.publish(channel, document)
                wait_for(caught_up, timeout=10, message=f"change {step}")
                if step % 3:
                    time.sleep(0.05)
                    assert len(view_client.events) == view_events, view_client.events[view_events:]

            # Five first snapshots, then one event per change inside the view: a
            # delta, or a snapshot of the projection when that is smaller.
            changes = [e for e in view_client.events if e.event in ("snapshot", "delta")][5:]
            assert len(changes) == 10
            assert any("base_version" in e.json() for e in changes if e.event == "delta")
            wait_for(lambda: full_bytes.raw.count(b"event: ") == len(full_client.events)
                     and view_bytes.raw.count(b"event: ") == len(view_client.events),
                     timeout=10, message="byte readers caught up")
            ratio = len(view_bytes.raw) / len(full_bytes.raw)
            print(f"view bytes {len(view_bytes.raw)}, full bytes {len(full_bytes.raw)}, "
                  f"ratio {ratio:.3f}")
            assert ratio < 0.5
        finally:
            close_all(readers)

    def test_unknown_view_rejected(self, http):
        response = http.get("/v1/stream", params={"channel": "mapped/view/1", "view": "nope"})
        assert response.status_code == 400
        assert response.json()["error"] == "unknown_view"
        assert response.json()["views"] == ["score"]


class TestNamespaces:
    def test_namespace_log_length(self, publisher, redis_server_module):
        client = redis.Redis.from_url(redis_server_module.url)
        for channel in ("mapped/short/log", "mapped/other/log"):
            document = match("E", "F")
            for minute in range(6):
                document["minute"] = minute
                publisher.publish(channel, document)
        assert client.zcard(f"{PREFIX}:log:mapped/short/log") == 2
        assert client.zcard(f"{PREFIX}:log:mapped/other/log") == 6

    def test_namespace_heartbeat_interval(self, gateway, publisher):
        publisher.publish("mapped/short/beat", match("G", "H"))
        with RawSSEReader(f"{gateway.url}/v1/stream",
                          params={"channel": "mapped/short/beat"}).start() as reader:
            reader.wait_for_bytes(b": heartbeat", timeout=4)

    def test_namespace_auth_requires_token(self, gateway, http, publisher):
        publisher.publish("mapped/private/1", match("I", "J"))
        rejected = http.get("/v1/stream", params={"channel": "mapped/private/1"})
        assert rejected.status_code == 401
        token = jwt.encode({"channels": ["mapped/private/*"], "exp": int(time.time()) + 60},
                           JWT_SECRET, algorithm="HS256")
        with SSEClient(f"{gateway.url}/v1/stream",
                       params={"channel": "mapped/private/1", "token": token}).start() as client:
            assert client.status_code == 200
            client.wait_for(lambda events: any(e.event == "snapshot" for e in events))

    def test_namespace_snapshot_mode(self, gateway, publisher,
                                                             redis_server_module):
        document = match("K", "L")
        publisher.publish("mapped/snap/1", document)
        with SSEClient(f"{gateway.url}/v1/stream",
                       params={"channel": "mapped/snap/1"}).start() as client:
            for minute in range(2, 5):
                document["minute"] = minute
                publisher.publish("mapped/snap/1", document)
            client.wait_for(lambda events: documents_equal(client, "mapped/snap/1", document))
            kinds = {e.event for e in client.events if e.event in ("snapshot", "delta")}
            assert kinds == {"snapshot"}

    def test_namespace_subscriber_limit(self, gateway, publisher):
        publisher.publish("mapped/limited/1", match("M", "N"))
        readers = []
        try:
            for _ in range(6):
                readers.append(RawSSEReader(f"{gateway.url}/v1/stream",
                                            params={"channel": "mapped/limited/1"}).start())
            statuses = [reader.status_code for reader in readers]
            # Two workers hold at most two streams each.
            assert statuses.count(200) <= 4
            rejected = [reader for reader in readers if reader.status_code == 503]
            assert rejected
            assert b"namespace_full" in rejected[0].body
        finally:
            close_all(readers)


class TestRules:
    def test_rule_republishes_to_target(self, http):
        document = match("O", "P")
        response = http.post("/v1/publish/mapped/provider/7", json=document)
        assert response.status_code == 200, response.text
        assert [r["channel"] for r in response.json()["routed"]] == ["mapped/live/7"]
        assert http.get("/v1/channels/mapped/live/7").json()["data"] == document

    def test_rule_loop_stops_gateway(self, redis_server_module, tmp_path):
        path = tmp_path / "loop.toml"
        path.write_text('[[rules]]\nname = "ping"\nsource = "a/{id}"\ntargets = ["b/{id}"]\n'
                        '[[rules]]\nname = "pong"\nsource = "b/{id}"\ntargets = ["a/{id}"]\n')
        env = {"LIVEGATE_KEY_PREFIX": PREFIX, "LIVEGATE_CHANNELS_FILE": str(path)}
        broken = Gateway(redis_server_module.url, workers=1, env=env, log_dir=tmp_path)
        with pytest.raises(GatewayError):
            broken.start(timeout=10)
        broken.stop()
        assert "rule 'ping' forms a loop: ping -> pong -> ping" in broken.log_text()
