"""Publish tokens, subscriber JWTs and CORS.

The first classes test livegate.auth and the settings syntax alone. The
others run real gateways under gunicorn. One has publish tokens, protected
channels (HS256) and a CORS allowlist, another RS256, and a third is open.
"""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ingest.publisher import Publisher
from livegate.auth import (
    AuthenticationError, AuthorizationError, ChannelPrefixes, JwtVerifier, PublishAuth,
    SubscribeAuth, token_fingerprint,
)
from livegate.channels import parse_subscription
from livegate.settings import SettingError, Settings
from tests.support.gateway import Gateway, GatewayError
from tests.support.mirror import Mirror
from tests.support.sse import RawSSEReader, SSEClient

PREFIX = "auth"
FULL_TOKEN = "full-token-0123456789abcdefghij"
LIMITED_TOKEN = "limited-token-0123456789abcdef"
SECRET = "subscriber-secret-0123456789-abcdefghijklmnop"
ORIGIN = "https://app.example"
COOKIE = "lg_token"
# A long constant field keeps each patch smaller than its document, so that
# changes travel as deltas.
PAD = "constant text that makes every patch smaller than its document " * 4


def mint(channels, lifetime: float = 300.0, secret: str = SECRET, **claims) -> str:
    now = time.time()
    payload = {"channels": channels, "exp": int(now + lifetime), "iat": int(now), **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def settings_with(**values) -> Settings:
    return Settings.from_env({}).replace(**values)


def subscriptions(*texts: str):
    return tuple(parse_subscription(text) for text in texts)


# -- configuration syntax ---------------------------------------------------------------


class TestPublishTokenSyntax:
    def test_tokens_and_prefixes_parsed(self):
        settings = Settings.from_env({
            "LIVEGATE_PUBLISH_TOKENS": f" {FULL_TOKEN} , {LIMITED_TOKEN}@scores|news/uk ,",
        })

        assert settings.publish_tokens == (
            (FULL_TOKEN, ()), (LIMITED_TOKEN, ("scores", "news/uk")),
        )

    @pytest.mark.parametrize("raw, reason", [
        ("short", "shorter than 16"),
        ("has space in the token value", "character outside"),
        ("abcdefghijklmnop\u00e9q", "character outside"),
        (f"{FULL_TOKEN},{FULL_TOKEN}", "listed twice"),
        (f"{FULL_TOKEN}@news/", "empty segment"),
        (f"{FULL_TOKEN}@news/*", "wildcards"),
    ])
    def test_invalid_entry_rejected_without_echo(self, raw, reason):
        with pytest.raises(SettingError) as caught:
            Settings.from_env({"LIVEGATE_PUBLISH_TOKENS": raw})

        message = str(caught.value)
        assert reason in message
        assert "LIVEGATE_PUBLISH_TOKENS=(secret," in message
        assert FULL_TOKEN not in message
        assert "abcdefghijklmnop" not in message

    def test_short_jwt_secret_not_echoed(self):
        with pytest.raises(SettingError) as caught:
            Settings.from_env({"LIVEGATE_SUBSCRIBE_JWT_SECRET": "too-short-secret"})

        assert "at least 32 bytes" in str(caught.value)
        assert "too-short-secret" not in str(caught.value)


class TestOtherSyntax:
    def test_origins_normalised(self):
        settings = Settings.from_env({
            "LIVEGATE_CORS_ORIGINS": "HTTPS://App.Example:443, http://localhost:3000",
        })

        assert settings.cors_origins == ("https://app.example", "http://localhost:3000")

    @pytest.mark.parametrize("raw", ["https://a.example/", "app.example", "ftp://a.example",
                                     "https://a.example/path", "*", "https://u@a.example"])
    def test_invalid_origin_rejected(self, raw):
        with pytest.raises(SettingError, match="LIVEGATE_CORS_ORIGINS"):
            Settings.from_env({"LIVEGATE_CORS_ORIGINS": raw})

    def test_subscribe_prefixes(self):
        settings = Settings.from_env({"LIVEGATE_SUBSCRIBE_AUTH_PREFIXES": "private, vip/box"})

        assert settings.subscribe_auth_prefixes == ("private", "vip/box")

    @pytest.mark.parametrize("raw", ["private/*", "a//b", "**, private"])
    def test_invalid_subscribe_prefix_rejected(self, raw):
        with pytest.raises(SettingError, match="LIVEGATE_SUBSCRIBE_AUTH_PREFIXES"):
            Settings.from_env({"LIVEGATE_SUBSCRIBE_AUTH_PREFIXES": raw})

    @pytest.mark.parametrize("raw", ["a b", "a;b", "a=b", ""])
    def test_invalid_cookie_name_rejected(self, raw):
        if raw == "":
            assert Settings.from_env({"LIVEGATE_SUBSCRIBE_TOKEN_COOKIE": raw}) \
                .subscribe_token_cookie == "livegate_token"
            return
        with pytest.raises(SettingError, match="LIVEGATE_SUBSCRIBE_TOKEN_COOKIE"):
            Settings.from_env({"LIVEGATE_SUBSCRIBE_TOKEN_COOKIE": raw})


# -- livegate.auth alone ----------------------------------------------------------------


class TestChannelPrefixes:
    PREFIXES = ChannelPrefixes(["news", "vip/box"])

    @pytest.mark.parametrize("channel, covered", [
        ("news", True), ("news/uk", True), ("news/uk/1", True), ("newsroom", False),
        ("vip/box", True), ("vip/box/7", True), ("vip/boxes", False), ("vip", False),
        ("sport/news", False),
    ])
    def test_covers_whole_segments(self, channel, covered):
        assert self.PREFIXES.covers(channel) is covered

    @pytest.mark.parametrize("pattern, overlaps, encloses", [
        ("**", True, False),
        ("*", True, False),
        ("news/*", True, True),
        ("news/**", True, True),
        ("*/uk", True, False),
        ("vip/*", True, False),
        ("vip/*/7", True, False),
        ("vip/box/**", True, True),
        ("vip/other/*", False, False),
        ("sport/*", False, False),
        ("*/*/*/*", True, False),
        ("newsroom/*", False, False),
    ])
    def test_pattern_overlap_and_enclosure(self, pattern, overlaps, encloses):
        subscription = parse_subscription(pattern)

        assert self.PREFIXES.overlaps(subscription) is overlaps
        assert self.PREFIXES.encloses(subscription) is encloses

    def test_star_star_covers_everything(self):
        everything = ChannelPrefixes(["**"])

        assert everything.covers("any/channel")
        assert everything.encloses(parse_subscription("x/*"))


class TestPublishAuth:
    AUTH = PublishAuth([(FULL_TOKEN, ()), (LIMITED_TOKEN, ("scores", "news/uk"))])

    def test_missing_token_is_401_without_challenge_error(self):
        with pytest.raises(AuthenticationError) as caught:
            self.AUTH.authenticate(None)

        assert caught.value.status == 401
        assert caught.value.token_presented is False

    def test_unknown_token_is_401(self):
        with pytest.raises(AuthenticationError) as caught:
            self.AUTH.authenticate(FULL_TOKEN + "x")

        assert caught.value.token_presented is True

    def test_non_ascii_token_is_401(self):
        with pytest.raises(AuthenticationError):
            self.AUTH.authenticate("t\u00f6ken\udc80")

    def test_full_token_allows_every_channel(self):
        grant = self.AUTH.authenticate(FULL_TOKEN)

        self.AUTH.authorize(grant, "anything/at/all")
        assert grant.fingerprint == token_fingerprint(FULL_TOKEN)

    @pytest.mark.parametrize("channel, allowed", [
        ("scores", True), ("scores/1", True), ("news/uk", True), ("news/uk/7", True),
        ("news", False), ("news/fr", False), ("scoresheet", False), ("other", False),
    ])
    def test_limited_token_allows_its_prefixes(self, channel, allowed):
        grant = self.AUTH.authenticate(LIMITED_TOKEN)

        if allowed:
            self.AUTH.authorize(grant, channel)
        else:
            with pytest.raises(AuthorizationError) as caught:
                self.AUTH.authorize(grant, channel)
            assert caught.value.status == 403

    def test_only_digests_kept(self):
        assert FULL_TOKEN not in repr(vars(self.AUTH))


class TestSubscribeAuth:
    AUTH = SubscribeAuth(
        ChannelPrefixes(["private", "vip/box"]),
        JwtVerifier("HS256", SECRET.encode(), None, None, leeway=0),
    )

    def test_open_subscriptions_need_nothing(self):
        assert self.AUTH.authorize(subscriptions("open/1", "open/*"), None) is None
        assert self.AUTH.authorize(subscriptions("open/1"), "not even a jwt") is None

    def test_exact_protected_without_token_is_401(self):
        with pytest.raises(AuthenticationError) as caught:
            self.AUTH.authorize(subscriptions("open/1", "private/a"), None)

        assert caught.value.fields["channel"] == "private/a"

    def test_enclosed_pattern_without_token_is_401(self):
        with pytest.raises(AuthenticationError):
            self.AUTH.authorize(subscriptions("vip/box/*"), None)

    def test_wide_pattern_without_token_gets_open_channels(self):
        access = self.AUTH.authorize(subscriptions("**"), None)

        assert access.expires_at is None
        assert access.channels.permits("open/1")
        assert not access.channels.permits("private/a")
        assert not access.channels.permits("vip/box/1")
        assert access.channels.permits("vip/other")

    def test_token_grants_exact_and_pattern(self):
        token = mint(["private/a", "vip/box/*"])

        access = self.AUTH.authorize(subscriptions("private/a", "vip/box/1", "**"), token)

        assert access.channels.permits("private/a")
        assert not access.channels.permits("private/b")
        assert access.channels.permits("vip/box/1")
        assert not access.channels.permits("vip/box/1/2")
        assert access.channels.permits("open/x")
        assert access.fingerprint == token_fingerprint(token)
        assert access.expires_at == pytest.approx(time.time() + 300, abs=5)

    def test_ungranted_exact_channel_is_403(self):
        with pytest.raises(AuthorizationError) as caught:
            self.AUTH.authorize(subscriptions("private/b"), mint(["private/a"]))

        assert caught.value.status == 403

    @pytest.mark.parametrize("token, reason", [
        (mint(["private/a"], lifetime=-10), "expired"),
        (mint(["private/a"], nbf=int(time.time()) + 600), "not valid yet"),
        (mint(["private/a"], secret="another-secret-0123456789-abcdefghijklmn"), "not valid"),
        (jwt.encode({"channels": ["private/a"]}, SECRET, algorithm="HS256"), "no exp claim"),
        (mint("private/a"), "must be a list"),
        (mint(["private/a", "bad//name"]), "contains an invalid entry"),
        (mint(["private/a"], aud="somebody"), "aud"),
        ("not-a-jwt", "not valid"),
        (jwt.encode({"channels": ["private/a"], "exp": int(time.time()) + 60}, None,
                    algorithm="none"), "not valid"),
    ])
    def test_invalid_token_is_401(self, token, reason):
        with pytest.raises(AuthenticationError) as caught:
            self.AUTH.authorize(subscriptions("private/a"), token)

        assert reason in caught.value.message
        assert caught.value.token_presented is True


class TestVerifierSettings:
    def test_prefixes_without_secret_rejected(self):
        with pytest.raises(SettingError, match="LIVEGATE_SUBSCRIBE_JWT_SECRET"):
            SubscribeAuth.from_settings(settings_with(subscribe_auth_prefixes=("private",)))

    def test_no_prefixes_means_no_policy(self):
        assert SubscribeAuth.from_settings(settings_with(subscribe_jwt_secret=SECRET)) is None

    def test_rs256_needs_a_key(self):
        with pytest.raises(SettingError, match="RS256 needs"):
            SubscribeAuth.from_settings(settings_with(
                subscribe_auth_prefixes=("private",), subscribe_jwt_algorithm="RS256"))

    def test_rs256_rejects_garbage_key_file(self, tmp_path):
        key_file = tmp_path / "key.pem"
        key_file.write_text("not a key")

        with pytest.raises(SettingError, match="not a PEM public key"):
            SubscribeAuth.from_settings(settings_with(
                subscribe_auth_prefixes=("private",), subscribe_jwt_algorithm="RS256",
                subscribe_jwt_public_key_file=str(key_file)))

    def test_rs256_rejects_small_key(self):
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        pem = small.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

        with pytest.raises(SettingError, match="at least 2048 bits"):
            SubscribeAuth.from_settings(settings_with(
                subscribe_auth_prefixes=("private",), subscribe_jwt_algorithm="RS256",
                subscribe_jwt_public_key=pem))


# -- gateways ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(redis_server_module, tmp_path_factory):
    server = Gateway(
        redis_server_module.url, workers=2,
        env={
            "LIVEGATE_KEY_PREFIX": PREFIX,
            "LIVEGATE_HEARTBEAT_INTERVAL": "1",
            "LIVEGATE_PUBLISH_TOKENS": f"{FULL_TOKEN},{LIMITED_TOKEN}@scores|news/uk",
            "LIVEGATE_SUBSCRIBE_AUTH_PREFIXES": "private,vip/box",
            "LIVEGATE_SUBSCRIBE_JWT_SECRET": SECRET,
            "LIVEGATE_SUBSCRIBE_JWT_LEEWAY": "0",
            "LIVEGATE_SUBSCRIBE_TOKEN_COOKIE": COOKIE,
            "LIVEGATE_CORS_ORIGINS": f"{ORIGIN},http://localhost:3000",
        },
        log_dir=tmp_path_factory.mktemp("gateway"),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def publisher(redis_server_module):
    return Publisher(redis.Redis.from_url(redis_server_module.url), key_prefix=PREFIX)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get_stream(gateway, channels, headers=None, params=(), cookies=None) -> httpx.Response:
    """Open a stream and return its response once the headers are in; the body is not read."""
    query = [("channel", channel) for channel in channels] + list(params)
    with httpx.Client(base_url=gateway.url, timeout=5, cookies=cookies) as http:
        with http.stream("GET", "/v1/stream", params=query, headers=headers) as response:
            if response.status_code != 200:
                response.read()
            return response


def open_stream(gateway, *channels, headers=None, params=(), **options) -> SSEClient:
    query = [("channel", channel) for channel in channels] + list(params)
    client = SSEClient(f"{gateway.url}/v1/stream", params=query, headers=headers, **options)
    client.start()
    assert client.status_code == 200, client.body
    return client


@pytest.mark.integration
class TestPublishTokens:
    def post(self, gateway, channel, headers=None, document=None):
        with httpx.Client(base_url=gateway.url, timeout=5) as http:
            return http.post(f"/v1/publish/{channel}", json=document or {"a": 1},
                             headers=headers)

    def test_missing_token_answers_401(self, gateway):
        response = self.post(gateway, "tokens/none")

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="livegate"'
        assert response.json()["error"] == "unauthorized"
        with httpx.Client(base_url=gateway.url) as http:
            assert http.get("/v1/channels/tokens/none").status_code == 404

    def test_unknown_token_answers_401_invalid_token(self, gateway):
        response = self.post(gateway, "tokens/unknown", bearer("unknown-token-0123456789"))

        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]

    def test_basic_scheme_answers_401(self, gateway):
        response = self.post(gateway, "tokens/basic", {"Authorization": f"Basic {FULL_TOKEN}"})

        assert response.status_code == 401

    def test_token_checked_before_channel_name(self, gateway):
        response = self.post(gateway, "bad//name")

        assert response.status_code == 401

    def test_both_rotation_tokens_publish(self, gateway):
        full = self.post(gateway, "tokens/full", bearer(FULL_TOKEN))
        limited = self.post(gateway, "scores/1", bearer(LIMITED_TOKEN))

        assert full.status_code == 200, full.text
        assert limited.status_code == 200, limited.text
        assert limited.json()["channel"] == "scores/1"

    @pytest.mark.parametrize("channel, status", [
        ("scores", 200), ("news/uk/7", 200), ("news", 403), ("news/fr", 403),
        ("scoresheet/1", 403), ("private/a", 403),
    ])
    def test_limited_token_confined_to_prefixes(self, gateway, channel, status):
        response = self.post(gateway, channel, bearer(LIMITED_TOKEN))

        assert response.status_code == status, response.text
        if status == 403:
            assert response.json()["error"] == "forbidden"
            assert response.json()["channel"] == channel
            assert 'error="insufficient_scope"' in response.headers["www-authenticate"]

    def test_log_holds_fingerprints_not_tokens(self, gateway):
        presented = "presented-token-for-the-log-0123"
        self.post(gateway, "tokens/log", bearer(presented))

        gateway.wait_for_log(token_fingerprint(presented))
        log = gateway.log_text()
        for token in (presented, FULL_TOKEN, LIMITED_TOKEN, SECRET):
            assert token not in log


@pytest.mark.integration
class TestSubscriberTokens:
    def test_open_channel_needs_no_token(self, gateway):
        assert get_stream(gateway, ["open/1"]).status_code == 200

    def test_protected_channel_without_token_answers_401(self, gateway):
        response = get_stream(gateway, ["open/1", "private/a"])

        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["www-authenticate"] == 'Bearer realm="livegate"'
        assert response.json()["channel"] == "private/a"

    def test_enclosed_pattern_without_token_answers_401(self, gateway):
        assert get_stream(gateway, ["private/*"]).status_code == 401

    def test_invalid_token_answers_401(self, gateway):
        response = get_stream(gateway, ["private/a"], headers=bearer("garbage"))

        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]

    def test_expired_token_answers_401(self, gateway):
        response = get_stream(gateway, ["private/a"], headers=bearer(mint(["private/a"], -5)))

        assert response.status_code == 401
        assert "expired" in response.json()["message"]

    def test_ungranted_channel_answers_403(self, gateway):
        response = get_stream(gateway, ["private/b"], headers=bearer(mint(["private/a"])))

        assert response.status_code == 403
        assert response.json() == {
            "error": "forbidden", "channel": "private/b",
            "message": "the subscriber token does not grant 'private/b'",
        }

    @pytest.mark.parametrize("carrier", ["header", "query", "cookie"])
    def test_token_accepted_from_each_carrier(self, gateway, publisher, carrier):
        channel = f"private/{carrier}"
        publisher.publish(channel, {"carrier": carrier})
        token = mint([channel])
        options = {
            "header": {"headers": bearer(token)},
            "query": {"params": [("token", token)]},
            "cookie": {"headers": {"Cookie": f"{COOKIE}={token}"}},
        }[carrier]

        client = open_stream(gateway, channel, **options)
        try:
            event = client.wait_for_count(1)[0]
            assert event.json()["data"] == {"carrier": carrier}
        finally:
            client.close()

    def test_pattern_delivers_only_granted_channels(self, gateway, publisher):
        publisher.publish("mixed/open", {"n": 0})
        publisher.publish("private/granted", {"n": 0, "pad": PAD})
        publisher.publish("private/secret", {"n": 0, "pad": PAD, "secret": "EXISTING"})
        token_client = open_stream(gateway, "**", headers=bearer(mint(["private/granted"])))
        anonymous = open_stream(gateway, "*/*")
        try:
            for n in range(1, 4):
                publisher.publish("private/secret", {"n": n, "pad": PAD, "secret": "LIVE"})
                publisher.publish("private/granted", {"n": n, "pad": PAD})
                publisher.publish("mixed/open", {"n": n})
            publisher.publish("private/new", {"created": "after connect", "secret": "NEW"})
            publisher.publish("mixed/last", {"done": True})

            for client in (token_client, anonymous):
                client.wait_for(lambda events: any(
                    e.json()["channel"] == "mixed/last" for e in events), timeout=10)
            token_channels = {e.json()["channel"] for e in token_client.events}
            anonymous_channels = {e.json()["channel"] for e in anonymous.events}
            assert {"mixed/open", "mixed/last", "private/granted"} <= token_channels
            assert not {c for c in token_channels if c.startswith("private/")} - {"private/granted"}
            assert {"mixed/open", "mixed/last"} <= anonymous_channels
            assert not {c for c in anonymous_channels if c.startswith("private/")}
            for client in (token_client, anonymous):
                assert not any("secret" in e.data for e in client.events)
            mirror = Mirror()
            mirror.apply_events(token_client.events)
            assert mirror.documents()["private/granted"] == {"n": 3, "pad": PAD}
        finally:
            token_client.close()
            anonymous.close()

    def test_resume_filters_missed_frames(self, gateway, publisher):
        publisher.publish("resume/open", {"n": 0, "pad": PAD})
        publisher.publish("private/resume-mine", {"n": 0, "pad": PAD})
        publisher.publish("private/resume-other", {"n": 0, "pad": PAD})
        token = mint(["private/resume-mine"])
        first = open_stream(gateway, "**", headers=bearer(token))
        try:
            first.wait_for(lambda events: any(
                e.json()["channel"] == "private/resume-mine" for e in events))
            last_id = first.last_event_id
        finally:
            first.close()
        for n in range(1, 4):
            publisher.publish("private/resume-other", {"n": n, "pad": PAD})
            publisher.publish("private/resume-mine", {"n": n, "pad": PAD})
            publisher.publish("resume/open", {"n": n, "pad": PAD})

        second = open_stream(gateway, "**", headers=bearer(token), last_event_id=last_id)
        try:
            events = second.wait_for(lambda events: [
                e for e in events
                if e.json()["channel"] == "resume/open" and e.json()["version"] == 4
            ] and events, timeout=10)
            channels = [e.json()["channel"] for e in events]
            assert "private/resume-other" not in channels
            mine = [e for e in events if e.json()["channel"] == "private/resume-mine"]
            assert [(e.event, e.json()["version"]) for e in mine] == [
                ("delta", 2), ("delta", 3), ("delta", 4)]
        finally:
            second.close()

    def test_expired_token_ends_stream_with_event(self, gateway, publisher):
        channel = "private/expiring"
        document = {"n": 0, "pad": PAD}
        publisher.publish(channel, document)
        reader = RawSSEReader(f"{gateway.url}/v1/stream", params={"channel": channel},
                              headers=bearer(mint([channel], lifetime=2)))
        reader.start()
        try:
            assert reader.status_code == 200
            reader.wait_for_bytes(b"event: snapshot")
            started = time.monotonic()
            reader.wait_for(lambda raw: reader.finished, timeout=6)
            elapsed = time.monotonic() - started
        finally:
            reader.close()

        assert elapsed < 4.5
        tail = reader.raw.split(b"event: token-expired\n", 1)[1]
        data_line, _, rest = tail.partition(b"\n")
        assert data_line.startswith(b"data: ")
        assert "reason" in json.loads(data_line[6:])
        assert rest.startswith(b"\nretry: ")
        assert rest.endswith(b"\n\n")
        assert b"id:" not in tail

        # The client renews its token and resumes where it stopped.
        last_id = [line for line in reader.lines() if line.startswith("id: ")][-1][4:]
        document = {**document, "n": 1}
        publisher.publish(channel, document)
        renewed = open_stream(gateway, channel, headers=bearer(mint([channel])),
                              last_event_id=last_id)
        try:
            event = renewed.wait_for_count(1)[0]
            assert (event.event, event.json()["version"]) == ("delta", 2)
        finally:
            renewed.close()


