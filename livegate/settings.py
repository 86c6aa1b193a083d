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
    # A secret's value never appears in error messages.
    secret: bool = False


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


def _list(text: str) -> list[str]:
    """Split a comma-separated value, dropping blanks around and between entries."""
    return [entry.strip() for entry in text.split(",") if entry.strip()]


def _channel_prefix(text: str) -> str:
    # Imported here because livegate.channels must not depend on settings.
    from livegate.channels import InvalidChannelError, validate_channel

    try:
        return validate_channel(text)
    except InvalidChannelError as error:
        raise ValueError(f"prefix {error.value!r} {error.reason}") from None


# RFC 6750 b64token characters; "," "@" and "|" stay free as separators.
_BEARER_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
)
MIN_PUBLISH_TOKEN_LENGTH = 16


def _publish_tokens(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Parse ``TOKEN`` or ``TOKEN@PREFIX|PREFIX`` entries separated by commas.

    Returns (token, prefixes) pairs; no prefixes means every channel.
    Messages name an entry by its position, never by its token.
    """
    tokens: list[tuple[str, tuple[str, ...]]] = []
    seen: set[str] = set()
    for position, entry in enumerate(_list(text), 1):
        token, separator, prefix_text = entry.partition("@")
        if len(token) < MIN_PUBLISH_TOKEN_LENGTH:
            raise ValueError(f"token {position} is shorter than {MIN_PUBLISH_TOKEN_LENGTH} "
                             "characters; generate one with: python -c "
                             "'import secrets; print(secrets.token_urlsafe(32))'")
        if not all(character in _BEARER_CHARACTERS for character in token):
            raise ValueError(f"token {position} contains a character outside "
                             "A-Z a-z 0-9 - . _ ~ + / =")
        if token in seen:
            raise ValueError(f"token {position} is listed twice")
        seen.add(token)
        prefixes: tuple[str, ...] = ()
        if separator:
            prefixes = tuple(_channel_prefix(prefix.strip()) for prefix in prefix_text.split("|"))
        tokens.append((token, prefixes))
    return tuple(tokens)


# A subscribe prefix list of only this entry protects every channel.
ALL_CHANNELS = "**"


def _channel_prefixes(text: str) -> tuple[str, ...]:
    prefixes = _list(text)
    if ALL_CHANNELS in prefixes:
        if len(prefixes) > 1:
            raise ValueError(f"{ALL_CHANNELS} already covers every channel; list nothing else")
        return (ALL_CHANNELS,)
    return tuple(_channel_prefix(prefix) for prefix in prefixes)


def _jwt_algorithm(text: str) -> str:
    value = text.strip().upper()
    if value not in ("HS256", "RS256"):
        raise ValueError("must be HS256 or RS256")
    return value


# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash.
MIN_JWT_SECRET_BYTES = 32


def _jwt_secret(text: str) -> str:
    value = text.strip()
    if len(value.encode("utf-8")) < MIN_JWT_SECRET_BYTES:
        raise ValueError(f"must be at least {MIN_JWT_SECRET_BYTES} bytes long")
    return value


def _origins(text: str) -> tuple[str, ...]:
    """Parse ``scheme://host[:port]`` origins, lowercased, without default ports."""
    from urllib.parse import urlsplit

    origins = []
    for entry in _list(text):
        parts = urlsplit(entry.lower())
        if (
            parts.scheme not in ("http", "https") or not parts.hostname
            or parts.path or parts.query or parts.fragment or "@" in parts.netloc
        ):
            raise ValueError(f"origin {entry!r} must look like https://example.com[:port], "
                             "without a path or a trailing slash")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"origin {entry!r} has an invalid port") from None
        default_port = 443 if parts.scheme == "https" else 80
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        origin = f"{parts.scheme}://{host}"
        if port is not None and port != default_port:
            origin += f":{port}"
        origins.append(origin)
    return tuple(origins)


# RFC 6265 cookie-name: an RFC 2616 token.
_COOKIE_NAME_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"
)


def _cookie_name(text: str) -> str:
    value = text.strip()
    if not value or not all(character in _COOKIE_NAME_CHARACTERS for character in value):
        raise ValueError("must be a cookie name: letters, digits and !#$%&'*+-.^_`|~")
    return value


