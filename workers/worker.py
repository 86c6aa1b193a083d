"""livegate's gunicorn worker: gunicorn's gevent worker plus the hub.

The hub (ring reader, heartbeats, streams) starts before the worker serves
its first request. SIGTERM first ends every stream with a final
``retry:`` spread over ``LIVEGATE_SHUTDOWN_WINDOW``; left alone, open
streams would hold the worker until gunicorn's graceful timeout.
"""

from __future__ import annotations

import logging

import gevent
from gunicorn.workers.ggevent import GeventWorker

from fanout import pod
from livegate.settings import Settings

log = logging.getLogger(__name__)


class StreamWorker(GeventWorker):
    # The master imports this class to fork workers. Redis and the hub are
    # imported in the worker only, after gevent has patched the standard
    # library, because modules imported before the patch keep blocking
    # sockets.

    def run(self) -> None:
        from workers import hub as worker_hub

        ring = pod.ring()
        if ring is None:
            log.error("worker pid=%s has no ring: start gunicorn with -c gunicorn.conf.py; "
                      "streams answer 503", self.pid)
        else:
            hub = worker_hub.Hub(Settings.from_env(), ring, getattr(self, "livegate_slot", None))
            worker_hub.install(hub)
            hub.start()
        super().run()

    def handle_exit(self, sig, frame) -> None:
        # gevent runs this outside the C signal handler, so spawning is safe;
        # the drain itself runs in its own greenlet.
        from workers import hub as worker_hub

        hub = worker_hub.current()
        if hub is not None and not hub.stopping:
            window = min(hub.settings.shutdown_window, max(0.0, self.cfg.graceful_timeout - 2))
            gevent.spawn(hub.shutdown, window)
        super().handle_exit(sig, frame)