@pytest.mark.integration
class TestCors:
    def test_allowed_origin_gets_credentials(self, gateway):
        with httpx.Client(base_url=gateway.url) as http:
            response = http.get("/v1/channels", headers={"Origin": ORIGIN})

        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in response.headers["vary"]

    @pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.evil",
                                        "http://app.example", "null"])
    def test_other_origin_gets_no_cors_headers(self, gateway, origin):
        with httpx.Client(base_url=gateway.url) as http:
            response = http.get("/v1/channels", headers={"Origin": origin})
            preflight = http.options("/v1/publish/x", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"})

        for answer in (response, preflight):
            assert not [h for h in answer.headers if h.lower().startswith("access-control-")]
            assert "Origin" in answer.headers["vary"]

    def test_preflight_for_publish(self, gateway):
        with httpx.Client(base_url=gateway.url) as http:
            response = http.options("/v1/publish/scores/1", headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            })

        assert response.status_code in (200, 204)
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in response.headers["access-control-allow-methods"]
        allowed = {h.strip().lower() for h in
                   response.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert response.headers["access-control-max-age"] == "600"

    def test_cross_origin_publish_and_error(self, gateway):
        with httpx.Client(base_url=gateway.url) as http:
            denied = http.post("/v1/publish/cors/1", json={"a": 1}, headers={"Origin": ORIGIN})
            accepted = http.post("/v1/publish/cors/1", json={"a": 1},
                                 headers={"Origin": ORIGIN, **bearer(FULL_TOKEN)})

        assert denied.status_code == 401
        assert denied.headers["access-control-allow-origin"] == ORIGIN
        assert "WWW-Authenticate" in denied.headers["access-control-expose-headers"]
        assert accepted.status_code == 200

    def test_stream_with_and_without_credentials(self, gateway, publisher):
        publisher.publish("private/cors", {"cors": True})
        publisher.publish("open/cors", {"cors": True})
        with_cookie = open_stream(gateway, "private/cors", headers={
            "Origin": ORIGIN, "Cookie": f"{COOKIE}={mint(['private/cors'])}"})
        without = open_stream(gateway, "open/cors", headers={"Origin": "http://localhost:3000"})
        try:
            for client, origin in ((with_cookie, ORIGIN), (without, "http://localhost:3000")):
                assert client.response_headers["access-control-allow-origin"] == origin
                assert client.response_headers["access-control-allow-credentials"] == "true"
                assert client.wait_for_count(1)[0].json()["data"] == {"cors": True}
        finally:
            with_cookie.close()
            without.close()


@pytest.fixture(scope="module")
def keys():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public_pem


@pytest.fixture(scope="module")
def rs_gateway(redis_server_module, tmp_path_factory, keys):
    folder = tmp_path_factory.mktemp("rs256")
    key_file = folder / "public.pem"
    key_file.write_bytes(keys[1])
    server = Gateway(
        redis_server_module.url, workers=1,
        env={
            "LIVEGATE_KEY_PREFIX": PREFIX,
            "LIVEGATE_PUBLISH_TOKENS": FULL_TOKEN,
            "LIVEGATE_SUBSCRIBE_AUTH_PREFIXES": "**",
            "LIVEGATE_SUBSCRIBE_JWT_ALGORITHM": "RS256",
            "LIVEGATE_SUBSCRIBE_JWT_PUBLIC_KEY_FILE": str(key_file),
            "LIVEGATE_SUBSCRIBE_JWT_AUDIENCE": "livegate-test",
            "LIVEGATE_SUBSCRIBE_JWT_ISSUER": "https://issuer.example",
        },
        log_dir=folder,
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.integration
class TestRs256:
    def rs_token(self, private, **overrides) -> str:
        claims = {"channels": ["rs/*"], "exp": int(time.time()) + 60,
                  "aud": "livegate-test", "iss": "https://issuer.example", **overrides}
        return jwt.encode(claims, private, algorithm="RS256")

    def test_valid_token_streams(self, rs_gateway, publisher, keys):
        publisher.publish("rs/1", {"rs": 1})
        client = open_stream(rs_gateway, "rs/1", headers=bearer(self.rs_token(keys[0])))
        try:
            assert client.wait_for_count(1)[0].json()["data"] == {"rs": 1}
        finally:
            client.close()

    def test_every_channel_protected(self, rs_gateway):
        assert get_stream(rs_gateway, ["open/1"]).status_code == 401

    def test_wrong_claims_and_algorithm_answer_401(self, rs_gateway, keys):
        confused = jwt.encode({"channels": ["rs/*"], "exp": int(time.time()) + 60,
                               "aud": "livegate-test", "iss": "https://issuer.example"},
                              "x" * 64, algorithm="HS256")
        cases = {
            "aud": self.rs_token(keys[0], aud="someone-else"),
            "iss": self.rs_token(keys[0], iss="https://other.example"),
            "not valid": confused,
        }
        for reason, token in cases.items():
            response = get_stream(rs_gateway, ["rs/1"], headers=bearer(token))
            assert response.status_code == 401, reason
            assert reason in response.json()["message"]

    def test_pyjwt_refuses_public_key_as_hmac_secret(self, keys):
        # The classic algorithm confusion: an HS256 token signed with the
        # public key. PyJWT refuses to use a PEM key as an HMAC secret.
        with pytest.raises(jwt.InvalidKeyError):
            jwt.encode({"channels": ["rs/*"]}, keys[1], algorithm="HS256")


@pytest.mark.integration
class TestStartChecks:
    def test_open_gateway_warns_once(self, redis_server_module, gateway_factory):
        server = gateway_factory(redis_server_module.url, workers=2,
                                 env={"LIVEGATE_KEY_PREFIX": PREFIX})
        server.wait_for_log("LIVEGATE_PUBLISH_TOKENS is empty")
        with httpx.Client(base_url=server.url) as http:
            assert http.post("/v1/publish/open/anyone", json={"a": 1}).status_code == 200

        assert server.log_text().count("LIVEGATE_PUBLISH_TOKENS is empty") == 1

    def test_missing_secret_stops_start(self, redis_server_module, gateway_factory):
        with pytest.raises(GatewayError) as caught:
            gateway_factory(redis_server_module.url, workers=1, env={
                "LIVEGATE_KEY_PREFIX": PREFIX, "LIVEGATE_SUBSCRIBE_AUTH_PREFIXES": "private"})

        assert "LIVEGATE_SUBSCRIBE_JWT_SECRET is empty" in str(caught.value)
