"""Provider adapters by the ``type`` the configuration names them with."""

from __future__ import annotations

from ingest.providers.api_football import ApiFootballAdapter
from ingest.providers.base import Adapter, OptionError, ProviderError, ProviderMatch, ProviderRateLimited, Request
from ingest.providers.football_data import FootballDataAdapter
from ingest.providers.generic import GenericJsonAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    adapter.type_name: adapter
    for adapter in (FootballDataAdapter, ApiFootballAdapter, GenericJsonAdapter)
}

__all__ = [
    "ADAPTERS", "Adapter", "ApiFootballAdapter", "FootballDataAdapter", "GenericJsonAdapter",
    "OptionError", "ProviderError", "ProviderMatch", "ProviderRateLimited", "Request",
]
