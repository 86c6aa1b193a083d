"""The ingest configuration: a TOML file, validated before anything starts.

``docs/ingest.example.toml`` shows every key and ``docs/ingest.md``
explains them. Every error names the key as a path (``sources[1].
poll_interval``) and the rejected value. API keys never appear in the
file: a provider names the environment variable that contains its key,
and the key is read from the environment when the configuration is loaded.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from livegate.channels import InvalidChannelError, validate_channel
from ingest.providers import ADAPTERS, OptionError

DEFAULT_POLL_INTERVAL = 15.0


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the value."""


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    type: str
    base_url: str
    api_key_env: str | None
    # The secret itself stays out of repr() and so out of logs and tracebacks.
    api_key: str | None = field(repr=False)
    requests_per_minute: int | None
    requests_per_day: int | None
    timeout: float
    max_retries: int
    backoff_base: float
    backoff_max: float
    failure_threshold: int
    breaker_open_seconds: float
    max_retry_after: float
    id_prefix: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class SourceConfig:
    name: str
    provider: str
    poll_interval: float
    options: Mapping[str, Any]


@dataclass(frozen=True)
class CompetitionConfig:
    code: str
    name: str
    provider_ids: Mapping[str, str]


@dataclass(frozen=True)
class MatchConfig:
    id: str
    # Providers in order of preference: the first is the primary.
    providers: tuple[str, ...]
    provider_ids: Mapping[str, str]


@dataclass(frozen=True)
class IngestConfig:
    poll_interval: float
    stale_after: float
    switch_back_after: float
    lease_ttl: float
    stats_interval: float
    validate_documents: bool
    provider_priority: tuple[str, ...]
    providers: Mapping[str, ProviderConfig]
    sources: tuple[SourceConfig, ...]
    competitions: Mapping[str, CompetitionConfig]
    matches: tuple[MatchConfig, ...]

    # Lookup tables built from ``matches`` and ``competitions``.
    _match_index: dict = field(init=False, repr=False, compare=False)
    _competition_index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        matches = {(provider, provider_id): match for match in self.matches
                   for provider, provider_id in match.provider_ids.items()}
        competitions = {(provider, key): competition for competition in self.competitions.values()
                        for provider, key in competition.provider_ids.items()}
        # A frozen dataclass sets its own derived fields through object.__setattr__.
        object.__setattr__(self, "_match_index", matches)
        object.__setattr__(self, "_competition_index", competitions)

    def match_for(self, provider: str, provider_id: str) -> MatchConfig | None:
        return self._match_index.get((provider, provider_id))

    def competition_for(self, provider: str, keys: tuple[str, ...]) -> CompetitionConfig | None:
        for key in keys:
            found = self._competition_index.get((provider, key))
            if found is not None:
                return found
        return None


# --- value checks ---------------------------------------------------------------


def _describe(value: Any) -> str:
    return repr(value)


def _number(table: Mapping, key: str, path: str, default: float | None, minimum: float,
            maximum: float = float("inf")) -> float | None:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value <= maximum:
        bound = f"between {minimum:g} and {maximum:g}" if maximum != float("inf") else f">= {minimum:g}"
        raise ConfigError(f"{path}.{key}: must be a number {bound} (got {_describe(value)})")
    return float(value)


def _integer(table: Mapping, key: str, path: str, default: int | None, minimum: int) -> int | None:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{path}.{key}: must be an integer >= {minimum} (got {_describe(value)})")
    return value


def _string(table: Mapping, key: str, path: str, default: str | None = None,
            required: bool = False) -> str | None:
    if key not in table:
        if required:
            raise ConfigError(f"{path}.{key}: missing")
        return default
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}.{key}: must be a non-empty string (got {_describe(value)})")
    return value.strip()


def _segment(value: str, path: str) -> str:
    """Check that ``value`` can be one segment of a channel name."""
    try:
        validate_channel(value)
    except InvalidChannelError as error:
        raise ConfigError(f"{path}: {error.reason} (got {value!r})") from None
    if "/" in value:
        raise ConfigError(f"{path}: must not contain / because it is one channel segment (got {value!r})")
    return value


def _table(value: Any, path: str) -> Mapping:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: must be a table (got {_describe(value)})")
    return value


def _reject_unknown(table: Mapping, allowed: tuple[str, ...], path: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}: unknown key; expected one of {', '.join(allowed)}")


def _provider_ids(value: Any, path: str, providers: Mapping[str, Any]) -> dict[str, str]:
    table = _table(value, path)
    result = {}
    for provider, provider_id in table.items():
        if provider not in providers:
            raise ConfigError(f"{path}.{provider}: no provider of that name is configured "
                              f"(configured: {', '.join(providers)})")
        if isinstance(provider_id, bool) or not isinstance(provider_id, (str, int)) or str(provider_id) == "":
            raise ConfigError(f"{path}.{provider}: must be the provider's id as a string or integer "
                              f"(got {_describe(provider_id)})")
        result[provider] = str(provider_id)
    return result


