"""gunicorn settings and hooks for livegate.

Defaults fit long-lived SSE streams; each can be overridden the usual
gunicorn way (command line, GUNICORN_CMD_ARGS, WEB_CONCURRENCY).
gunicorn's default bind applies: 127.0.0.1:8000, or 0.0.0.0:$PORT when PORT
is set.
"""

import logging
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fanout import pod  # noqa: E402
from livegate.logs import configure_logging  # noqa: E402
from livegate.settings import SettingError, Settings  # noqa: E402

# Worker processes. Each serves its share of the streams, and the pod's single
# Redis subscriber feeds them all through the ring, whatever their number.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# gunicorn's gevent worker with the livegate hub started in it.
worker_class = "workers.worker.StreamWorker"

# Streams per worker. gunicorn's default of 1000 is far below what one
# gevent worker holds; each stream takes one file descriptor, and the
# process limit (ulimit -n) must leave room above this number.
worker_connections = 10000

# A gevent worker notifies the master that it is alive once a second from its main
# loop, so only a worker whose event loop is blocked for this long is
# killed; a healthy one never gets near it.
timeout = 60

# Streams end on SIGTERM within LIVEGATE_SHUTDOWN_WINDOW; this is the hard
# stop after that.
graceful_timeout = 30

# Restarting a worker drops every stream it holds, so no recycling.
max_requests = 0

keepalive = 5

# Access logs for thousands of long streams would flood the log; enable
# with --access-logfile - when needed.
accesslog = None

# gunicorn 27's control socket defaults to one path per user, so two
# gateways on one host would fight over it, and a read-only root file
# system has no place for it. Enable with --control-socket PATH if needed.
control_socket_disable = True


def on_starting(server):
    from livegate.channel_config import ChannelConfigError

    try:
        _start(server)
    except (SettingError, ChannelConfigError) as error:
        # gunicorn prints a RuntimeError as one "Error: ..." line and exits
        # 1, instead of a traceback.
        raise RuntimeError(f"{error}; fix it and start again") from None


def _start(server):
    settings = Settings.from_env()
    configure_logging(settings)
    raise_open_file_limit()
    # Imported here: livegate.auth loads PyJWT and cryptography, which only
    # this hook of the master needs.
    from livegate.auth import log_access_policy
    from livegate.channel_config import ChannelConfig

    logger = logging.getLogger("livegate.gunicorn")
    # An invalid channels file stops the gateway here, before any worker forks.
    channel_config = ChannelConfig.from_settings(settings)
    if settings.channels_file:
        logger.info("channels file %s: %s", settings.channels_file, channel_config.summary())
    log_access_policy(settings, logger, channel_config.namespaces.protected_prefixes())


def raise_open_file_limit():
    """Raise the soft open-file limit to the hard one before workers fork.

    Every stream is a file descriptor, and container runtimes often start
    processes with a soft limit of 1024 and a far higher hard limit; workers
    inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    log = logging.getLogger("livegate.gunicorn")
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < worker_connections + 100:
        log.warning("open-file limit %d is below worker_connections %d: workers fail with "
                    "EMFILE before they are full; raise the hard limit (ulimit -Hn)",
                    soft, worker_connections)
    else:
        log.info("open-file limit %s", soft)


def when_ready(server):
    # Create the ring and start the subscriber before any worker forks, so
    # every worker inherits the same mapping.
    pod.start(Settings.from_env())


def pre_fork(server, worker):
    worker.livegate_slot = pod.assign_slot()


def child_exit(server, worker):
    pod.release_slot(getattr(worker, "livegate_slot", None))
    pod.forget_process(worker.pid)


def on_exit(server):
    pod.stop()
