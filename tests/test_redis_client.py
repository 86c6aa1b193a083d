"""Unit tests of livegate.redis_client and the Sentinel settings. Nothing connects here.

tests/test_sentinel.py runs the same code against real sentinels.
"""

from __future__ import annotations

import pytest
import redis
from redis.connection import SSLConnection
from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from livegate.redis_client import (
    BlockingSentinelConnectionPool, _SentinelPool, client_for_channel, connect,
)
from livegate.settings import SettingError, Settings

SENTINELS = "sentinel-0:26379,sentinel-1:26380"


def settings(**environ: str) -> Settings:
    return Settings.from_env(environ)


class TestSentinelSettings:
    @pytest.mark.parametrize("text, expected", [
        ("a:1", (("a", 1),)),
        ("a", (("a", 26379),)),
        (" a:1 , b:2 ,", (("a", 1), ("b", 2))),
        ("[::1]:26380", (("::1", 26380),)),
        ("[fd00::5]", (("fd00::5", 26379),)),
        ("10.0.0.7:65535", (("10.0.0.7", 65535),)),
    ])
    def test_addresses_parse(self, text, expected):
        assert settings(LIVEGATE_REDIS_SENTINELS=text).redis_sentinels == expected

    @pytest.mark.parametrize("text, message", [
        ("a:0", "invalid port"),
        ("a:65536", "invalid port"),
        ("a:x", "invalid port"),
        ("a:１２", "invalid port"),
        (":26379", "no valid host"),
        ("::1:26379", "IPv6 address in brackets"),
        ("[::1", "[IPv6]:port"),
        ("[::1]26379", "[IPv6]:port"),
        ("a:1,a:1", "listed twice"),
        ("a,a:26379", "listed twice"),
    ])
    def test_invalid_address_rejected(self, text, message):
        with pytest.raises(SettingError, match="LIVEGATE_REDIS_SENTINELS") as raised:
            settings(LIVEGATE_REDIS_SENTINELS=text)
        assert message in str(raised.value)

    def test_service_default(self):
        assert settings().redis_sentinel_service == "mymaster"

    @pytest.mark.parametrize("text", ["my master", "naïve", "tab\tname"])
    def test_invalid_service_rejected(self, text):
        with pytest.raises(SettingError, match="LIVEGATE_REDIS_SENTINEL_SERVICE"):
            settings(LIVEGATE_REDIS_SENTINEL_SERVICE=text)


class TestConnectWithoutSentinels:
    def test_unbounded_pool_by_default(self):
        client = connect(settings(REDIS_URL="redis://cache.internal:6380/2"))
        pool = client.connection_pool
        assert type(pool) is redis.ConnectionPool
        assert pool.connection_kwargs["host"] == "cache.internal"
        assert pool.connection_kwargs["port"] == 6380
        assert pool.connection_kwargs["db"] == 2
        assert pool.connection_kwargs["socket_timeout"] == 10.0
        assert pool.connection_kwargs["socket_connect_timeout"] == 5.0

    def test_blocking_pool_with_max_connections(self):
        client = connect(settings(), max_connections=7, pool_timeout=3)
        pool = client.connection_pool
        assert type(pool) is redis.BlockingConnectionPool
        assert pool.max_connections == 7
        assert pool.timeout == 3

    def test_non_blocking_bounded_pool(self):
        client = connect(settings(), max_connections=7, blocking=False)
        pool = client.connection_pool
        assert type(pool) is redis.ConnectionPool
        assert pool.max_connections == 7

    def test_url_query_overrides_arguments(self):
        client = connect(settings(REDIS_URL="redis://h:1/0?socket_timeout=3"), socket_timeout=9)
        assert client.connection_pool.connection_kwargs["socket_timeout"] == 3.0

    def test_extra_options_reach_connections(self):
        client = connect(settings(), health_check_interval=30)
        assert client.connection_pool.connection_kwargs["health_check_interval"] == 30

    def test_invalid_url_rejected(self):
        with pytest.raises(SettingError, match="invalid REDIS_URL"):
            connect(settings(REDIS_URL="http://example.com"))