def _key_prefix(text: str) -> str:
    value = text.strip()
    if not value or not value.isascii() or not all(c.isalnum() or c in "_-.:" for c in value):
        raise ValueError("must be letters, digits or _ - . : and not empty")
    return value


# The port Redis Sentinel listens on unless its configuration names another.
DEFAULT_SENTINEL_PORT = 26379


def _sentinel_addresses(text: str) -> tuple[tuple[str, int], ...]:
    """Parse ``host:port`` entries separated by commas; ``[::1]:26379`` for IPv6.

    An entry without a port gets DEFAULT_SENTINEL_PORT.
    """
    addresses: list[tuple[str, int]] = []
    for entry in _list(text):
        if entry.startswith("["):
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"address {entry!r} must look like [IPv6]:port")
            port_text = rest[1:]
        elif entry.count(":") > 1:
            raise ValueError(f"address {entry!r}: write an IPv6 address in brackets, "
                             "e.g. [::1]:26379")
        else:
            host, _, port_text = entry.partition(":")
        if not host or any(character.isspace() for character in host):
            raise ValueError(f"address {entry!r} has no valid host")
        port = DEFAULT_SENTINEL_PORT
        if port_text:
            valid = port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535
            if not valid:
                raise ValueError(f"address {entry!r} has an invalid port. Use 1 to 65535.")
            port = int(port_text)
        if (host, port) in addresses:
            raise ValueError(f"address {entry!r} is listed twice")
        addresses.append((host, port))
    return tuple(addresses)


