"""Validation of the ingest configuration: every error names the key and the value."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "ingest.example.toml"
ENV = {"FOOTBALL_DATA_API_KEY": "fd-secret", "API_FOOTBALL_KEY": "af-secret", "EXAMPLE_FEED_KEY": "ex-secret"}

BASE = {
    "ingest": {"poll_interval": 15},
    "providers": {
        "fd": {"type": "football-data-v4", "base_url": "https://api.example.org", "api_key_env": "FD_KEY",
               "requests_per_minute": 10},
        "af": {"type": "api-football-v3", "base_url": "https://af.example.org"},
    },
    "sources": [
        {"name": "fd-today", "provider": "fd", "competitions": ["PL"]},
        {"name": "af-live", "provider": "af", "poll_interval": 20},
    ],
    "competitions": {"PL": {"name": "Premier League", "provider_ids": {"fd": "PL", "af": 39}}},
    "matches": [{"id": "m1", "primary": "af", "fallback": "fd", "provider_ids": {"fd": 1, "af": "2"}}],
}


def parse(data, environ=None):
    return parse_config(data, environ if environ is not None else {"FD_KEY": "k"})


def with_change(path: str, value, data=None):
    """A copy of BASE (or data) with the dotted ``path`` set to ``value`` (or removed when value is ...)."""
    changed = copy.deepcopy(data or BASE)
    target = changed
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    key = int(last) if last.isdigit() else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return changed


def test_example_config_is_valid():
    config = load_config(EXAMPLE, environ=ENV)
    assert [source.name for source in config.sources] == ["fd-today", "fd-cl-live", "af-live", "example-live"]
    assert config.providers["football-data"].api_key == "fd-secret"
    assert config.providers["api-football"].requests_per_day == 7500
    assert config.sources[1].poll_interval == 30.0
    assert config.sources[0].poll_interval == 15.0


def test_example_config_via_cli_check():
    result = subprocess.run([sys.executable, "-m", "ingest", "--config", str(EXAMPLE), "--check"],
                            cwd=REPO, capture_output=True, text=True, env={**ENV, "PATH": "/usr/bin:/bin"},
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout


def test_cli_reports_invalid_config(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[ingest]\npoll_interval = -1\n')
    result = subprocess.run([sys.executable, "-m", "ingest", "--config", str(path)], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "ingest.poll_interval" in result.stderr
    assert "-1" in result.stderr


def test_defaults_and_lookups():
    config = parse(BASE)
    assert config.lease_ttl == 30.0
    assert config.stale_after == 60.0
    assert config.providers["fd"].timeout == 10.0
    assert config.providers["fd"].id_prefix == "fd"
    assert config.match_for("af", "2").id == "m1"
    assert config.match_for("fd", "1").providers == ("af", "fd")
    assert config.match_for("fd", "999") is None
    assert config.competition_for("af", ("39",)).code == "PL"


def test_match_order_follows_priority_without_primary():
    data = with_change("matches.0", {"id": "m2", "provider_ids": {"af": 5, "fd": 6}})
    data["ingest"]["provider_priority"] = ["fd", "af"]
    assert parse(data).matches[0].providers == ("fd", "af")


def test_api_key_never_in_repr():
    config = parse(BASE, {"FD_KEY": "top-secret-value"})
    assert "top-secret-value" not in repr(config)


def test_missing_api_key_variable_names_it():
    with pytest.raises(ConfigError) as raised:
        parse(BASE, environ={})
    assert "providers.fd.api_key_env" in str(raised.value)
    assert "FD_KEY" in str(raised.value)


def test_api_key_not_resolved_when_asked():
    config = parse_config(BASE, environ={}, resolve_keys=False)
    assert config.providers["fd"].api_key is None


@pytest.mark.parametrize("path, value, key, shown", [
    ("ingest.poll_interval", 0, "ingest.poll_interval", "0"),
    ("ingest.poll_interval", "fast", "ingest.poll_interval", "'fast'"),
    ("ingest.lease_ttl", -5, "ingest.lease_ttl", "-5"),
    ("ingest.validate_documents", "yes", "ingest.validate_documents", "'yes'"),
    ("ingest.provider_priority", ["nobody"], "ingest.provider_priority", "nobody"),
    ("ingest.colour", 1, "ingest.colour", "unknown key"),
    ("providers.fd.type", "soap", "providers.fd.type", "soap"),
    ("providers.fd.base_url", "ftp://x", "providers.fd.base_url", "ftp://x"),
    ("providers.fd.requests_per_minute", 0, "providers.fd.requests_per_minute", "0"),
    ("providers.fd.requests_per_day", 2.5, "providers.fd.requests_per_day", "2.5"),
    ("providers.fd.max_retries", -1, "providers.fd.max_retries", "-1"),
    ("providers.fd.timeout", True, "providers.fd.timeout", "True"),
    ("providers.fd.id_prefix", "a/b", "providers.fd.id_prefix", "a/b"),
    ("providers.fd.mapping", {}, "providers.fd.mapping", "unknown option"),
    ("sources.0.provider", "nope", "sources[0].provider", "nope"),
    ("sources.0.name", "bad name", "sources[0].name", "bad name"),
    ("sources.0.name", ..., "sources[0].name", "missing"),
    ("sources.0.poll_interval", -1, "sources[0].poll_interval", "-1"),
    ("sources.0.endpoint", "everything", "sources[0].endpoint", "everything"),
    ("sources.0.competitions", "PL", "sources[0].competitions", "PL"),
    ("sources.0.colour", "red", "sources[0].colour", "unknown option"),
    ("sources.1.endpoint", "fixtures", "sources[1].params", "must give"),
    ("sources.1.leagues", [True], "sources[1].leagues", "True"),
    ("competitions.PL.provider_ids", {"zz": 1}, "competitions.PL.provider_ids.zz", "no provider"),
    ("competitions.PL.name", ..., "competitions.PL.name", "missing"),
    ("matches.0.id", "has space", "matches[0].id", "has space"),
    ("matches.0.primary", "zz", "matches[0].primary", "zz"),
    ("matches.0.provider_ids", {}, "matches[0].provider_ids", "at least one"),
    ("matches.0.provider_ids", {"fd": [1]}, "matches[0].provider_ids.fd", "[1]"),
])
def test_invalid_value_names_key_and_value(path, value, key, shown):
    with pytest.raises(ConfigError) as raised:
        parse(with_change(path, value))
    message = str(raised.value)
    assert key in message
    assert shown in message


def test_duplicate_source_names_rejected():
    data = with_change("sources.1.name", "fd-today")
    with pytest.raises(ConfigError, match=r"sources\[1\]\.name: 'fd-today' is already"):
        parse(data)


def test_duplicate_match_provider_id_rejected():
    data = copy.deepcopy(BASE)
    data["matches"].append({"id": "m2", "provider_ids": {"fd": "1"}})
    with pytest.raises(ConfigError, match=r"matches\[1\]\.provider_ids\.fd: '1' is already mapped"):
        parse(data)


def test_duplicate_match_id_rejected():
    data = copy.deepcopy(BASE)
    data["matches"].append({"id": "m1", "provider_ids": {"fd": "7"}})
    with pytest.raises(ConfigError, match=r"matches\[1\]\.id: 'm1' is already used"):
        parse(data)


def test_no_sources_rejected():
    with pytest.raises(ConfigError, match="sources"):
        parse(with_change("sources", []))


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[ingest\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_generic_mapping_errors_name_key():
    data = copy.deepcopy(BASE)
    data["providers"]["gen"] = {"type": "generic-json", "base_url": "https://g.example.org",
                                "mapping": {"match_id": "items[].id", "status": "state",
                                            "home_name": "items[].home", "away_name": "items[].away"}}
    with pytest.raises(ConfigError) as raised:
        parse(data)
    assert "providers.gen.mapping.status" in str(raised.value)
    assert "items[]" in str(raised.value)
