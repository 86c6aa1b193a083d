"""Hand-made provider payloads and timelines for the ingest tests, and the shared-data lookup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA_ENV = "LIVEGATE_SHARED_DATA"


def shared_data_dir() -> Path:
    """The folder of real public data: $LIVEGATE_SHARED_DATA, else ../shared/data next to the repository."""
    configured = os.environ.get(SHARED_DATA_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def require_shared(*parts: str) -> Path:
    """Return a path inside the shared data folder, or skip the test saying why."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent; set {SHARED_DATA_ENV} to the shared data folder to run this test")
    return path
