"""Unit tests of livegate.settings: defaults, parsing, bounds, errors and describe()."""

from __future__ import annotations

import pytest

from livegate.settings import SETTINGS, SettingError, Settings, describe

# Written out here rather than read from SETTINGS, so that a changed default or bound
# shows up as a test failure to review.
EXPECTED_DEFAULTS = {
    "redis_url": "redis://127.0.0.1:6379/0",
    "redis_sentinels": (),
    "redis_sentinel_service": "mymaster",
    "redis_sentinel_password": "",
    "key_prefix": "lg",
    "ring_size_mb": 16,
    "heartbeat_interval": 20.0,
    "retry_ms": 2000,
    "retry_jitter_ms": 3000,
    "client_queue_bytes": 1_048_576,
    "stream_send_buffer_bytes": 262_144,
    "stream_compression": "off",
    "stream_compression_window_bits": 10,
    "max_subscriptions": 50,
    "channel_log_length": 200,
    "global_log_length": 10_000,
    "max_replay": 1000,
    "max_publish_bytes": 1_048_576,
    "subscriber_stale_after": 3.0,
    "batch_window_ms": 40,
    "batch_full_rate": 200.0,
    "probe_interval": 5.0,
    "probe_timeout": 3.0,
    "shutdown_window": 5.0,
    "log_level": "info",
    "log_format": "text",
    "metrics_dir": "",
    "publish_read_timeout": 10.0,
    "max_document_depth": 32,
    "max_streams_per_worker": 9000,
    "max_streams_per_address": 0,
    "publish_tokens": (),
    "subscribe_auth_prefixes": (),
    "admin_tokens": (),
    "channels_file": "",
    "subscribe_jwt_algorithm": "HS256",
    "subscribe_jwt_secret": "",
    "subscribe_jwt_public_key": "",
    "subscribe_jwt_public_key_file": "",
    "subscribe_jwt_audience": "",
    "subscribe_jwt_issuer": "",
    "subscribe_jwt_leeway": 5.0,
    "subscribe_token_cookie": "livegate_token",
    "cors_origins": (),
    "cors_max_age": 600,
}

INTEGER_BOUNDS = [
    ("LIVEGATE_RING_SIZE_MB", "ring_size_mb", 1, 4096),
    ("LIVEGATE_RETRY_MS", "retry_ms", 0, 600_000),
    ("LIVEGATE_RETRY_JITTER_MS", "retry_jitter_ms", 0, 600_000),
    ("LIVEGATE_CLIENT_QUEUE_BYTES", "client_queue_bytes", 4096, 1 << 30),
    ("LIVEGATE_STREAM_SEND_BUFFER_BYTES", "stream_send_buffer_bytes", 0, 1 << 26),
    ("LIVEGATE_STREAM_COMPRESSION_WINDOW_BITS", "stream_compression_window_bits", 9, 15),
    ("LIVEGATE_MAX_SUBSCRIPTIONS", "max_subscriptions", 1, 10_000),
    ("LIVEGATE_CHANNEL_LOG_LENGTH", "channel_log_length", 1, 1_000_000),
    ("LIVEGATE_GLOBAL_LOG_LENGTH", "global_log_length", 10, 10_000_000),
    ("LIVEGATE_MAX_REPLAY", "max_replay", 0, 1_000_000),
    ("LIVEGATE_MAX_PUBLISH_BYTES", "max_publish_bytes", 1024, 64 << 20),
    ("LIVEGATE_BATCH_WINDOW_MS", "batch_window_ms", 0, 1000),
]

NUMBER_BOUNDS = [
    ("LIVEGATE_HEARTBEAT_INTERVAL", "heartbeat_interval", 1.0, 60.0),
    ("LIVEGATE_SUBSCRIBER_STALE_AFTER", "subscriber_stale_after", 0.5, 60.0),
    ("LIVEGATE_PROBE_INTERVAL", "probe_interval", 0.2, 300.0),
    ("LIVEGATE_PROBE_TIMEOUT", "probe_timeout", 0.1, 60.0),
    ("LIVEGATE_SHUTDOWN_WINDOW", "shutdown_window", 0.0, 600.0),
    ("LIVEGATE_BATCH_FULL_RATE", "batch_full_rate", 1.0, 1_000_000.0),
]

ALL_VARIABLES = [
    "REDIS_URL",
    "LIVEGATE_KEY_PREFIX",
    "LIVEGATE_LOG_LEVEL",
    "LIVEGATE_LOG_FORMAT",
    "LIVEGATE_STREAM_COMPRESSION",
    *(env for env, _, _, _ in INTEGER_BOUNDS),
    *(env for env, _, _, _ in NUMBER_BOUNDS),
]


def assert_names_variable(error: SettingError, env: str, raw: str) -> None:
    message = str(error)
    assert f"invalid {env}=" in message
    assert repr(raw) in message
    assert "\n" not in message


