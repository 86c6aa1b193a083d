"""Run recorded matches through the real ingest path: the mock API plus a matching configuration.

Used by ``python -m ingest.demo --serve --replay DIR`` and by the
end-to-end tests. The configuration polls football-data.org's format as
the primary provider and API-Football's as the fallback, with every
replayed match mapped across both.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ReplayOptions:
    poll_interval: float = 1.0
    requests_per_minute: int = 120
    lease_ttl: float = 10.0
    stale_after: float = 10.0
    switch_back_after: float = 30.0
    stats_interval: float = 60.0


def match_channel_id(match: dict) -> str:
    """Build the canonical id of a replayed match from competition, kick-off day and football-data id."""
    return f"{match['competition'].lower()}-{match['kickoff'][:10]}-{match['football_data_id']}"


def _toml_string(value: str) -> str:
    return json.dumps(value)


def replay_config(mock_url: str, matches: list[dict], options: ReplayOptions = ReplayOptions()) -> str:
    """Write the TOML configuration that polls the mock API at ``mock_url`` for ``matches``.

    ``matches`` is the list from the mock's ``GET /admin/matches``.
    """
    competitions = sorted({match["competition"] for match in matches})
    lines = [
        "# Generated for a replay through the mock partner API.",
        "[ingest]",
        f"poll_interval = {options.poll_interval}",
        f"stale_after = {options.stale_after}",
        f"switch_back_after = {options.switch_back_after}",
        f"lease_ttl = {options.lease_ttl}",
        f"stats_interval = {options.stats_interval}",
        'provider_priority = ["football-data", "api-football"]',
        "",
        "[providers.football-data]",
        'type = "football-data-v4"',
        f"base_url = {_toml_string(mock_url)}",
        f"requests_per_minute = {options.requests_per_minute}",
        "max_retries = 2",
        "backoff_base = 0.05",
        "backoff_max = 0.5",
        "breaker_open_seconds = 1.0",
        'id_prefix = "fd"',
        "",
        "[providers.api-football]",
        'type = "api-football-v3"',
        f"base_url = {_toml_string(mock_url)}",
        f"requests_per_minute = {options.requests_per_minute}",
        "max_retries = 2",
        "backoff_base = 0.05",
        "backoff_max = 0.5",
        "breaker_open_seconds = 1.0",
        'id_prefix = "af"',
        "",
        "[[sources]]",
        'name = "football-data-today"',
        'provider = "football-data"',
        f"competitions = {json.dumps(competitions)}",
        "",
        "[[sources]]",
        'name = "api-football-live"',
        'provider = "api-football"',
        "",
    ]
    known = {"WC": ("FIFA World Cup", "1"), "PL": ("Premier League", "39")}
    for code in competitions:
        name, league = known.get(code, (code, None))
        ids = f'football-data = "{code}"' + (f', api-football = "{league}"' if league else "")
        lines += [f"[competitions.{code}]", f"name = {_toml_string(name)}", f"provider_ids = {{ {ids} }}", ""]
    for match in matches:
        lines += [
            "[[matches]]",
            f"id = {_toml_string(match_channel_id(match))}",
            'primary = "football-data"',
            'fallback = "api-football"',
            f'provider_ids = {{ football-data = "{match["football_data_id"]}", '
            f'api-football = "{match["api_football_id"]}" }}',
            "",
        ]
    return "\n".join(lines)


def fetch_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class MockApiProcess:
    """``python -m ingest.mockapi`` as a child process on a free port of 127.0.0.1."""

    def __init__(self, data_dir: str | os.PathLike, speed: float, start: str | None = None,
                 extra_args: Sequence[str] = (), log_path: str | os.PathLike | None = None,
                 env: dict | None = None):
        self.directory = Path(tempfile.mkdtemp(prefix="livegate-mockapi-"))
        self.ready_file = self.directory / "ready.json"
        self.log_path = Path(log_path) if log_path else self.directory / "mockapi.log"
        self.request_log = self.directory / "requests.jsonl"
        command = [sys.executable, "-m", "ingest.mockapi", "--data", str(data_dir), "--speed", str(speed),
                   "--port", "0", "--ready-file", str(self.ready_file), "--request-log", str(self.request_log)]
        if start:
            command += ["--start", start]
        command += list(extra_args)
        self.command = command
        self.env = env
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> "MockApiProcess":
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(self.command, cwd=PROJECT_ROOT, stdout=output,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mock API exited with code {self.process.returncode}; "
                                   f"see {self.log_path}")
            if self.ready_file.exists():
                self.url = json.loads(self.ready_file.read_text())["url"]
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mock API did not start within {timeout:g} s; see {self.log_path}")

    def matches(self) -> list[dict]:
        return fetch_json(f"{self.url}/admin/matches")["matches"]

    def requests(self, since: int = 0) -> list[dict]:
        return fetch_json(f"{self.url}/admin/requests?since={since}")["requests"]

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