def _sentinel_service(text: str) -> str:
    value = text.strip()
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("must be printable ASCII without spaces, as in the sentinel's "
                         "'sentinel monitor NAME' line")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "redis_url", "REDIS_URL", "redis://127.0.0.1:6379/0", _text, "URL",
        "Redis server that holds state, versions and the log.\n"
        "Any URL redis-py accepts (redis://, rediss://, unix://).\n"
        "With LIVEGATE_REDIS_SENTINELS set, its host and port are ignored,\n"
        "but its user name, password, database, TLS (rediss://) and query\n"
        "options still apply to the primary.",
    ),
    Setting(
        "redis_sentinels", "LIVEGATE_REDIS_SENTINELS", (), _sentinel_addresses, "host:port list",
        "Redis Sentinel addresses, separated by commas, e.g.\n"
        "sentinel-0:26379,sentinel-1:26379. When set, every process queries\n"
        "them for the current primary of LIVEGATE_REDIS_SENTINEL_SERVICE\n"
        "and follows it after a failover. A missing port means 26379.\n"
        "Empty: REDIS_URL names the server.",
    ),
    Setting(
        "redis_sentinel_service", "LIVEGATE_REDIS_SENTINEL_SERVICE", "mymaster",
        _sentinel_service, "name",
        "Name under which the sentinels monitor the primary (their\n"
        "'sentinel monitor NAME ...' line).",
    ),
    Setting(
        "redis_sentinel_password", "LIVEGATE_REDIS_SENTINEL_PASSWORD", "", _text, "text",
        "Password of the sentinels themselves (their requirepass), which\n"
        "may differ from the primary's password in REDIS_URL. Empty: the\n"
        "sentinels are contacted without AUTH.",
        secret=True,
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
        "stream_send_buffer_bytes", "LIVEGATE_STREAM_SEND_BUFFER_BYTES", 262_144,
        _integer(0, 1 << 26), "bytes",
        "Kernel send buffer (SO_SNDBUF) of each SSE socket; 0 keeps the kernel's\n"
        "autotuning. Linux lets an unread socket buffer up to 4 MiB by default,\n"
        "so without a cap a stalled client holds that much kernel memory and\n"
        "is dropped only after filling it on top of LIVEGATE_CLIENT_QUEUE_BYTES.\n"
        "Linux doubles the value and caps it at net.core.wmem_max.",
    ),
    Setting(
        "stream_compression", "LIVEGATE_STREAM_COMPRESSION", "off", _choice("off", "gzip"),
        "mode",
        "gzip: compress the stream of every client whose Accept-Encoding\n"
        "allows gzip, flushed after every write so that each event can be\n"
        "decoded as it arrives. Each compressed stream holds its own zlib\n"
        "compressor (see LIVEGATE_STREAM_COMPRESSION_WINDOW_BITS) and\n"
        "compresses every frame itself, while uncompressed frames are\n"
        "encoded once for all streams. off: no stream is compressed.",
    ),
    Setting(
        "stream_compression_window_bits", "LIVEGATE_STREAM_COMPRESSION_WINDOW_BITS", 10,
        _integer(9, 15), "bits",
        "Size of each compressed stream's gzip window, as a power of two\n"
        "(zlib's windowBits): 10 is 1 KiB. The zlib state of one stream\n"
        "takes about 14 KiB at 10, 22 KiB at 11 and 262 KiB at 15. A larger\n"
        "window finds repeats further back, which pays off for streams that\n"
        "receive many large snapshots at once.",
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
        "publish_read_timeout", "LIVEGATE_PUBLISH_READ_TIMEOUT", 10.0, _number(0.5, 300),
        "seconds",
        "Time allowed to receive the body of one publish request; a slower\n"
        "client gets 408 and the connection is closed.",
    ),
    Setting(
        "max_document_depth", "LIVEGATE_MAX_DOCUMENT_DEPTH", 32, _integer(1, 128), "levels",
        "Maximum nesting of arrays and objects in a published document.\n"
        "A deeper document or patch result is rejected with 400.",
    ),
    Setting(
        "max_streams_per_worker", "LIVEGATE_MAX_STREAMS_PER_WORKER", 9000,
        _integer(1, 1_000_000), "streams",
        "Maximum open SSE streams in one worker; past it a stream request\n"
        "gets 503 with Retry-After. Keep it below gunicorn's\n"
        "worker_connections (10000), so that publish, health and metrics\n"
        "requests still find a free connection.",
    ),
    Setting(
        "max_streams_per_address", "LIVEGATE_MAX_STREAMS_PER_ADDRESS", 0,
        _integer(0, 1_000_000), "streams",
        "Maximum open SSE streams from one client address in one worker;\n"
        "past it a stream request gets 429 with Retry-After. 0 turns the\n"
        "limit off. The address is the TCP peer, so behind a proxy or load\n"
        "balancer it is the proxy's address: leave the limit off there.",
    ),
    Setting(
        "subscriber_stale_after", "LIVEGATE_SUBSCRIBER_STALE_AFTER", 3.0, _number(0.5, 60),
        "seconds",
        "Age of the subscriber's heartbeat after which /readyz fails.",
    ),
    Setting(
        "batch_window_ms", "LIVEGATE_BATCH_WINDOW_MS", 40, _integer(0, 1000), "milliseconds",
        "The longest pause of the subscriber after it writes a batch of\n"
        "updates into the ring, so that updates arriving meanwhile reach\n"
        "the workers in the next batch, with one wake-up for all. The pause\n"
        "grows with the update rate of the last second or so: this window\n"
        "at LIVEGATE_BATCH_FULL_RATE and above, proportionally less below\n"
        "it. An update after a quiet spell is written at once. 0 writes\n"
        "every update as soon as it is read.",
    ),
    Setting(
        "batch_full_rate", "LIVEGATE_BATCH_FULL_RATE", 200.0, _number(1, 1_000_000),
        "updates per second",
        "The update rate from which the subscriber pauses the whole\n"
        "LIVEGATE_BATCH_WINDOW_MS after each batch. At a tenth of it the\n"
        "pause is a tenth of the window.",
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
        "publish_tokens", "LIVEGATE_PUBLISH_TOKENS", (), _publish_tokens, "tokens",
        "Bearer tokens accepted by POST /v1/publish, separated by commas.\n"
        "An entry TOKEN may publish to every channel; TOKEN@news|sport/live\n"
        "only to those channels and the channels below them. Several\n"
        "tokens allow rotation. Empty: anyone who reaches the gateway can\n"
        "publish, and the gateway logs a warning at start.",
        secret=True,
    ),
    Setting(
        "admin_tokens", "LIVEGATE_ADMIN_TOKENS", (), _publish_tokens, "tokens",
        "Bearer tokens accepted by the admin endpoints (/v1/aliases),\n"
        "separated by commas, in the form of LIVEGATE_PUBLISH_TOKENS:\n"
        "TOKEN@sport/featured limits a token to aliases under that prefix.\n"
        "Empty: every alias change is rejected with 401.",
        secret=True,
    ),
    Setting(
        "channels_file", "LIVEGATE_CHANNELS_FILE", "", _text, "path",
        "TOML file with namespaces, views and routing rules of channels\n"
        "(docs/channels.md). Read once at start by the gateway and the\n"
        "ingest process, which must be given the same file. Empty: no\n"
        "namespaces, views or rules.",
    ),
    Setting(
        "subscribe_auth_prefixes", "LIVEGATE_SUBSCRIBE_AUTH_PREFIXES", (), _channel_prefixes,
        "prefixes",
        "Channel prefixes whose streams need a subscriber JWT, separated by\n"
        "commas: a prefix covers itself and every channel below it. ** covers\n"
        "every channel. Empty: every channel is open.",
    ),
    Setting(
        "subscribe_jwt_algorithm", "LIVEGATE_SUBSCRIBE_JWT_ALGORITHM", "HS256", _jwt_algorithm,
        "algorithm",
        "Signature algorithm of subscriber JWTs: HS256 with\n"
        "LIVEGATE_SUBSCRIBE_JWT_SECRET, or RS256 with a public key.",
    ),
    Setting(
        "subscribe_jwt_secret", "LIVEGATE_SUBSCRIBE_JWT_SECRET", "", _jwt_secret, "text",
        "Shared HS256 secret of subscriber JWTs, at least 32 bytes.",
        secret=True,
    ),
    Setting(
        "subscribe_jwt_public_key", "LIVEGATE_SUBSCRIBE_JWT_PUBLIC_KEY", "", _text, "PEM",
        "RS256 public key of subscriber JWTs, as PEM text.",
    ),
    Setting(
        "subscribe_jwt_public_key_file", "LIVEGATE_SUBSCRIBE_JWT_PUBLIC_KEY_FILE", "", _text,
        "path",
        "File with the RS256 public key of subscriber JWTs, in PEM.\n"
        "Read once when the gateway starts.",
    ),
    Setting(
        "subscribe_jwt_audience", "LIVEGATE_SUBSCRIBE_JWT_AUDIENCE", "", _text, "text",
        "Required aud claim of subscriber JWTs. Empty: a token must not\n"
        "carry an aud claim.",
    ),
    Setting(
        "subscribe_jwt_issuer", "LIVEGATE_SUBSCRIBE_JWT_ISSUER", "", _text, "text",
        "Required iss claim of subscriber JWTs. Empty: iss is not checked.",
    ),
    Setting(
        "subscribe_jwt_leeway", "LIVEGATE_SUBSCRIBE_JWT_LEEWAY", 5.0, _number(0, 60), "seconds",
        "Clock skew allowed when checking exp and nbf. A stream ends this\n"
        "long after its token's exp.",
    ),
    Setting(
        "subscribe_token_cookie", "LIVEGATE_SUBSCRIBE_TOKEN_COOKIE", "livegate_token",
        _cookie_name, "name",
        "Cookie that may carry the subscriber JWT, for EventSource with\n"
        "credentials.",
    ),
    Setting(
        "cors_origins", "LIVEGATE_CORS_ORIGINS", (), _origins, "origins",
        "Browser origins allowed to read streams and call the API\n"
        "cross-origin, separated by commas, e.g. https://example.com.\n"
        "Requests from other origins get no CORS headers. Empty: none.",
    ),
    Setting(
        "cors_max_age", "LIVEGATE_CORS_MAX_AGE", 600, _integer(0, 86_400), "seconds",
        "How long browsers may cache a CORS preflight answer.",
    ),
    Setting(
        "log_level", "LIVEGATE_LOG_LEVEL", "info",
        _choice("debug", "info", "warning", "error", "critical"), "level",
        "Level of livegate's own loggers.",
    ),
    Setting(
        "log_format", "LIVEGATE_LOG_FORMAT", "text", _choice("text", "json"), "format",
        "Log line format: text for people, json for log collectors.\n"
        "gunicorn's own lines (boot, worker exits) keep gunicorn's format.",
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
                value_text = f"(secret, {len(raw)} characters)" if setting.secret else repr(raw)
                raise SettingError(
                    f"invalid {setting.env}={value_text}: {error} ({setting.unit})"
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
        # A bare "|" would end the table cell.
        meaning = " ".join(setting.help.split()).replace("|", "\\|")
        # An empty list shows as empty, like an empty text.
        default = "" if setting.default == () else setting.default
        lines.append(f"| `{setting.env}` | `{default}` | {setting.unit} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
