"""The demo: a dozen simulated live matches published to livegate.

``python -m ingest.demo`` publishes to the Redis in REDIS_URL.
``python -m ingest.demo --serve`` also runs the gateway under gunicorn and,
when REDIS_URL is unset, a private redis-server, then prints the URL.
``--replay DIR`` replaces the simulated matches with recorded ones: the
mock partner API replays the openfootball files in DIR and the real
ingest process (``python -m ingest``) polls it.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ingest.local_redis import free_port, start_redis_server
from ingest.publisher import Publisher
from ingest.replay import MockApiProcess, ReplayOptions, replay_config
from ingest.simulator import simulated_matches
from livegate.logs import configure_logging
from livegate.settings import SettingError, Settings

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHANNEL_PREFIX = "sport-livescore"
# The channel of the printed publish example, apart from the scoreboard's.
DEMO_PUBLISH_CHANNEL = "demo/hello"
# Namespaces, the score view and a rule, for trying channel mapping in the demo.
EXAMPLE_CHANNELS_FILE = PROJECT_ROOT / "config" / "channels.example.toml"
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


def run_replay(arguments: argparse.Namespace, environment: dict, children: list) -> None:
    """Replay the timelines in ``arguments.replay`` through the mock API and the ingest process."""
    # One simulated match minute per tick, as in the simulated feed.
    mock = MockApiProcess(arguments.replay, speed=60.0 / arguments.tick,
                          extra_args=["--fd-per-minute", "240", "--af-per-minute", "240", "--af-per-day", "0"],
                          env=environment)
    mock.start()
    children.append(mock.process)
    config_path = mock.directory / "ingest.toml"
    options = ReplayOptions(poll_interval=arguments.tick, requests_per_minute=200)
    config_path.write_text(replay_config(mock.url, mock.matches(), options))
    log.info("replaying %s through the mock API at %s; ingest configuration %s",
             arguments.replay, mock.url, config_path)
    ingest = subprocess.Popen([sys.executable, "-m", "ingest", "--config", str(config_path)],
                              cwd=PROJECT_ROOT, env=environment)
    children.append(ingest)
    while ingest.poll() is None and mock.process.poll() is None:
        time.sleep(0.5)
    raise RuntimeError(f"the replay stopped: ingest exit code {ingest.poll()}, "
                       f"mock API exit code {mock.process.poll()}")


def replay_without_gateway(arguments: argparse.Namespace) -> int:
    """Run the replay against the Redis in REDIS_URL until interrupted."""
    children: list[subprocess.Popen] = []
    try:
        run_replay(arguments, dict(os.environ), children)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=20)
    return 0


def serve(arguments: argparse.Namespace) -> int:
    """Run Redis (if needed), the gateway and the feed until interrupted."""
    children: list[subprocess.Popen] = []
    folders: list[str] = []
    environment = dict(os.environ)
    try:
        if not environment.get("REDIS_URL"):
            directory = tempfile.mkdtemp(prefix="livegate-demo-redis-")
            folders.append(directory)
            port = free_port()
            # Ctrl-C reaches only this process, which stops the gateway
            # first and Redis last, so no process loses its Redis mid-request.
            children.append(start_redis_server(port, directory, own_session=True))
            environment["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        # A fresh publish token per run, so the demo gateway is never open to
        # anyone who can reach it; the feed itself publishes through Redis.
        token = None
        if not environment.get("LIVEGATE_PUBLISH_TOKENS"):
            token = secrets.token_urlsafe(32)
            environment["LIVEGATE_PUBLISH_TOKENS"] = token
        # The same for the admin token that switches aliases, and the example
        # channels file with its score view, unless the caller set their own.
        admin_token = None
        if not environment.get("LIVEGATE_ADMIN_TOKENS"):
            admin_token = secrets.token_urlsafe(32)
            environment["LIVEGATE_ADMIN_TOKENS"] = admin_token
        environment.setdefault("LIVEGATE_CHANNELS_FILE", str(EXAMPLE_CHANNELS_FILE))
        # Several gateways on consecutive ports share the Redis, like pods
        # behind a load balancer: any of them serves any client and id.
        urls = []
        for offset in range(arguments.gateways):
            bind = f"{arguments.host}:{arguments.port + offset}"
            gateway = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app",
                 "--bind", bind, "--workers", str(arguments.workers)],
                cwd=PROJECT_ROOT, env=environment, start_new_session=True,
            )
            children.append(gateway)
            urls.append(f"http://{bind}")
            wait_ready(urls[-1], gateway)
        url = urls[0]

        settings = Settings.from_env(environment)
        publisher = Publisher.from_settings(settings)
        for gateway_url in urls:
            print(f"\nlivegate is running: open {gateway_url}/\n"
                  f"  curl -N '{gateway_url}/v1/stream?channel={CHANNEL_PREFIX}/*'", flush=True)
        print(f"  Redis: {environment['REDIS_URL']}\n", flush=True)
        print(publish_example(url, token), flush=True)
        print(alias_example(url, admin_token), flush=True)
        print("Press Ctrl-C to stop.\n", flush=True)
        if arguments.replay:
            run_replay(arguments, environment, children)
        else:
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
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def publish_example(url: str, token: str | None) -> str:
    """Return a ready curl command that publishes with ``token`` (or a placeholder)."""
    if token is None:
        token_text = "TOKEN"
        header = "Publish with one of the tokens in LIVEGATE_PUBLISH_TOKENS in place of TOKEN:\n"
    else:
        token_text = token
        header = f"Publish token of this run (a new one each run):\n  {token}\n"
    return (
        header
        + f"  curl -X POST -H 'Authorization: Bearer {token_text}' \\\n"
        + "    -H 'Content-Type: application/json' -d '{\"message\": \"hello\"}' \\\n"
        + f"    {url}/v1/publish/{DEMO_PUBLISH_CHANNEL}\n"
    )


def alias_example(url: str, token: str | None) -> str:
    """Return ready curl commands that switch the featured alias and read a view."""
    token_text = token or "ADMIN_TOKEN"
    return (
        ("Admin token of this run (switches aliases):\n  " + token + "\n" if token
         else "Switch aliases with a token from LIVEGATE_ADMIN_TOKENS in place of ADMIN_TOKEN:\n")
        + f"  curl -X PUT -H 'Authorization: Bearer {token_text}' \\\n"
        + "    -d '{\"target\": \"" + CHANNEL_PREFIX + "/MATCH_ID\"}' \\\n"
        + f"    {url}/v1/aliases/{CHANNEL_PREFIX}/featured\n"
        + f"  curl -N '{url}/v1/stream?channel={CHANNEL_PREFIX}/featured'\n"
        + f"  curl -N '{url}/v1/stream?channel={CHANNEL_PREFIX}/*&view=score'\n"
    )


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="livegate demo feed of simulated live matches")
    parser.add_argument("--serve", action="store_true",
                        help="also run the gateway (and a private Redis when REDIS_URL is unset)")
    parser.add_argument("--host", default="127.0.0.1", help="gateway address with --serve")
    parser.add_argument("--port", type=int, default=8000, help="gateway port with --serve")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers with --serve")
    parser.add_argument("--gateways", type=int, default=1,
                        help="gateways to run with --serve, on consecutive ports from --port")
    parser.add_argument("--matches", type=int, default=12, help="number of simulated matches")
    parser.add_argument("--tick", type=float, default=1.0,
                        help="seconds of real time per simulated match minute")
    parser.add_argument("--ticks", type=int, default=None,
                        help="stop after this many ticks (default: run until interrupted)")
    parser.add_argument("--replay", metavar="DIR", default=None,
                        help="replay the openfootball JSON files in DIR through the mock partner API "
                             "and the real ingest process instead of simulating matches; --tick sets "
                             "the replay speed, --matches and --ticks do not apply")
    arguments = parser.parse_args(argv)

    # SIGTERM (from a container runtime or `timeout`) takes the same path
    # as Ctrl-C, so the gateway and the private Redis are stopped too.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        settings = Settings.from_env()
    except SettingError as error:
        print(f"error: {error}; fix it and start again", file=sys.stderr)
        return 2
    configure_logging(settings)
    if arguments.serve:
        return serve(arguments)
    if arguments.replay:
        return replay_without_gateway(arguments)
    publisher = Publisher.from_settings(settings)
    try:
        run_feed(publisher, arguments.matches, arguments.tick, arguments.ticks)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
