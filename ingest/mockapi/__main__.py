"""``python -m ingest.mockapi --data DIR``: serve recorded matches as live provider APIs.

Example: the last group matches of the 2022 World Cup day of 29 November,
sixty times faster than real time, starting just before kick-off (the
2022 file gives local Qatar times, UTC+3, without an offset):

    python -m ingest.mockapi --data ../shared/data/openfootball \\
        --default-utc-offset +03:00 --start 2022-11-29T17:55 --speed 60 --port 8081
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

from ingest.mockapi.server import (
    API_FOOTBALL, FOOTBALL_DATA, MockServer, MockState, Quota, SimulatedClock, fault_from_spec, parse_time,
)
from ingest.mockapi.timeline import load_timelines
from livegate.logs import configure_logging
from livegate.settings import Settings

log = logging.getLogger("ingest.mockapi")

_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def parse_offset(text: str) -> timedelta:
    found = _OFFSET.match(text.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"invalid UTC offset {text!r}; use +HH:MM or -HH:MM")
    sign = 1 if found.group(1) == "+" else -1
    return sign * timedelta(hours=int(found.group(2)), minutes=int(found.group(3)))


def parse_fault(text: str) -> dict:
    """Parse "provider=football-data,status=503,count=3" into fault fields."""
    spec: dict = {}
    for part in text.split(","):
        key, separator, value = part.partition("=")
        if not separator:
            raise argparse.ArgumentTypeError(f"invalid fault {text!r}: expected key=value pairs")
        key = key.strip()
        value = value.strip()
        if key in ("status", "count"):
            spec[key] = int(value)
        elif key in ("delay", "duration"):
            spec[key] = float(value)
        else:
            spec[key] = value
    try:
        fault_from_spec(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid fault {text!r}: {error}") from None
    return spec


def positive_or_zero(text: str) -> int | None:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value or None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest.mockapi",
        description="Serve recorded matches as live football-data.org v4 and API-Football v3 APIs.")
    parser.add_argument("--data", required=True, help="folder of openfootball JSON files to replay")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulated seconds per real second (default 1)")
    parser.add_argument("--start", default=None,
                        help="simulated time at start, ISO 8601 (default: 5 minutes before the first kick-off)")
    parser.add_argument("--default-utc-offset", type=parse_offset, default=timedelta(0),
                        help="UTC offset of kick-off times and --start values that have none (default +00:00)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port to bind, 0 for any free port (default 8081)")
    parser.add_argument("--fd-per-minute", type=positive_or_zero, default=10,
                        help="football-data requests per minute and key, 0 for no limit (default 10)")
    parser.add_argument("--af-per-minute", type=positive_or_zero, default=30,
                        help="API-Football requests per minute and key, 0 for no limit (default 30)")
    parser.add_argument("--af-per-day", type=positive_or_zero, default=7500,
                        help="API-Football requests per day and key, 0 for no limit (default 7500)")
    parser.add_argument("--fd-key", default=None, help="X-Auth-Token to require (default: accept any)")
    parser.add_argument("--af-key", default=None, help="x-apisports-key to require (default: accept any)")
    parser.add_argument("--request-log", default=None, help="append every request as a JSON line to this file")
    parser.add_argument("--fault", type=parse_fault, action="append", default=[],
                        help="inject a fault from the start, e.g. provider=football-data,status=503,count=3 "
                             "or provider=any,delay=5,duration=30 (repeatable)")
    parser.add_argument("--ready-file", default=None,
                        help="write {\"url\": ...} to this file once the server listens")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    configure_logging(Settings.from_env())
    try:
        timelines = load_timelines(arguments.data, arguments.default_utc_offset)
    except (FileNotFoundError, ValueError) as error:
        print(f"mockapi: cannot load timelines from {arguments.data}: {error}", file=sys.stderr)
        return 2
    if arguments.start:
        start = parse_time(arguments.start, arguments.default_utc_offset)
    else:
        start = min(t.kickoff for t in timelines) - timedelta(minutes=5)
    clock = SimulatedClock(start, arguments.speed)
    quotas = {
        FOOTBALL_DATA: Quota(arguments.fd_per_minute, None),
        API_FOOTBALL: Quota(arguments.af_per_minute, arguments.af_per_day),
    }
    state = MockState(timelines, clock, quotas, {FOOTBALL_DATA: arguments.fd_key, API_FOOTBALL: arguments.af_key},
                      Path(arguments.request_log) if arguments.request_log else None)
    for spec in arguments.fault:
        state.faults.append(fault_from_spec(spec))
    server = MockServer(state, arguments.host, arguments.port).start()
    log.info("mock API serving %d matches at %s; simulated time %s at %gx", len(timelines), server.url,
             start.isoformat(), arguments.speed)
    if arguments.ready_file:
        Path(arguments.ready_file).write_text(json.dumps({"url": server.url}))

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    while not stopping.wait(1.0):
        pass
    server.stop()
    log.info("mock API stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