class TestDefaults:
    def test_empty_environment(self):
        settings = Settings.from_env({})

        for name, expected in EXPECTED_DEFAULTS.items():
            assert getattr(settings, name) == expected, name

    def test_default_types(self):
        settings = Settings.from_env({})

        for name, expected in EXPECTED_DEFAULTS.items():
            assert type(getattr(settings, name)) is type(expected), name

    def test_every_setting_covered(self):
        assert {setting.name for setting in SETTINGS} == set(EXPECTED_DEFAULTS)

    @pytest.mark.parametrize("env", ALL_VARIABLES)
    @pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
    def test_blank_value_uses_default(self, env, blank):
        name = next(setting.name for setting in SETTINGS if setting.env == env)

        settings = Settings.from_env({env: blank})

        assert getattr(settings, name) == EXPECTED_DEFAULTS[name]

    def test_reads_os_environ(self, monkeypatch):
        monkeypatch.setenv("LIVEGATE_MAX_SUBSCRIPTIONS", "7")

        assert Settings.from_env().max_subscriptions == 7

    def test_ignores_unrelated_variables(self):
        settings = Settings.from_env({"MAX_SUBSCRIPTIONS": "7", "livegate_retry_ms": "1"})

        assert settings.max_subscriptions == 50
        assert settings.retry_ms == 2000


class TestParsing:
    def test_redis_url_stripped(self):
        settings = Settings.from_env({"REDIS_URL": "  unix:///run/redis.sock \n"})

        assert settings.redis_url == "unix:///run/redis.sock"

    @pytest.mark.parametrize("raw, expected", [("app", "app"), (" a_b-c.d:e ", "a_b-c.d:e")])
    def test_key_prefix(self, raw, expected):
        assert Settings.from_env({"LIVEGATE_KEY_PREFIX": raw}).key_prefix == expected

    @pytest.mark.parametrize("raw", ["a b", "a/b", "a{b}", "a*", "a\nb", "a\x00"])
    def test_key_prefix_invalid(self, raw):
        with pytest.raises(SettingError) as caught:
            Settings.from_env({"LIVEGATE_KEY_PREFIX": raw})

        assert_names_variable(caught.value, "LIVEGATE_KEY_PREFIX", raw)

    @pytest.mark.parametrize("raw", ["debug", "INFO", " Warning ", "error", "critical"])
    def test_log_level(self, raw):
        settings = Settings.from_env({"LIVEGATE_LOG_LEVEL": raw})

        assert settings.log_level == raw.strip().lower()

    @pytest.mark.parametrize("raw", ["verbose", "warn", "10", "info,debug"])
    def test_log_level_invalid(self, raw):
        with pytest.raises(SettingError, match="must be one of debug, info, warning") as caught:
            Settings.from_env({"LIVEGATE_LOG_LEVEL": raw})

        assert_names_variable(caught.value, "LIVEGATE_LOG_LEVEL", raw)

    @pytest.mark.parametrize("raw, expected", [("json", "json"), ("TEXT", "text")])
    def test_log_format(self, raw, expected):
        assert Settings.from_env({"LIVEGATE_LOG_FORMAT": raw}).log_format == expected

    def test_log_format_invalid(self):
        with pytest.raises(SettingError, match="must be one of text, json"):
            Settings.from_env({"LIVEGATE_LOG_FORMAT": "yaml"})

    @pytest.mark.parametrize("raw, expected", [("gzip", "gzip"), (" GZIP ", "gzip"),
                                               ("off", "off"), ("Off", "off")])
    def test_stream_compression(self, raw, expected):
        assert Settings.from_env({"LIVEGATE_STREAM_COMPRESSION": raw}).stream_compression == expected

    @pytest.mark.parametrize("raw", ["on", "deflate", "br", "gzip,br", "true"])
    def test_stream_compression_invalid(self, raw):
        with pytest.raises(SettingError, match="must be one of off, gzip") as caught:
            Settings.from_env({"LIVEGATE_STREAM_COMPRESSION": raw})

        assert_names_variable(caught.value, "LIVEGATE_STREAM_COMPRESSION", raw)

    def test_integer_with_spaces(self):
        assert Settings.from_env({"LIVEGATE_RETRY_MS": " 1500 "}).retry_ms == 1500

    def test_number_forms(self):
        settings = Settings.from_env(
            {"LIVEGATE_HEARTBEAT_INTERVAL": "2.5", "LIVEGATE_SHUTDOWN_WINDOW": "1e1"}
        )

        assert settings.heartbeat_interval == 2.5
        assert settings.shutdown_window == 10.0

    def test_several_variables(self):
        settings = Settings.from_env(
            {"LIVEGATE_RETRY_MS": "10", "LIVEGATE_LOG_FORMAT": "json", "REDIS_URL": "redis://h"}
        )

        assert settings.retry_ms == 10
        assert settings.log_format == "json"
        assert settings.redis_url == "redis://h"
        assert settings.max_subscriptions == 50

    def test_replace(self):
        settings = Settings.from_env({})

        changed = settings.replace(retry_ms=5)

        assert changed.retry_ms == 5
        assert changed.max_subscriptions == settings.max_subscriptions
        assert settings.retry_ms == 2000


