"""The channels file: namespaces, views and routing rules, from TOML.

``LIVEGATE_CHANNELS_FILE`` names it. The gateway and the ingest process
read it once at start and do not start when it is invalid, with a message
naming the entry at fault. docs/channels.md shows every key.

    [namespaces."sport-livescore"]
    log_length = 500
    heartbeat_interval = 15
    auth = false
    mode = "delta"            # or "snapshot"
    max_subscribers = 20000

    [views.score]
    paths = ["/teams", "/score", "/status", "/minute"]

    [[rules]]
    name = "provider-a"
    source = "provider-a/match/{id}"
    targets = ["sport-livescore/{id}"]
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from livegate.channels import ChannelPrefixes, InvalidChannelError, validate_channel
from livegate.namespaces import (
    MODES, Namespace, NamespaceTable, default_namespace, namespace_with,
)
from livegate.rules import RuleError, RuleSet, make_rule
from livegate.settings import Settings
from livegate.views import View, ViewError, make_view

log = logging.getLogger(__name__)

_NAMESPACE_KEYS = {
    "log_length": (int, 1, 1_000_000),
    "heartbeat_interval": (float, 1, 60),
    "max_subscribers": (int, 0, 10_000_000),
}


class ChannelConfigError(ValueError):
    """A channels file that cannot be used; the message names the file and the entry."""


@dataclass
class ChannelConfig:
    namespaces: NamespaceTable
    views: dict[str, View] = field(default_factory=dict)
    rules: RuleSet = field(default_factory=RuleSet)
    source: str = ""

    @classmethod
    def empty(cls, settings: Settings) -> "ChannelConfig":
        return cls(NamespaceTable(default_namespace(settings)))

    @classmethod
    def from_settings(cls, settings: Settings) -> "ChannelConfig":
        """Load ``LIVEGATE_CHANNELS_FILE``, or return the empty configuration without one."""
        if not settings.channels_file:
            return cls.empty(settings)
        return load(Path(settings.channels_file), settings)

    def summary(self) -> str:
        return (f"{len(self.namespaces.namespaces)} namespaces, {len(self.views)} views, "
                f"{len(self.rules.rules)} rules")


def load(path: Path, settings: Settings) -> ChannelConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ChannelConfigError(f"cannot read the channels file {str(path)!r}: {error}") \
            from None
    return parse(text, settings, str(path))


def parse(text: str, settings: Settings, source: str = "<text>") -> ChannelConfig:
    """Parse a channels file's text; raise ChannelConfigError naming what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ChannelConfigError(f"{source}: not valid TOML: {error}") from None
    unknown = sorted(set(data) - {"namespaces", "views", "rules"})
    if unknown:
        raise ChannelConfigError(f"{source}: unknown top-level keys: {', '.join(unknown)}; "
                                 "expected namespaces, views and rules")
    default = default_namespace(settings)
    try:
        namespaces = _namespaces(data.get("namespaces", {}), default, settings)
        views = _views(data.get("views", {}))
        rules_raw = data.get("rules", [])
        if not isinstance(rules_raw, list):
            raise RuleError("rules must be an array of tables: [[rules]]")
        rules = RuleSet(tuple(make_rule(entry, position)
                              for position, entry in enumerate(rules_raw, 1)))
    except (ValueError, TypeError) as error:
        raise ChannelConfigError(f"{source}: {error}") from None
    return ChannelConfig(NamespaceTable(default, namespaces), views, rules, source)


def _namespaces(raw: object, default: Namespace, settings: Settings) -> tuple[Namespace, ...]:
    if not isinstance(raw, dict):
        raise ValueError("namespaces must be a table of tables: [namespaces.\"prefix\"]")
    protected = ChannelPrefixes(settings.subscribe_auth_prefixes)
    namespaces = []
    for prefix, values in raw.items():
        where = f"namespace {prefix!r}"
        try:
            validate_channel(prefix)
        except InvalidChannelError as error:
            raise ValueError(f"{where}: the prefix {error.reason}") from None
        if not isinstance(values, dict):
            raise ValueError(f"{where} must be a table of settings")
        unknown = sorted(set(values) - set(_NAMESPACE_KEYS) - {"auth", "mode"})
        if unknown:
            raise ValueError(f"{where} has unknown keys: {', '.join(unknown)}; expected "
                             "log_length, heartbeat_interval, auth, mode, max_subscribers")
        parsed: dict[str, object] = {}
        for key, (kind, minimum, maximum) in _NAMESPACE_KEYS.items():
            if key not in values:
                continue
            value = values[key]
            valid = isinstance(value, (int, float)) and not isinstance(value, bool)
            if kind is int:
                valid = valid and isinstance(value, int)
            if not valid or not minimum <= value <= maximum:
                raise ValueError(f"{where}: {key} must be a number from {minimum} to {maximum}, "
                                 f"got {value!r}")
            parsed[key] = kind(value)
        if "auth" in values:
            if not isinstance(values["auth"], bool):
                raise ValueError(f"{where}: auth must be true or false")
            parsed["auth"] = values["auth"]
            if not values["auth"] and protected.covers(prefix):
                raise ValueError(f"{where} sets auth = false, but LIVEGATE_SUBSCRIBE_AUTH_PREFIXES "
                                 "protects it; a namespace can add protection, not remove it")
        if "mode" in values:
            if values["mode"] not in MODES:
                raise ValueError(f"{where}: mode must be one of {', '.join(MODES)}, "
                                 f"got {values['mode']!r}")
            parsed["mode"] = values["mode"]
        namespaces.append(namespace_with(default, prefix, **parsed))
    protected_namespaces = ChannelPrefixes(n.prefix for n in namespaces if n.auth)
    for namespace in namespaces:
        opens = raw[namespace.prefix].get("auth") is False
        if opens and protected_namespaces.covers(namespace.prefix):
            raise ValueError(f"namespace {namespace.prefix!r} sets auth = false inside a "
                             "namespace that needs a token; a namespace can add protection, "
                             "not remove it")
    return tuple(namespaces)


def _views(raw: object) -> dict[str, View]:
    if not isinstance(raw, dict):
        raise ViewError("views must be a table of tables: [views.NAME] with paths = [...]")
    views = {}
    for name, values in raw.items():
        if not isinstance(values, dict):
            raise ViewError(f"view {name!r} must be a table with paths = [...]")
        unknown = sorted(set(values) - {"paths"})
        if unknown:
            raise ViewError(f"view {name!r} has unknown keys: {', '.join(unknown)}")
        views[name] = make_view(name, values.get("paths"))
    return views
