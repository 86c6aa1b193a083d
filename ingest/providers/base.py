"""Parts shared by every provider adapter: requests, parsed matches, lenient field access.

An adapter turns one provider's response into canonical match documents
(``ingest/document.py``) without ids, competitions or event ids: the
poller adds those from the configured mappings. A missing or unexpected
field is left out of the document and reported through ``FieldReport``,
which logs each source and field once. Only a response without the
expected list of matches raises ProviderError, and the poller catches
every other exception too, so a bug in an adapter costs one poll.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Mapping

from ingest.document import FINAL_STATUSES

log = logging.getLogger(__name__)


class ProviderError(Exception):
    """A response that is not what the provider's format promises (poll failure)."""


class ProviderRateLimited(ProviderError):
    """The provider refused the request for rate limiting inside a 200 response."""

    def __init__(self, message: str, retry_after: float):
        self.retry_after = retry_after
        super().__init__(message)


class OptionError(ValueError):
    """An invalid adapter option; ``path`` is the configuration key it came from."""

    def __init__(self, path: str, reason: str, value: Any = None):
        self.path = path
        super().__init__(f"{path}: {reason}" + ("" if value is None else f" (got {value!r})"))


@dataclass(frozen=True)
class Request:
    """One GET of a poll: a path under the provider's base URL and its query parameters."""

    path: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ProviderMatch:
    """One match as one provider reported it, already in canonical shape.

    ``document`` lacks ``id``, ``competition`` and ``provider``, and its
    events lack ids. ``competition_keys`` are the provider's identifiers of
    the competition (id and code), tried in order against the configured
    competition mapping.
    """

    provider_id: str
    competition_keys: tuple[str, ...]
    competition_name: str | None
    competition_code: str | None
    document: dict

    @property
    def final(self) -> bool:
        return self.document.get("status") in FINAL_STATUSES


class FieldReport:
    """Logs a missing or unknown field once per source and field, and counts every case."""

    _lock = threading.Lock()

    def __init__(self, source: str):
        self.source = source
        self._reported: set[str] = set()
        self.counts: dict[str, int] = {}

    def missing(self, field_name: str, detail: str = "") -> None:
        with self._lock:
            self.counts[field_name] = self.counts.get(field_name, 0) + 1
            if field_name in self._reported:
                return
            self._reported.add(field_name)
        suffix = f" ({detail})" if detail else ""
        log.warning("source %s: field %s missing or not understood, left out%s; "
                    "further cases are counted, not logged", self.source, field_name, suffix)


def dig(value: Any, *keys: Any) -> Any:
    """Follow dict keys and list indexes; return None as soon as one is missing."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(value, list) or not -len(value) <= key < len(value):
                return None
            value = value[key]
        else:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        if value is None:
            return None
    return value


def as_int(value: Any) -> int | None:
    """Return an integer from an int or a numeric string ("3", "47%"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().rstrip("%").strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


def as_number(value: Any) -> int | float | None:
    """Return a number from an int, float or numeric string ("2.73", "39%"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip().rstrip("%").strip()
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if number.is_integer() and "." not in text else number
    return None


def as_text(value: Any) -> str | None:
    """Return a stripped non-empty string, or None; numbers become their text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return None


def parse_minute(value: Any) -> tuple[int | None, int | None]:
    """Split a match minute into (minute, stoppage): 67 -> (67, None), "45+2" -> (45, 2)."""
    if isinstance(value, str) and "+" in value:
        base, _, extra = value.partition("+")
        return as_int(base.strip().rstrip("'")), as_int(extra.strip().rstrip("'"))
    if isinstance(value, str):
        value = value.strip().rstrip("'")
    return as_int(value), None


def utc_iso(value: Any) -> str | None:
    """Format an ISO 8601 time or a Unix time as UTC "YYYY-MM-DDTHH:MM:SSZ"; None when unparseable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, timezone.utc)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    else:
        return None
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def score_pair(home: Any, away: Any) -> dict | None:
    """Return a {"home", "away"} pair when both are integers >= 0, else None."""
    home_value, away_value = as_int(home), as_int(away)
    if home_value is None or away_value is None or home_value < 0 or away_value < 0:
        return None
    return {"home": home_value, "away": away_value}


def subtract(pair: dict | None, other: dict | None) -> dict | None:
    if pair is None:
        return None
    if other is None:
        return dict(pair)
    return score_pair(pair["home"] - other["home"], pair["away"] - other["away"])


# Canonical statistic names; docs/match-document.md lists their units.
STATISTICS = (
    "possession", "shots", "shots_on_target", "shots_off_target", "shots_blocked",
    "shots_inside_box", "shots_outside_box", "corners", "fouls", "offsides", "saves",
    "yellow_cards", "second_yellow_cards", "red_cards", "free_kicks", "goal_kicks",
    "throw_ins", "passes", "passes_accurate", "pass_accuracy", "expected_goals",
    "goals_prevented",
)


class Adapter:
    """Base of the provider adapters. One instance serves one source.

    Subclasses set ``type_name`` (the ``type`` in the configuration) and
    ``auth_header`` (the header that carries the API key), and implement
    ``list_requests``, ``parse`` and optionally ``by_ids_requests``.
    """

    type_name: ClassVar[str] = ""
    auth_header: ClassVar[str | None] = None

    def __init__(self, source: str, provider_options: Mapping[str, Any], source_options: Mapping[str, Any]):
        self.source = source
        self.provider_options = dict(provider_options)
        self.source_options = dict(source_options)
        self.fields = FieldReport(source)

    @classmethod
    def check_provider_options(cls, options: Mapping[str, Any], path: str) -> None:
        """Raise OptionError for a provider option this adapter rejects."""
        unknown = sorted(set(options))
        if unknown:
            raise OptionError(f"{path}.{unknown[0]}", f"unknown option for type {cls.type_name}")

    @classmethod
    def check_source_options(cls, options: Mapping[str, Any], path: str) -> None:
        """Raise OptionError for a source option this adapter rejects."""
        unknown = sorted(set(options))
        if unknown:
            raise OptionError(f"{path}.{unknown[0]}", f"unknown option for type {cls.type_name}")

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        if api_key is None or self.auth_header is None:
            return {}
        return {self.auth_header: api_key}

    def list_requests(self) -> list[Request]:
        """Return the requests of one poll of this source."""
        raise NotImplementedError

    def by_ids_requests(self, provider_ids: list[str]) -> list[Request]:
        """Requests for matches that left the polled list before they finished.

        Live endpoints drop a match at full time, so without this the last
        document would stay "in play" forever. Adapters that cannot fetch by
        id return an empty list.
        """
        return []

    def check_errors(self, payload: Any) -> None:
        """Raise ProviderError when a 200 response carries an error report."""

    def parse(self, payload: Any) -> list[ProviderMatch]:
        """Parse every match in ``payload``; a match that cannot be read is reported and skipped."""
        raise NotImplementedError


def string_list(value: Any, path: str) -> list[str]:
    """Validate a list of strings or integers from the configuration; returns them as strings."""
    if not isinstance(value, list) or not all(
        isinstance(item, (str, int)) and not isinstance(item, bool) for item in value
    ):
        raise OptionError(path, "must be a list of strings or integers", value)
    return [str(item) for item in value]


def params_table(value: Any, path: str) -> dict[str, str]:
    """Validate a table of query parameters; values become strings."""
    if not isinstance(value, dict):
        raise OptionError(path, "must be a table of query parameters", value)
    params = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise OptionError(f"{path}.{key}", "must be a string or a number", item)
        params[str(key)] = str(item)
    return params
