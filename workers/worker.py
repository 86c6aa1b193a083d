"""livegate's gunicorn worker: gunicorn's gevent worker plus the hub.

The hub (ring reader, heartbeats, streams) starts before the worker serves
its first request. SIGTERM first ends every stream with a final
``retry:`` spread over ``LIVEGATE_SHUTDOWN_WINDOW``; left alone, open
streams would hold the worker until gunicorn's graceful timeout.
"""

from __future__ import annotations

import logging
import sys

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
            settings = Settings.from_env()
            if settings.max_streams_per_worker >= self.worker_connections:
                # gunicorn stops accepting connections when all are taken, so
                # publish and health requests would wait behind full streams.
                log.warning("worker pid=%s: LIVEGATE_MAX_STREAMS_PER_WORKER=%d is not below "
                            "worker_connections=%d; lower it so that other requests keep a "
                            "free connection", self.pid, settings.max_streams_per_worker,
                            self.worker_connections)
            hub = worker_hub.Hub(settings, ring, getattr(self, "livegate_slot", None))
            # Streams frame their own HTTP chunks only where gunicorn would
            # write plain HTTP/1.1 to the socket: not over TLS, and not
            # for the uwsgi protocol, whose bodies carry no chunk framing.
            hub.direct_writes = (not self.cfg.is_ssl
                                 and getattr(self.cfg, "protocol", "http") == "http")
            worker_hub.install(hub)
            hub.start()
        super().run()

    def handle_exit(self, sig, frame) -> None:
        # gevent runs this outside the C signal handler, so spawning is safe;
        # the drain itself runs in its own greenlet. A worker still booting
        # may be in the middle of importing the hub, so it is looked up, not
        # imported: without a hub there are no streams to drain.
        worker_hub = sys.modules.get("workers.hub")
        hub = worker_hub.current() if worker_hub is not None else None
        if hub is not None and not hub.stopping:
            window = min(hub.settings.shutdown_window, max(0.0, self.cfg.graceful_timeout - 2))
            gevent.spawn(hub.shutdown, window)
        super().handle_exit(sig, frame)
