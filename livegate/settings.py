"""Every livegate setting, declared once with its default, unit and help.

Settings come from environment variables with the prefix ``LIVEGATE_``,
except ``REDIS_URL``, which follows the common convention. Nothing else in
livegate reads the environment for its own settings; gunicorn's settings
(``WEB_CONCURRENCY``, ``GUNICORN_CMD_ARGS``, ``--bind``) stay gunicorn's.
``python -m livegate.settings`` prints the table below as documentation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping


class SettingError(ValueError):
    """An environment variable whose value is invalid for its setting."""


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: object
    parse: Callable[[str], object]
    unit: str
    help: str


def _integer(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        # int() also accepts "1_000" and non-ASCII digits; settings take plain digits.
        stripped = text.strip()
        if not stripped.isascii() or "_" in stripped:
            raise ValueError("must be a whole number written with digits 0-9")
        value = int(stripped)
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return value

    return parse


def _number(minimum: float, maximum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum:g} and {maximum:g}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _text(text: str) -> str:
    return text.strip()


def _key_prefix(text: str) -> str:
    value = text.strip()
    if not value or not value.isascii() or not all(c.isalnum() or c in "_-.:" for c in value):
        raise ValueError("must be letters, digits or _ - . : and not empty")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "redis_url", "REDIS_URL", "redis://127.0.0.1:6379/0", _text, "URL",
        "Redis server that holds state, versions and the log.\n"
        "Any URL redis-py accepts (redis://, rediss://, unix://).",
    ),
    Setting(
        "key_prefix", "LIVEGATE_KEY_PREFIX", "lg", _key_prefix, "text",
        "Prefix of every Redis key and of the Pub/Sub channel.\n"
        "Gateways and publishers must agree on it; it lets several\n"
        "independent installations share one Redis.",
    ),
    Setting(
        "ring_size_mb", "LIVEGATE_RING_SIZE_MB", 16, _integer(1, 4096), "MiB",
        "Size of the shared-memory ring between the subscriber and workers.\n"
        "A worker that falls behind by more than the ring resynchronises\n"
        "its clients with snapshots; no record may exceed a quarter of it.",
    ),
    Setting(
        "heartbeat_interval", "LIVEGATE_HEARTBEAT_INTERVAL", 20.0, _number(1, 60), "seconds",
        "Idle time after which a stream receives an SSE comment.\n"
        "Keeps proxies and load balancers from closing quiet streams.",
    ),
    Setting(
        "retry_ms", "LIVEGATE_RETRY_MS", 2000, _integer(0, 600_000), "milliseconds",
        "Base reconnection delay sent to clients in the retry: field.",
    ),
    Setting(
        "retry_jitter_ms", "LIVEGATE_RETRY_JITTER_MS", 3000, _integer(0, 600_000), "milliseconds",
        "Random extra delay added to the retry: field per stream.\n"
        "Spreads the reconnects of a pod's clients when it goes away.",
    ),
    Setting(
        "client_queue_bytes", "LIVEGATE_CLIENT_QUEUE_BYTES", 1_048_576,
        _integer(4096, 1 << 30), "bytes",
        "Maximum bytes queued for one stream that is not reading.\n"
        "Past it the stream is closed with a retry: hint and the drop is\n"
        "logged and counted; the client resumes with Last-Event-ID.",
    ),
    Setting(
        "max_subscriptions", "LIVEGATE_MAX_SUBSCRIPTIONS", 50, _integer(1, 10_000), "count",
        "Maximum channel and pattern parameters on one stream request.",
    ),
    Setting(
        "channel_log_length", "LIVEGATE_CHANNEL_LOG_LENGTH", 200, _integer(1, 1_000_000),
        "deltas",
        "Recent deltas kept per channel in Redis for resuming clients.",
    ),
    Setting(
        "global_log_length", "LIVEGATE_GLOBAL_LOG_LENGTH", 10_000, _integer(10, 10_000_000),
        "updates",
        "Recent updates of all channels kept in Redis, ordered by seq.\n"
        "The subscriber fills Pub/Sub gaps from it.",
    ),
    Setting(
        "max_replay", "LIVEGATE_MAX_REPLAY", 1000, _integer(0, 1_000_000), "deltas",
        "Maximum missed deltas replayed per channel to a resuming client.\n"
        "Past it the client receives a snapshot of that channel instead.",
    ),
    Setting(
        "max_publish_bytes", "LIVEGATE_MAX_PUBLISH_BYTES", 1_048_576,
        _integer(1024, 64 << 20), "bytes",
        "Maximum body size of one publish request.",
    ),
    Setting(
        "subscriber_stale_after", "LIVEGATE_SUBSCRIBER_STALE_AFTER", 3.0, _number(0.5, 60),
        "seconds",
        "Age of the subscriber's heartbeat after which /readyz fails.",
    ),
    Setting(
        "probe_interval", "LIVEGATE_PROBE_INTERVAL", 5.0, _number(0.2, 300), "seconds",
        "How often the subscriber sends itself a probe through Redis Pub/Sub.\n"
        "Proves that its subscription still delivers: a failover or a\n"
        "half-dead connection can leave one that receives nothing.",
    ),
    Setting(
        "probe_timeout", "LIVEGATE_PROBE_TIMEOUT", 3.0, _number(0.1, 60), "seconds",
        "Time for a probe to come back before the subscriber reconnects\n"
        "and repairs; /readyz fails meanwhile.",
    ),
    Setting(
        "shutdown_window", "LIVEGATE_SHUTDOWN_WINDOW", 5.0, _number(0, 600), "seconds",
        "Window over which a stopping worker closes its streams.\n"
        "Keep it below gunicorn's graceful_timeout.",
    ),
    Setting(
        "metrics_dir", "LIVEGATE_METRICS_DIR", "", _text, "path",
        "Writable folder where the master, subscriber and workers keep\n"
        "Prometheus multiprocess files. Empty: a new folder under the\n"
        "system temporary directory per gunicorn master. Wiped at start.",
    ),
    Setting(
        "log_level", "LIVEGATE_LOG_LEVEL", "info",
        _choice("debug", "info", "warning", "error", "critical"), "level",
        "Level of livegate's own loggers.",
    ),
    Setting(
        "log_format", "LIVEGATE_LOG_FORMAT", "text", _choice("text", "json"), "format",
        "Log line format: text for people, json for log collectors.",
    ),
)


class Settings:
    """Parsed settings; attribute names are the ``name`` of each Setting."""

    def __init__(self, values: Mapping[str, object]):
        for setting in SETTINGS:
            setattr(self, setting.name, values[setting.name])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting from ``environ`` (default ``os.environ``).

        Raises SettingError naming the variable, its value and the rule.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is None or raw.strip() == "":
                values[setting.name] = setting.default
                continue
            try:
                values[setting.name] = setting.parse(raw)
            except ValueError as error:
                raise SettingError(
                    f"invalid {setting.env}={raw!r}: {error} ({setting.unit})"
                ) from None
        return cls(values)

    def replace(self, **changes: object) -> "Settings":
        values = {setting.name: getattr(self, setting.name) for setting in SETTINGS}
        values.update(changes)
        return Settings(values)


def describe() -> str:
    """Render every setting as a Markdown table for the documentation."""
    lines = ["| variable | default | unit | meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        meaning = " ".join(setting.help.split())
        lines.append(f"| `{setting.env}` | `{setting.default}` | {setting.unit} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