class TestBounds:
    @pytest.mark.parametrize("env, name, minimum, maximum", INTEGER_BOUNDS)
    def test_integer_bounds_accepted(self, env, name, minimum, maximum):
        assert getattr(Settings.from_env({env: str(minimum)}), name) == minimum
        assert getattr(Settings.from_env({env: str(maximum)}), name) == maximum

    @pytest.mark.parametrize("env, name, minimum, maximum", INTEGER_BOUNDS)
    def test_integer_below_minimum(self, env, name, minimum, maximum):
        raw = str(minimum - 1)

        with pytest.raises(SettingError, match=f"between {minimum} and {maximum}") as caught:
            Settings.from_env({env: raw})

        assert_names_variable(caught.value, env, raw)

    @pytest.mark.parametrize("env, name, minimum, maximum", INTEGER_BOUNDS)
    def test_integer_above_maximum(self, env, name, minimum, maximum):
        raw = str(maximum + 1)

        with pytest.raises(SettingError, match=f"between {minimum} and {maximum}") as caught:
            Settings.from_env({env: raw})

        assert_names_variable(caught.value, env, raw)

    @pytest.mark.parametrize("env, name, minimum, maximum", NUMBER_BOUNDS)
    def test_number_bounds_accepted(self, env, name, minimum, maximum):
        assert getattr(Settings.from_env({env: str(minimum)}), name) == minimum
        assert getattr(Settings.from_env({env: str(maximum)}), name) == maximum

    @pytest.mark.parametrize("env, name, minimum, maximum", NUMBER_BOUNDS)
    def test_number_outside_bounds(self, env, name, minimum, maximum):
        for raw in (str(minimum - 0.01), str(maximum + 0.01)):
            with pytest.raises(SettingError) as caught:
                Settings.from_env({env: raw})

            assert_names_variable(caught.value, env, raw)


class TestInvalidValues:
    @pytest.mark.parametrize("env, name, minimum, maximum", INTEGER_BOUNDS)
    @pytest.mark.parametrize("raw", ["abc", "1.5", "1e3", "0x10", "ten", "5 5", "1\n2"])
    def test_integer_not_a_number(self, env, name, minimum, maximum, raw):
        with pytest.raises(SettingError) as caught:
            Settings.from_env({env: raw})

        assert_names_variable(caught.value, env, raw)

    @pytest.mark.parametrize("env, name, minimum, maximum", NUMBER_BOUNDS)
    @pytest.mark.parametrize("raw", ["abc", "nan", "inf", "-inf", "1,5", "5s"])
    def test_number_invalid(self, env, name, minimum, maximum, raw):
        with pytest.raises(SettingError) as caught:
            Settings.from_env({env: raw})

        assert_names_variable(caught.value, env, raw)

    def test_message_states_unit(self):
        with pytest.raises(SettingError) as caught:
            Settings.from_env({"LIVEGATE_RETRY_MS": "-1"})

        assert str(caught.value) == (
            "invalid LIVEGATE_RETRY_MS='-1': must be between 0 and 600000 (milliseconds)"
        )

    def test_first_invalid_variable_named(self):
        with pytest.raises(SettingError, match="LIVEGATE_RING_SIZE_MB"):
            Settings.from_env({"LIVEGATE_RING_SIZE_MB": "0", "LIVEGATE_LOG_LEVEL": "nope"})

    def test_error_is_value_error(self):
        with pytest.raises(ValueError):
            Settings.from_env({"LIVEGATE_RETRY_MS": "x"})


class TestDescribe:
    def test_lists_every_variable(self):
        text = describe()

        for env in ALL_VARIABLES:
            assert f"| `{env}` |" in text, env

    def test_one_row_per_setting(self):
        lines = describe().splitlines()

        assert lines[0] == "| variable | default | unit | meaning |"
        assert lines[1] == "|---|---|---|---|"
        assert len(lines) == 2 + len(SETTINGS)

    def test_row_content(self):
        rows = describe().splitlines()
        row = next(line for line in rows if "`LIVEGATE_RETRY_MS`" in line)

        assert row == (
            "| `LIVEGATE_RETRY_MS` | `2000` | milliseconds | "
            "Base reconnection delay sent to clients in the retry: field. |"
        )

    def test_help_joined_on_one_line(self):
        rows = describe().splitlines()
        row = next(line for line in rows if "`LIVEGATE_KEY_PREFIX`" in line)

        assert "Gateways and publishers must agree on it" in row
        assert "  " not in row
