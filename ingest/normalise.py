"""From a provider's match to the canonical document: ids, competition, event ids.

Match ids are stable across providers through the configured mapping: a
match listed in ``[[matches]]`` gets its configured id from every provider.
A match that no entry maps gets ``{id_prefix}-{provider's id}``, so it
stays on one channel but cannot fall back to another provider.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ingest.config import IngestConfig, ProviderConfig
from ingest.document import assign_event_ids
from ingest.providers.base import ProviderMatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchIdentity:
    """The canonical id of one provider's match and the providers that cover it."""

    match_id: str
    providers: tuple[str, ...]
    mapped: bool


def match_identity(config: IngestConfig, provider: ProviderConfig, provider_id: str) -> MatchIdentity:
    mapped = config.match_for(provider.name, provider_id)
    if mapped is not None:
        return MatchIdentity(mapped.id, mapped.providers, True)
    return MatchIdentity(f"{provider.id_prefix}-{provider_id}", (provider.name,), False)


def _code_from(text: str) -> str:
    """Make a channel-safe competition code from a provider's id or code."""
    safe = "".join(c if c.isalnum() or c in "_-.:" else "-" for c in text.strip())
    return safe.strip("-") or "unknown"


def competition_of(config: IngestConfig, provider: ProviderConfig, match: ProviderMatch) -> tuple[str, str]:
    """Return (code, name) of the match's competition.

    The configured mapping wins. Without one, a provider's own code is
    used (football-data's "PL"), else ``{id_prefix}-{competition id}``.
    """
    configured = config.competition_for(provider.name, match.competition_keys)
    if configured is not None:
        return configured.code, configured.name
    if match.competition_code:
        code = _code_from(match.competition_code)
    elif match.competition_keys:
        code = f"{provider.id_prefix}-{_code_from(match.competition_keys[0])}"
    else:
        code = f"{provider.id_prefix}-unknown"
    return code, match.competition_name or code


def canonical_document(config: IngestConfig, provider: ProviderConfig, match: ProviderMatch,
                       identity: MatchIdentity) -> dict:
    """Complete the adapter's document with id, competition, provider and event ids."""
    code, name = competition_of(config, provider, match)
    document = {
        "id": identity.match_id,
        "competition": {"code": code, "name": name},
        **match.document,
        "provider": provider.name,
    }
    document["events"] = assign_event_ids(match.document.get("events", []))
    return document
