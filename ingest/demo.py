"""The demo: a dozen simulated live matches published to livegate.

``python -m ingest.demo`` publishes to the Redis in REDIS_URL.
``python -m ingest.demo --serve`` also runs the gateway under gunicorn and,
when REDIS_URL is unset, a private redis-server, then prints the URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis

from ingest.local_redis import free_port, start_redis_server
from ingest.publisher import Publisher
from ingest.simulator import simulated_matches
from livegate.logs import configure_logging
from livegate.settings import Settings

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHANNEL_PREFIX = "sport-livescore"
# Ticks a finished match stays on the board before it kicks off again.
FINISHED_TICKS = 10


def run_feed(publisher: Publisher, matches: int, tick: float, ticks: int | None) -> None:
    """Publish every match once per ``tick`` seconds; stop after ``ticks`` ticks if given."""
    board = simulated_matches(matches)
    finished_for = {match.match_id: 0 for match in board}
    count = 0
    log.info("demo feed started: %d matches, one match minute every %.1f s", matches, tick)
    while ticks is None or count < ticks:
        started = time.monotonic()
        changes = 0
        for match in board:
            if match.status == "FINISHED":
                finished_for[match.match_id] += 1
                if finished_for[match.match_id] > FINISHED_TICKS:
                    finished_for[match.match_id] = 0
                    match.play_return_fixture()
            match.tick()
            result = publisher.publish(f"{CHANNEL_PREFIX}/{match.match_id}", match.document())
            changes += result.changed
        count += 1
        log.debug("tick %d: %d of %d matches changed", count, changes, len(board))
        time.sleep(max(0.0, tick - (time.monotonic() - started)))


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gateway at {url} was not ready within {timeout:.0f} s")


def serve(arguments: argparse.Namespace) -> int:
    """Run Redis (if needed), the gateway and the feed until interrupted."""
    children: list[subprocess.Popen] = []
    environment = dict(os.environ)
    try:
        if not environment.get("REDIS_URL"):
            directory = tempfile.mkdtemp(prefix="livegate-demo-redis-")
            port = free_port()
            children.append(start_redis_server(port, directory))
            environment["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        bind = f"{arguments.host}:{arguments.port}"
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app",
             "--bind", bind, "--workers", str(arguments.workers)],
            cwd=PROJECT_ROOT, env=environment,
        )
        children.append(gateway)
        url = f"http://{bind}"
        wait_ready(url, gateway)

        settings = Settings.from_env(environment)
        publisher = Publisher.from_settings(settings, redis.Redis.from_url(settings.redis_url))
        print(f"\nlivegate is running: open {url}/\n"
              f"  curl -N '{url}/v1/stream?channel={CHANNEL_PREFIX}/*'\n"
              "Press Ctrl-C to stop.\n", flush=True)
        run_feed(publisher, arguments.matches, arguments.tick, arguments.ticks)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=35)
                except subprocess.TimeoutExpired:
                    child.kill()
    return 0


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="livegate demo feed of simulated live matches")
    parser.add_argument("--serve", action="store_true",
                        help="also run the gateway (and a private Redis when REDIS_URL is unset)")
    parser.add_argument("--host", default="127.0.0.1", help="gateway address with --serve")
    parser.add_argument("--port", type=int, default=8000, help="gateway port with --serve")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers with --serve")
    parser.add_argument("--matches", type=int, default=12, help="number of simulated matches")
    parser.add_argument("--tick", type=float, default=1.0,
                        help="seconds of real time per simulated match minute")
    parser.add_argument("--ticks", type=int, default=None,
                        help="stop after this many ticks (default: run until interrupted)")
    arguments = parser.parse_args(argv)
    # SIGTERM (from a container runtime or `timeout`) takes the same path
    # as Ctrl-C, so the gateway and the private Redis are stopped too.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    settings = Settings.from_env()
    configure_logging(settings)
    if arguments.serve:
        return serve(arguments)
    publisher = Publisher.from_settings(settings)
    try:
        run_feed(publisher, arguments.matches, arguments.tick, arguments.ticks)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