# --- sections ---------------------------------------------------------------------

INGEST_KEYS = ("poll_interval", "stale_after", "switch_back_after", "lease_ttl", "stats_interval",
               "validate_documents", "provider_priority")
PROVIDER_KEYS = ("type", "base_url", "api_key_env", "requests_per_minute", "requests_per_day",
                 "timeout", "max_retries", "backoff_base", "backoff_max", "failure_threshold",
                 "breaker_open_seconds", "max_retry_after", "id_prefix")


def _provider(name: str, table: Mapping, environ: Mapping[str, str], resolve_keys: bool) -> ProviderConfig:
    path = f"providers.{name}"
    _segment(name, path)
    provider_type = _string(table, "type", path, required=True)
    adapter = ADAPTERS.get(provider_type)
    if adapter is None:
        raise ConfigError(f"{path}.type: unknown provider type {provider_type!r}; "
                          f"expected one of {', '.join(ADAPTERS)}")

    base_url = _string(table, "base_url", path, required=True)
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{path}.base_url: must start with http:// or https:// (got {base_url!r})")

    api_key_env = _string(table, "api_key_env", path)
    api_key = None
    if api_key_env is not None and resolve_keys:
        api_key = environ.get(api_key_env)
        if not api_key:
            raise ConfigError(f"{path}.api_key_env: environment variable {api_key_env} is not set; "
                              "export the provider's API key in it")

    options = {key: value for key, value in table.items() if key not in PROVIDER_KEYS}
    try:
        adapter.check_provider_options(options, path)
    except OptionError as error:
        raise ConfigError(str(error)) from None

    backoff_base = _number(table, "backoff_base", path, 0.5, 0.001)
    return ProviderConfig(
        name=name,
        type=provider_type,
        base_url=base_url.rstrip("/"),
        api_key_env=api_key_env,
        api_key=api_key,
        requests_per_minute=_integer(table, "requests_per_minute", path, None, 1),
        requests_per_day=_integer(table, "requests_per_day", path, None, 1),
        timeout=_number(table, "timeout", path, 10.0, 0.01),
        max_retries=_integer(table, "max_retries", path, 2, 0),
        backoff_base=backoff_base,
        backoff_max=_number(table, "backoff_max", path, 10.0, backoff_base),
        failure_threshold=_integer(table, "failure_threshold", path, 3, 1),
        breaker_open_seconds=_number(table, "breaker_open_seconds", path, 30.0, 0.01),
        max_retry_after=_number(table, "max_retry_after", path, 120.0, 0.0),
        id_prefix=_segment(_string(table, "id_prefix", path, name), f"{path}.id_prefix"),
        options=options,
    )


def _source(index: int, table: Any, providers: Mapping[str, ProviderConfig], default_interval: float) -> SourceConfig:
    path = f"sources[{index}]"
    table = _table(table, path)
    name = _segment(_string(table, "name", path, required=True), f"{path}.name")
    provider = _string(table, "provider", path, required=True)
    if provider not in providers:
        raise ConfigError(f"{path}.provider: no provider named {provider!r} "
                          f"(configured: {', '.join(providers) or 'none'})")
    interval = _number(table, "poll_interval", path, default_interval, 0.01)
    options = {key: value for key, value in table.items() if key not in ("name", "provider", "poll_interval")}
    try:
        ADAPTERS[providers[provider].type].check_source_options(options, path)
    except OptionError as error:
        raise ConfigError(str(error)) from None
    return SourceConfig(name=name, provider=provider, poll_interval=interval, options=options)


def _competition(code: str, table: Any, providers: Mapping[str, ProviderConfig]) -> CompetitionConfig:
    path = f"competitions.{code}"
    _segment(code, path)
    table = _table(table, path)
    _reject_unknown(table, ("name", "provider_ids"), path)
    return CompetitionConfig(
        code=code,
        name=_string(table, "name", path, required=True),
        provider_ids=_provider_ids(table.get("provider_ids", {}), f"{path}.provider_ids", providers),
    )


def _match(index: int, table: Any, providers: Mapping[str, ProviderConfig],
           priority: tuple[str, ...]) -> MatchConfig:
    path = f"matches[{index}]"
    table = _table(table, path)
    _reject_unknown(table, ("id", "primary", "fallback", "provider_ids"), path)
    match_id = _segment(_string(table, "id", path, required=True), f"{path}.id")
    provider_ids = _provider_ids(table.get("provider_ids", {}), f"{path}.provider_ids", providers)
    if not provider_ids:
        raise ConfigError(f"{path}.provider_ids: must map at least one provider to its match id")
    order: list[str] = []
    for key in ("primary", "fallback"):
        provider = _string(table, key, path)
        if provider is None:
            continue
        if provider not in provider_ids:
            raise ConfigError(f"{path}.{key}: {provider!r} has no entry in {path}.provider_ids")
        if provider in order:
            raise ConfigError(f"{path}.{key}: {provider!r} is already the primary")
        order.append(provider)
    # Providers not named as primary or fallback follow in the global priority order.
    for provider in priority + tuple(sorted(provider_ids)):
        if provider in provider_ids and provider not in order:
            order.append(provider)
    return MatchConfig(id=match_id, providers=tuple(order), provider_ids=provider_ids)


