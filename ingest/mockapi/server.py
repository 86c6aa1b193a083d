"""The mock partner API: both provider formats over HTTP, with quotas, faults and a request log.

Provider endpoints:

- football-data.org v4: ``GET /v4/matches`` (filters ``competitions``,
  ``ids``, ``dateFrom``/``dateTo``, ``status``; without ids or dates the
  simulated day), ``GET /v4/matches/{id}``, ``GET
  /v4/competitions/{code}/matches`` (``season``, ``dateFrom``/``dateTo``,
  ``status``). Key in ``X-Auth-Token``.
- API-Football v3: ``GET /fixtures`` with ``live=all`` or ``live=ID-ID``,
  ``ids=ID-ID``, or ``date``/``league``/``season``. Key in
  ``x-apisports-key``.

Admin endpoints (never rate limited): ``GET /admin/requests?since=SEQ``
(the request log), ``GET|POST|DELETE /admin/faults``, ``GET|POST
/admin/clock``, ``GET /admin/matches`` (ids of every replayed match in both
formats), ``GET /admin/health``.

Quotas are fixed windows per provider and key, as the providers count
them: a window starts at its first request and lasts 60 s (or a day).
Past the limit the response is 429 with Retry-After in seconds until the
window ends.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ingest.mockapi import render
from ingest.mockapi.timeline import Timeline

log = logging.getLogger(__name__)

FOOTBALL_DATA = "football-data"
API_FOOTBALL = "api-football"
PROVIDERS = (FOOTBALL_DATA, API_FOOTBALL)
REQUEST_LOG_MEMORY = 200_000
FD_LIVE = {"IN_PLAY", "PAUSED", "EXTRA_TIME", "PENALTY_SHOOTOUT"}


class SimulatedClock:
    """Simulated time running ``speed`` times faster than real time from ``start``."""

    def __init__(self, start: datetime, speed: float):
        self._lock = threading.Lock()
        self.reset(start, speed)

    def reset(self, start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        with self._lock:
            self.start = start.astimezone(timezone.utc)
            self.speed = speed
            self._real_start = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            return self.start + timedelta(seconds=(time.monotonic() - self._real_start) * self.speed)


@dataclass
class Quota:
    """Fixed-window request counters of one provider, per key."""

    per_minute: int | None
    per_day: int | None
    _windows: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, key: str, now: float) -> tuple[bool, float, dict[str, int]]:
        """Count one request; return (allowed, seconds until a refusal ends, remaining per window)."""
        with self._lock:
            remaining: dict[str, int] = {}
            wait = 0.0
            windows = [(name, limit, length) for name, limit, length in
                       (("minute", self.per_minute, 60.0), ("day", self.per_day, 86_400.0)) if limit]
            for name, limit, length in windows:
                started, count = self._windows.get((key, name), (now, 0))
                if now >= started + length:
                    started, count = now, 0
                self._windows[(key, name)] = (started, count)
                if count >= limit:
                    wait = max(wait, started + length - now)
                remaining[name] = max(0, limit - count)
            if wait > 0:
                return False, wait, remaining
            for name, limit, length in windows:
                started, count = self._windows[(key, name)]
                self._windows[(key, name)] = (started, count + 1)
                remaining[name] = max(0, limit - count - 1)
            return True, 0.0, remaining

    def reset_seconds(self, key: str, now: float) -> int:
        started, _ = self._windows.get((key, "minute"), (now, 0))
        return max(0, int(round(started + 60.0 - now)))


@dataclass
class Fault:
    """An injected failure: a status, a delay, or both, for some requests of a provider."""

    provider: str = "any"
    status: int | None = None
    delay: float = 0.0
    count: int | None = None
    until: float | None = None
    retry_after: str | None = None
    path_prefix: str = ""

    def expired(self, now: float) -> bool:
        return (self.until is not None and now >= self.until) or (self.count is not None and self.count <= 0)

    def matches(self, provider: str, path: str, now: float) -> bool:
        if self.provider not in ("any", provider) or self.expired(now):
            return False
        return path.startswith(self.path_prefix)

    def describe(self) -> dict:
        return {"provider": self.provider, "status": self.status, "delay": self.delay, "count": self.count,
                "until": self.until, "retry_after": self.retry_after, "path_prefix": self.path_prefix}


def fault_from_spec(spec: dict) -> Fault:
    """Build a Fault from JSON or CLI fields; raises ValueError naming a bad field."""
    allowed = {"provider", "status", "delay", "count", "duration", "retry_after", "path_prefix"}
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"unknown fault fields {sorted(unknown)}; use {sorted(allowed)}")
    provider = spec.get("provider", "any")
    if provider not in (*PROVIDERS, "any"):
        raise ValueError(f"fault provider must be one of {', '.join(PROVIDERS)} or any, got {provider!r}")
    status = spec.get("status")
    if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
        raise ValueError(f"fault status must be an HTTP error status 400-599, got {status!r}")
    delay = float(spec.get("delay", 0.0))
    if status is None and delay <= 0:
        raise ValueError("a fault needs a status, a delay > 0 seconds, or both")
    count = spec.get("count")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError(f"fault count must be an integer >= 1, got {count!r}")
    duration = spec.get("duration")
    until = time.monotonic() + float(duration) if duration is not None else None
    retry_after = spec.get("retry_after")
    return Fault(provider, status, delay, count, until,
                 None if retry_after is None else str(retry_after), str(spec.get("path_prefix", "")))


class MockState:
    """Everything the handler threads share."""

    def __init__(self, timelines: list[Timeline], clock: SimulatedClock, quotas: dict[str, Quota],
                 keys: dict[str, str | None], request_log: Path | None):
        self.timelines = timelines
        self.clock = clock
        self.quotas = quotas
        self.keys = keys
        self.teams = render.TeamIds(timelines)
        self.by_fd_id = {render.fd_match_id(t): t for t in timelines}
        self.by_af_id = {render.af_fixture_id(t): t for t in timelines}
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.requests: deque = deque(maxlen=REQUEST_LOG_MEMORY)
        self.sequence = 0
        self.log_file = open(request_log, "a", encoding="utf-8") if request_log else None

    def record(self, entry: dict) -> None:
        with self.lock:
            self.sequence += 1
            entry = {"seq": self.sequence, **entry}
            self.requests.append(entry)
            if self.log_file is not None:
                self.log_file.write(json.dumps(entry) + "\n")
                self.log_file.flush()

    def take_fault(self, provider: str, path: str) -> Fault | None:
        now = time.monotonic()
        with self.lock:
            self.faults = [fault for fault in self.faults if not fault.expired(now)]
            for fault in self.faults:
                if fault.matches(provider, path, now):
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    def season_of(self, code: str, day: date, season: str | None) -> list[Timeline]:
        matches = [t for t in self.timelines if t.competition.code == code]
        if season is not None:
            return [t for t in matches if str(t.competition.season) == season]
        seasons = sorted({t.competition.season for t in matches})
        current = None
        for candidate in seasons:
            first = min(t.kickoff.date() for t in matches if t.competition.season == candidate)
            if first <= day:
                current = candidate
        if current is None and seasons:
            current = seasons[0]
        return [t for t in matches if t.competition.season == current]


def _split(value: str | None, separator: str) -> list[str]:
    return [part for part in (value or "").split(separator) if part]


def _date(value: str) -> date:
    return datetime.strptime(value, "%Y-%m-%d").date()


class MockHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "livegate-mockapi/1"
    # Headers and body go out in two writes; without TCP_NODELAY the second
    # waits for the client's delayed ACK, about 40 ms per keep-alive request.
    disable_nagle_algorithm = True
    state: MockState  # set on the subclass the server builds

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # --- plumbing ---------------------------------------------------------------

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (for example on a timeout fault); nothing to answer.
            pass
        self._status = status

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"{}")

    def do_GET(self) -> None:  # noqa: N802 - http.server names
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self._status = 0
        extra: dict[str, Any] = {}
        if url.path.startswith("/v4/"):
            provider = FOOTBALL_DATA
        elif url.path.startswith("/fixtures"):
            provider = API_FOOTBALL
        else:
            provider = "admin"
        try:
            if provider == "admin":
                self._admin(method, url.path, query)
            elif method != "GET":
                self._send(405, {"message": f"{method} is not allowed on {url.path}"})
            else:
                extra = self._provider(provider, url.path, query)
        except Exception as error:  # noqa: BLE001 - the mock answers 500 like a broken server would
            log.exception("mock API: %s %s failed", method, self.path)
            self._send(500, {"message": f"mock API error: {error}"})
        if provider != "admin" or url.path != "/admin/requests":
            self.state.record({
                "time": time.time(), "provider": provider, "method": method, "path": url.path,
                "query": query, "status": self._status, "duration_ms": round((time.monotonic() - started) * 1000, 1),
                "client_port": self.client_address[1],
                **extra,
            })

    # --- providers ------------------------------------------------------------------

    def _provider(self, provider: str, path: str, query: dict) -> dict:
        state = self.state
        extra: dict[str, Any] = {}
        fault = state.take_fault(provider, path)
        if fault is not None:
            extra["fault"] = fault.status or "delay"
            if fault.delay > 0:
                time.sleep(fault.delay)
            if fault.status is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                self._send(fault.status, {"message": f"injected fault {fault.status}", "errorCode": fault.status},
                           headers)
                return extra

        header = "X-Auth-Token" if provider == FOOTBALL_DATA else "x-apisports-key"
        key = self.headers.get(header)
        expected = state.keys.get(provider)
        if expected is not None and key != expected:
            if provider == FOOTBALL_DATA:
                self._send(403, {"message": "The resource you are looking for is restricted. "
                                            "Please pass a valid API token.", "errorCode": 403})
            else:
                self._send(200, render.af_envelope(query, [], {"token": "Error/Missing application key."}))
            extra["auth"] = "rejected"
            return extra

        allowed, wait, remaining = state.quotas[provider].check(key or "", time.monotonic())
        if provider == FOOTBALL_DATA:
            headers = {
                "X-API-Version": "v4",
                "X-Requests-Available-Minute": str(remaining.get("minute", 0)),
                "X-RequestCounter-Reset": str(state.quotas[provider].reset_seconds(key or "", time.monotonic())),
            }
        else:
            headers = {}
            if state.quotas[provider].per_minute:
                headers["X-RateLimit-Limit"] = str(state.quotas[provider].per_minute)
                headers["X-RateLimit-Remaining"] = str(remaining.get("minute", 0))
            if state.quotas[provider].per_day:
                headers["x-ratelimit-requests-limit"] = str(state.quotas[provider].per_day)
                headers["x-ratelimit-requests-remaining"] = str(remaining.get("day", 0))
        if not allowed:
            seconds = max(1, int(wait + 0.999))
            extra["rate_limited"] = True
            self._send(429, {"message": f"You reached your request limit. Wait {seconds} seconds.",
                             "errorCode": 429}, {**headers, "Retry-After": str(seconds)})
            return extra

        now = state.clock.now()
        if provider == FOOTBALL_DATA:
            status, body = self._football_data(path, query, now)
        else:
            status, body = 200, self._api_football(query, now)
        self._send(status, body, headers)
        return extra

    def _football_data(self, path: str, query: dict, now: datetime) -> tuple[int, dict]:
        state = self.state
        parts = [part for part in path.split("/") if part]
        render_one = lambda t: render.fd_match(t, t.state_at(now), state.teams, now)  # noqa: E731
        if parts[:2] == ["v4", "matches"] and len(parts) == 3:
            timeline = state.by_fd_id.get(int(parts[2])) if parts[2].isdigit() else None
            if timeline is None:
                return 404, {"message": f"The resource you are looking for does not exist: match {parts[2]}",
                             "errorCode": 404}
            return 200, render_one(timeline)

        if parts == ["v4", "matches"]:
            ids = _split(query.get("ids"), ",")
            if ids:
                chosen = [state.by_fd_id[int(i)] for i in ids if i.isdigit() and int(i) in state.by_fd_id]
                filters = {"ids": ids}
            else:
                first, last = self._date_range(query, now)
                chosen = [t for t in state.timelines if first <= t.kickoff.date() <= last]
                codes = _split(query.get("competitions"), ",")
                if codes:
                    chosen = [t for t in chosen if t.competition.code in codes]
                filters = {"dateFrom": first.isoformat(), "dateTo": last.isoformat(), "permission": "TIER_ONE"}
            matches = self._fd_status_filter([render_one(t) for t in sorted(chosen, key=_order)], query)
            return 200, render.fd_match_list(matches, filters)

        if len(parts) == 4 and parts[:2] == ["v4", "competitions"] and parts[3] == "matches":
            code = parts[2]
            season = state.season_of(code, now.date(), query.get("season"))
            if not season:
                return 404, {"message": f"The resource you are looking for does not exist: competition {code}",
                             "errorCode": 404}
            chosen = season
            filters: dict[str, Any] = {"season": str(season[0].competition.season)}
            if "dateFrom" in query or "dateTo" in query:
                first, last = self._date_range(query, now)
                chosen = [t for t in chosen if first <= t.kickoff.date() <= last]
                filters.update(dateFrom=first.isoformat(), dateTo=last.isoformat())
            matches = self._fd_status_filter([render_one(t) for t in sorted(chosen, key=_order)], query)
            competition = matches[0]["competition"] if matches else None
            return 200, render.fd_match_list(matches, filters, competition)
        return 404, {"message": f"The resource you are looking for does not exist: {path}", "errorCode": 404}

    @staticmethod
    def _date_range(query: dict, now: datetime) -> tuple[date, date]:
        first = _date(query["dateFrom"]) if "dateFrom" in query else now.date()
        last = _date(query["dateTo"]) if "dateTo" in query else first
        return first, last

    @staticmethod
    def _fd_status_filter(matches: list[dict], query: dict) -> list[dict]:
        wanted = set(_split(query.get("status"), ","))
        if not wanted:
            return matches
        if "LIVE" in wanted:
            wanted |= FD_LIVE
        if "SCHEDULED" in wanted:
            wanted.add("TIMED")
        return [match for match in matches if match["status"] in wanted]

    def _api_football(self, query: dict, now: datetime) -> dict:
        state = self.state
        chosen: list[Timeline]
        if "ids" in query:
            chosen = [state.by_af_id[int(i)] for i in _split(query["ids"], "-")
                      if i.isdigit() and int(i) in state.by_af_id]
        elif "live" in query:
            leagues = None if query["live"] == "all" else set(_split(query["live"], "-"))
            chosen = []
            for timeline in state.timelines:
                phase_state = timeline.state_at(now)
                if phase_state.phase in ("before", "ended"):
                    continue
                if leagues is None or str(timeline.competition.af_id) in leagues:
                    chosen.append(timeline)
        else:
            chosen = list(state.timelines)
            if "date" in query:
                day = _date(query["date"])
                chosen = [t for t in chosen if t.kickoff.date() == day]
            if "league" in query:
                chosen = [t for t in chosen if str(t.competition.af_id) == query["league"]]
            if "season" in query:
                chosen = [t for t in chosen if str(t.competition.season) == query["season"]]
            if not {"date", "league", "season"} & set(query):
                return render.af_envelope(query, [], {"required": "At least one parameter is required."})
        response = [render.af_fixture(t, t.state_at(now), state.teams) for t in sorted(chosen, key=_order)]
        return render.af_envelope(query, response)

    # --- admin ------------------------------------------------------------------------

    def _admin(self, method: str, path: str, query: dict) -> None:
        state = self.state
        if path == "/admin/health":
            self._send(200, {"ok": True})
        elif path == "/admin/requests" and method == "GET":
            since = int(query.get("since", 0))
            with state.lock:
                entries = [entry for entry in state.requests if entry["seq"] > since]
                latest = state.sequence
            self._send(200, {"requests": entries, "next": latest})
        elif path == "/admin/faults":
            if method == "POST":
                try:
                    fault = fault_from_spec(self._read_json())
                except (ValueError, json.JSONDecodeError) as error:
                    self._send(400, {"message": str(error)})
                    return
                with state.lock:
                    state.faults.append(fault)
                log.info("mock API: fault added %s", fault.describe())
                self._send(200, {"faults": [f.describe() for f in state.faults]})
            elif method == "DELETE":
                with state.lock:
                    state.faults.clear()
                log.info("mock API: faults cleared")
                self._send(200, {"faults": []})
            else:
                self._send(200, {"faults": [f.describe() for f in state.faults]})
        elif path == "/admin/clock":
            if method == "POST":
                body = self._read_json()
                start = parse_time(body["start"]) if "start" in body else state.clock.now()
                state.clock.reset(start, float(body.get("speed", state.clock.speed)))
            now = state.clock.now()
            self._send(200, {"now": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "speed": state.clock.speed})
        elif path == "/admin/matches":
            now = state.clock.now()
            self._send(200, {"matches": [
                {"index": t.index, "football_data_id": render.fd_match_id(t),
                 "api_football_id": render.af_fixture_id(t), "competition": t.competition.code,
                 "home": t.home, "away": t.away, "kickoff": t.kickoff.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "phase": t.state_at(now).phase}
                for t in state.timelines
            ]})
        else:
            self._send(404, {"message": f"unknown admin endpoint {method} {path}"})


def _order(timeline: Timeline) -> tuple:
    return (timeline.kickoff, timeline.index)


def parse_time(text: str, default_offset: timedelta = timedelta(0)) -> datetime:
    """Parse an ISO 8601 time; a time without an offset is read in ``default_offset``."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone(default_offset))
    return moment.astimezone(timezone.utc)


class MockServer:
    """The HTTP server in a background thread; ``url`` is its base URL."""

    def __init__(self, state: MockState, host: str = "127.0.0.1", port: int = 0):
        handler = type("BoundMockHandler", (MockHandler,), {"state": state})
        self.state = state
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        # A short poll interval lets stop() return quickly.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="mockapi", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "MockServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
        if self.state.log_file is not None:
            self.state.log_file.close()