class TestConnectWithSentinels:
    def test_sentinel_pool_ignores_url_address(self):
        client = connect(settings(
            REDIS_URL="redis://app:secret@ignored.example:1/4",
            LIVEGATE_REDIS_SENTINELS=SENTINELS,
            LIVEGATE_REDIS_SENTINEL_SERVICE="cache",
        ))
        pool = client.connection_pool
        assert type(pool) is _SentinelPool
        assert pool.service_name == "cache"
        assert pool.connection_class is SentinelManagedConnection
        assert "host" not in pool.connection_kwargs
        assert "port" not in pool.connection_kwargs
        assert pool.connection_kwargs["username"] == "app"
        assert pool.connection_kwargs["password"] == "secret"
        assert pool.connection_kwargs["db"] == 4

    def test_sentinel_addresses_and_password(self):
        client = connect(settings(
            LIVEGATE_REDIS_SENTINELS=SENTINELS, LIVEGATE_REDIS_SENTINEL_PASSWORD="sentinel-secret",
        ), socket_connect_timeout=1.5)
        sentinels = client.connection_pool.sentinel_manager.sentinels
        addresses = [(s.connection_pool.connection_kwargs["host"],
                      s.connection_pool.connection_kwargs["port"]) for s in sentinels]
        assert addresses == [("sentinel-0", 26379), ("sentinel-1", 26380)]
        for sentinel in sentinels:
            assert sentinel.connection_pool.connection_kwargs["password"] == "sentinel-secret"
            assert sentinel.connection_pool.connection_kwargs["socket_connect_timeout"] == 1.5

    def test_sentinels_without_password_send_no_auth(self):
        client = connect(settings(REDIS_URL="redis://:primary-secret@h:1/0",
                                  LIVEGATE_REDIS_SENTINELS=SENTINELS))
        for sentinel in client.connection_pool.sentinel_manager.sentinels:
            assert sentinel.connection_pool.connection_kwargs.get("password") is None

    def test_blocking_sentinel_pool_with_max_connections(self):
        client = connect(settings(LIVEGATE_REDIS_SENTINELS=SENTINELS),
                         max_connections=5, pool_timeout=2)
        pool = client.connection_pool
        assert type(pool) is BlockingSentinelConnectionPool
        assert isinstance(pool, redis.BlockingConnectionPool)
        assert pool.max_connections == 5
        assert pool.timeout == 2

    def test_non_blocking_sentinel_pool(self):
        client = connect(settings(LIVEGATE_REDIS_SENTINELS=SENTINELS),
                         max_connections=5, blocking=False)
        pool = client.connection_pool
        assert type(pool) is _SentinelPool
        assert pool.max_connections == 5

    def test_url_query_overrides_arguments(self):
        client = connect(settings(REDIS_URL="redis://h:1/0?max_connections=3",
                                  LIVEGATE_REDIS_SENTINELS=SENTINELS), max_connections=9)
        assert client.connection_pool.max_connections == 3

    def test_tls_url_makes_every_connection_tls(self):
        client = connect(settings(
            REDIS_URL="rediss://:secret@h:1/0?ssl_cert_reqs=none",
            LIVEGATE_REDIS_SENTINELS=SENTINELS,
        ))
        pool = client.connection_pool
        assert pool.connection_class is SentinelManagedSSLConnection
        assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
        for sentinel in pool.sentinel_manager.sentinels:
            assert sentinel.connection_pool.connection_class is SSLConnection
            assert sentinel.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"

    def test_unix_url_rejected(self):
        with pytest.raises(SettingError, match="unix://"):
            connect(settings(REDIS_URL="unix:///run/redis.sock",
                             LIVEGATE_REDIS_SENTINELS=SENTINELS))

    def test_invalid_url_rejected(self):
        with pytest.raises(SettingError, match="invalid REDIS_URL"):
            connect(settings(REDIS_URL="http://example.com", LIVEGATE_REDIS_SENTINELS=SENTINELS))


def test_every_channel_on_the_one_client():
    client = connect(settings())

    assert client_for_channel(client, "sport-livescore/4312") is client
    assert client_for_channel(client, "news") is client