def parse_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                 resolve_keys: bool = True) -> IngestConfig:
    """Validate the parsed TOML ``data``; raises ConfigError naming the key and value.

    With ``resolve_keys`` every ``api_key_env`` must name a set variable
    of ``environ`` (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    _reject_unknown(data, ("ingest", "providers", "sources", "competitions", "matches"), "config")
    ingest = _table(data.get("ingest", {}), "ingest")
    _reject_unknown(ingest, INGEST_KEYS, "ingest")

    poll_interval = _number(ingest, "poll_interval", "ingest", DEFAULT_POLL_INTERVAL, 0.01)
    lease_ttl = _number(ingest, "lease_ttl", "ingest", 30.0, 0.1)
    stale_after = _number(ingest, "stale_after", "ingest", 60.0, 0.01)
    switch_back_after = _number(ingest, "switch_back_after", "ingest", 120.0, 0.0)
    stats_interval = _number(ingest, "stats_interval", "ingest", 60.0, 0.1)
    validate_documents = ingest.get("validate_documents", True)
    if not isinstance(validate_documents, bool):
        raise ConfigError(f"ingest.validate_documents: must be true or false (got {validate_documents!r})")

    provider_tables = _table(data.get("providers", {}), "providers")
    if not provider_tables:
        raise ConfigError("providers: at least one provider must be configured")
    providers = {name: _provider(name, _table(table, f"providers.{name}"), environ, resolve_keys)
                 for name, table in provider_tables.items()}

    priority_raw = ingest.get("provider_priority", list(providers))
    if not isinstance(priority_raw, list) or not all(isinstance(item, str) for item in priority_raw):
        raise ConfigError(f"ingest.provider_priority: must be a list of provider names (got {priority_raw!r})")
    for provider in priority_raw:
        if provider not in providers:
            raise ConfigError(f"ingest.provider_priority: no provider named {provider!r} "
                              f"(configured: {', '.join(providers)})")
    priority = tuple(dict.fromkeys(priority_raw + list(providers)))

    source_tables = data.get("sources", [])
    if not isinstance(source_tables, list) or not source_tables:
        raise ConfigError("sources: must be a non-empty array of tables ([[sources]])")
    sources = tuple(_source(index, table, providers, poll_interval) for index, table in enumerate(source_tables))
    names = [source.name for source in sources]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise ConfigError(f"sources[{index}].name: {name!r} is already the name of sources[{names.index(name)}]")

    competitions = {code: _competition(code, table, providers)
                    for code, table in _table(data.get("competitions", {}), "competitions").items()}
    for code, competition in competitions.items():
        for provider, key in competition.provider_ids.items():
            for other in competitions.values():
                if other.code != code and other.provider_ids.get(provider) == key:
                    raise ConfigError(f"competitions.{code}.provider_ids.{provider}: {key!r} is also "
                                      f"mapped by competitions.{other.code}")

    match_tables = data.get("matches", [])
    if not isinstance(match_tables, list):
        raise ConfigError("matches: must be an array of tables ([[matches]])")
    matches = tuple(_match(index, table, providers, priority) for index, table in enumerate(match_tables))
    seen_ids: dict[str, int] = {}
    seen_provider_ids: dict[tuple[str, str], int] = {}
    for index, match in enumerate(matches):
        if match.id in seen_ids:
            raise ConfigError(f"matches[{index}].id: {match.id!r} is already used by matches[{seen_ids[match.id]}]")
        seen_ids[match.id] = index
        for provider, provider_id in match.provider_ids.items():
            if (provider, provider_id) in seen_provider_ids:
                raise ConfigError(f"matches[{index}].provider_ids.{provider}: {provider_id!r} is already "
                                  f"mapped by matches[{seen_provider_ids[(provider, provider_id)]}]")
            seen_provider_ids[(provider, provider_id)] = index

    return IngestConfig(
        poll_interval=poll_interval,
        stale_after=stale_after,
        switch_back_after=switch_back_after,
        lease_ttl=lease_ttl,
        stats_interval=stats_interval,
        validate_documents=validate_documents,
        provider_priority=priority,
        providers=providers,
        sources=sources,
        competitions=competitions,
        matches=matches,
    )


def load_config(path: str | os.PathLike, environ: Mapping[str, str] | None = None,
                resolve_keys: bool = True) -> IngestConfig:
    """Read and validate the TOML file at ``path``."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {str(file)!r} not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {str(file)!r} is not valid TOML: {error}") from None
    return parse_config(data, environ, resolve_keys)
