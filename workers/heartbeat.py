"""Heartbeats: an SSE comment on every stream that was idle for the interval.

One greenlet per worker checks every stream a few times per interval, so a
quiet stream sees a comment between one and 1.25 intervals after its last
write. Each stream's interval is the shortest of its channels' namespaces;
the loop checks at a quarter of the shortest interval any namespace has. Comments carry no ``id:``, so a browser's resume point stays on a
real event. The same pass ends streams whose subscriber token expired, at
most one check interval (1 s or less) late, and streams that were closed
as slow consumers but are stuck in a socket write.
"""

from __future__ import annotations

import logging
import time

import gevent

from livegate.frames import HEARTBEAT

log = logging.getLogger(__name__)

# A closed stream whose greenlet has not ended this long after the close is
# blocked writing to a peer that does not read, so its greenlet is killed.
STUCK_WRITE_GRACE = 2.0


class HeartbeatLoop:
    def __init__(self, hub, interval: float):
        self._hub = hub
        self.interval = interval
        self.sent = 0

    def run(self) -> None:
        check_every = min(1.0, self.interval / 4)
        while not self._hub.stopping:
            gevent.sleep(check_every)
            self.beat(time.monotonic())

    def beat(self, now: float) -> None:
        for stream in list(self._hub.streams):
            if stream.closed:
                self._kill_if_stuck(stream, now)
            elif stream.expires_at is not None and now >= stream.expires_at:
                self._hub.expire_stream(stream)
            elif (
                stream.pending is None
                and not stream.queue
                and now - stream.last_sent >= stream.heartbeat_interval
            ):
                stream.enqueue(HEARTBEAT)
                stream.last_sent = now
                self.sent += 1

    def _kill_if_stuck(self, stream, now: float) -> None:
        greenlet = stream.greenlet
        if greenlet is None or greenlet.dead or now - stream.closed_at < STUCK_WRITE_GRACE:
            return
        log.info("stream %s from %s is stuck writing after close (%s); killing its greenlet",
                 stream.id, stream.remote, stream.close_reason)
        greenlet.kill(block=False)
