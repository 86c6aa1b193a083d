"""``python -m ingest --config FILE``: run the ingest process until SIGTERM or Ctrl-C.

Redis, the key prefix and logging come from the same environment
variables as the gateway (REDIS_URL, LIVEGATE_KEY_PREFIX,
LIVEGATE_LOG_LEVEL, LIVEGATE_LOG_FORMAT). Everything about providers and
sources comes from the TOML file, which docs/ingest.md documents.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from ingest.config import ConfigError, load_config
from ingest.metrics import serve_metrics
from ingest.service import IngestService
from livegate.logs import configure_logging
from livegate.settings import SettingError, Settings

log = logging.getLogger("ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest",
                                     description="Poll partner APIs and publish canonical match documents.")
    parser.add_argument("--config", required=True, help="path of the TOML configuration file")
    parser.add_argument("--check", action="store_true",
                        help="validate the configuration (API key variables included) and exit")
    parser.add_argument("--stats-file", default=None,
                        help="write the counters as JSON to this file every second and at exit")
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="serve the counters as Prometheus text on /metrics, and the /healthz and "
                             "/readyz probes, on this port (0: off)")
    parser.add_argument("--metrics-address", default="0.0.0.0",
                        help="address of the metrics and probe server (default: all interfaces)")
    arguments = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingError as error:
        print(f"ingest: {error}", file=sys.stderr)
        return 2

    configure_logging(settings)
    if settings.log_level != "debug":
        # httpx logs every request at info level; the pollers log what matters.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)

    try:
        config = load_config(arguments.config)
    except ConfigError as error:
        print(f"ingest: invalid configuration: {error}", file=sys.stderr)
        return 2
    if arguments.check:
        print(f"configuration {arguments.config} is valid: {len(config.providers)} providers, "
              f"{len(config.sources)} sources, {len(config.matches)} mapped matches")
        return 0

    service = IngestService(config, settings, stats_file=arguments.stats_file)
    if arguments.metrics_port:
        try:
            serve_metrics(service.stats, arguments.metrics_port, arguments.metrics_address,
                          health=service.health)
        except OSError as error:
            print(f"ingest: cannot serve metrics on {arguments.metrics_address}:{arguments.metrics_port}: "
                  f"{error}; choose another --metrics-port or --metrics-address", file=sys.stderr)
            return 2
        log.info("metrics on http://%s:%d/metrics, probes on /healthz and /readyz (replica %s)",
                 arguments.metrics_address, arguments.metrics_port, service.token)

    def request_stop(signum: int, frame: object) -> None:
        log.info("signal %s received; stopping", signal.Signals(signum).name)
        service.stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    service.start()
    service.wait()
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
