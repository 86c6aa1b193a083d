"""The pod's Redis subscriber process.

Exactly one runs per pod, started and restarted by the gunicorn master
(``fanout.supervisor``). It subscribes to the bus, decodes each envelope
once, builds the SSE frame bytes once and writes them into the ring, in
seq order and without holes:

- a seq that jumps ahead (a message Pub/Sub dropped, a reconnect, a
  restart of this process) is filled from the global log in Redis first;
- when the log no longer covers the gap, or the epoch changed, a
  RESYNC_ALL record makes the workers to send their clients snapshots;
- a seq already written is skipped.

Run as ``python -m fanout.subscriber --ring-fd FD``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import secrets
import signal
import sys
import time

import redis

from fanout import metrics
from fanout import ring as ring_layout
from fanout.batching import BatchWindow
from fanout.bus import BusSubscription
from fanout.notify import WorkerNotifier
from livegate.channels import InvalidChannelError, validate_channel
from livegate.frames import FrameError, compact_json, delta_data, encode_frame, snapshot_data
from livegate.ids import format_event_id, is_valid_epoch
from livegate.logs import configure_logging
from livegate.redis_client import connect
from livegate.settings import Settings
from livegate.wire import (
    KIND_ALIAS, KIND_SNAPSHOT, Envelope, InvalidEnvelopeError, Keys, Probe, decode_envelope, decode_message,
    encode_probe,
)

log = logging.getLogger(__name__)

STATUS_INTERVAL = 0.5
RECEIVE_TIMEOUT = 0.2
SUBSCRIBE_TIMEOUT = 5.0
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0
# At most this many log lines per kind of invalid message per minute.
INVALID_LOG_LIMIT = 10
# An unrepairable gap that touched more channels than this resynchronises
# every stream instead of naming each channel.
MAX_RESYNC_CHANNELS = 1000

# Replaces the epoch only if it is still the one the caller found (or is
# missing), so that when several pods' subscribers find the same rollback,
# one new epoch wins.
REPLACE_EPOCH_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] or not current then
  redis.call('SET', KEYS[1], ARGV[2])
  return ARGV[2]
end
return current
"""


class ProbeLostError(Exception):
    """A probe did not come back through Pub/Sub in time: the subscription is dead."""


class Subscriber:
    """Reads the bus and writes frames into the ring. Not thread-safe: one loop."""

    def __init__(self, settings: Settings, ring: ring_layout.Ring):
        self._settings = settings
        self._ring = ring
        self._keys = Keys(settings.key_prefix)
        self._notifier = WorkerNotifier(ring.ring_id)
        self._parent_pid = os.getppid()
        self._stopping = False
        self._pending_notify = False
        self._updates_written = 0
        # The last epoch that passed is_valid_epoch, so a batch of envelopes
        # of the current epoch checks it once.
        self._checked_epoch: str | None = None
        self._batch_window = BatchWindow(settings.batch_window_ms / 1000, settings.batch_full_rate)
        self._last_status = 0.0
        self._invalid_logged: dict[str, list[float]] = {}
        self.invalid_messages = 0
        # Delivery probes: the token names this process, the counter each probe.
        self._probe_prefix = f"{os.getpid()}-{random.getrandbits(32):08x}-"
        self._probe_counter = 0
        self._probe_outstanding: str | None = None
        self._probe_epoch: str | None = None
        self._probe_seq = 0
        self._probe_sent_at = 0.0
        self._next_probe_at = 0.0

        status = ring.subscriber_status()
        # A restarted subscriber continues where the previous one stopped:
        # the ring header contains the last epoch and seq that were written.
        self._epoch = status.epoch or None
        self._last_seq = status.last_seq if self._epoch else 0
        # The envelope written last, compared with Redis after a reconnect.
        self._last_envelope: Envelope | None = None

    # -- lifecycle ------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> None:
        log.info("subscriber started pid=%s ring=%s last_seq=%s epoch=%s",
                 os.getpid(), self._ring.ring_id, self._last_seq, self._epoch)
        self._publish_status(ring_layout.SUBSCRIBER_STARTING)
        backoff = BACKOFF_FIRST
        outage_started: float | None = None

        while not self._stopping and self._parent_alive():
            # A new client per attempt. With Sentinel, its connections query
            # the sentinels for the current primary.
            client = connect(
                self._settings, socket_timeout=5, socket_connect_timeout=2,
                health_check_interval=10,
            )
            subscription: BusSubscription | None = None
            try:
                # Subscribe before catching up, so nothing published after
                # the catch-up read can be missed.
                subscription = BusSubscription(client, self._keys.bus)
                subscription.wait_subscribed(SUBSCRIBE_TIMEOUT)
                self._catch_up(client)
                self._publish_status(ring_layout.SUBSCRIBER_CONNECTED)
                if outage_started is not None:
                    outage = time.monotonic() - outage_started
                    log.warning("redis connection restored after %.1f s outage", outage)
                    metrics.REDIS_RECONNECTS.inc()
                    metrics.REDIS_OUTAGE_SECONDS.inc(outage)
                    outage_started = None
                backoff = BACKOFF_FIRST
                self._receive(client, subscription)
            except ProbeLostError as error:
                # Nothing raised, yet nothing arrives: treat it as an outage,
                # reconnect at once and repair from the log.
                outage_started = time.monotonic() - self._settings.probe_timeout
                metrics.PROBES_LOST.inc()
                log.error("%s; reconnecting to redis", error)
                self._publish_status(ring_layout.SUBSCRIBER_DISCONNECTED)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                if outage_started is None:
                    outage_started = time.monotonic()
                    log.error("redis connection lost: %s; reconnecting", error)
                self._publish_status(ring_layout.SUBSCRIBER_DISCONNECTED)
                delay = backoff * (0.5 + random.random())
                self._sleep(delay)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                _close_quietly(subscription, client)

        self._publish_status(ring_layout.SUBSCRIBER_DISCONNECTED)
        log.info("subscriber stopped pid=%s last_seq=%s", os.getpid(), self._last_seq)

    # -- receiving ------------------------------------------------------

    def _receive(self, client: redis.Redis, subscription: BusSubscription) -> None:
        self._probe_outstanding = None
        self._next_probe_at = time.monotonic()
        while not self._stopping:
            self._check_probe(client)
            # One batch: what arrived since the last read, written to the
            # ring before the workers are woken once.
            batch = subscription.read(RECEIVE_TIMEOUT)
            for raw in batch:
                self._handle_raw(client, raw)
            self._finish_batch()
            if batch:
                # Updates that arrive meanwhile wait in the socket and become
                # the next batch: one read and one wake-up per worker for all.
                pause = self._batch_window.after_batch(len(batch), time.monotonic())
                if pause:
                    time.sleep(pause)
            self._maybe_publish_status()
            if not self._parent_alive():
                log.warning("gunicorn master pid=%s is gone; subscriber exits", self._parent_pid)
                return

    def _handle_raw(self, client: redis.Redis, raw: bytes) -> None:
        try:
            message = decode_message(raw)
        except InvalidEnvelopeError as error:
            self._reject("envelope", "skipped invalid bus message (%d bytes): %s", len(raw), error)
            return
        if isinstance(message, Probe):
            if message.token == self._probe_outstanding:
                self._probe_outstanding = None
                log.debug("probe %s came back after %.1f ms", message.token,
                          (time.monotonic() - self._probe_sent_at) * 1000)
                # Every update published before the probe has arrived by now,
                # so a seq up to the probe's that the ring lacks was a lost
                # message with nothing after it yet to reveal the gap.
                if self._probe_epoch == self._epoch and self._probe_seq > self._last_seq:
                    self._repair(client, self._probe_seq + 1)
            return
        self._handle(client, message)

    # -- delivery probes ------------------------------------------------

    def _check_probe(self, client: redis.Redis) -> None:
        """Send a probe when one is due; raise ProbeLostError when one is overdue."""
        now = time.monotonic()
        if self._probe_outstanding is not None:
            if now - self._probe_sent_at > self._settings.probe_timeout:
                lost = self._probe_outstanding
                self._probe_outstanding = None
                raise ProbeLostError(
                    f"probe {lost} did not come back through Pub/Sub within "
                    f"{self._settings.probe_timeout:.1f} s"
                )
            return
        if now >= self._next_probe_at:
            self._probe_counter += 1
            token = f"{self._probe_prefix}{self._probe_counter}"
            # The seq read in the same transaction as the probe's PUBLISH names
            # every update whose message Redis sent before the probe's.
            pipe = client.pipeline(transaction=True)
            pipe.mget(self._keys.epoch, self._keys.seq)
            pipe.publish(self._keys.bus, encode_probe(token))
            (epoch_raw, seq_raw), _ = pipe.execute()
            self._probe_epoch = epoch_raw.decode("ascii", "replace") if epoch_raw else None
            self._probe_seq = int(seq_raw or 0)
            self._probe_outstanding = token
            self._probe_sent_at = now
            self._next_probe_at = now + self._settings.probe_interval

    def _handle(self, client: redis.Redis, envelope: Envelope) -> None:
        if envelope.epoch != self._checked_epoch:
            if not is_valid_epoch(envelope.epoch):
                self._reject("epoch", "skipped message with invalid epoch %r", envelope.epoch)
                return
            self._checked_epoch = envelope.epoch
        if envelope.seq <= self._last_seq and envelope.epoch == self._epoch:
            log.debug("skipped seq=%s, already written", envelope.seq)
            return
        if envelope.epoch != self._epoch or envelope.seq > self._last_seq + 1:
            # A new epoch or a gap makes every stream resynchronise, so the
            # message must agree with Redis first: anyone who can PUBLISH on
            # the bus could otherwise send seq 10**9 and have every later
            # real update skipped as "already written".
            epoch, current = self._redis_position(client)
            if envelope.epoch != epoch or envelope.seq > current:
                self._reject("position", "skipped message epoch=%s seq=%s: Redis is at "
                             "epoch=%s seq=%s", envelope.epoch, envelope.seq, epoch, current)
                return
            if envelope.epoch != self._epoch:
                self._start_epoch(envelope.epoch)
            elif envelope.seq > self._last_seq + 1:
                self._repair(client, envelope.seq)
        self._write(envelope)

    def _redis_position(self, client: redis.Redis) -> tuple[str | None, int]:
        epoch_raw, seq_raw = client.mget(self._keys.epoch, self._keys.seq)
        epoch = epoch_raw.decode("ascii", "replace") if epoch_raw is not None else None
        return epoch, int(seq_raw or 0)

    def _start_epoch(self, epoch: str) -> None:
        if self._epoch is not None:
            log.warning("epoch changed from %s to %s (Redis state was lost); "
                        "clients receive fresh snapshots", self._epoch, epoch)
        self._epoch = epoch
        self._last_seq = 0
        self._write_resync_all()

    # -- gap repair -----------------------------------------------------

    def _catch_up(self, client: redis.Redis) -> None:
        """Write every update that Redis has and the ring does not yet have."""
        epoch, current = self._redis_position(client)
        if epoch is None:
            return
        if epoch == self._epoch and self._rolled_back(client, current):
            epoch = self._replace_epoch(client, epoch, current)
        if epoch != self._epoch:
            if self._epoch is None:
                # A fresh pod: clients read snapshots from Redis directly, so
                # only updates after the current seq need to reach the ring.
                log.info("subscriber starts at epoch=%s seq=%s", epoch, current)
                self._epoch = epoch
                self._last_seq = current
                self._write_resync_all()
                return
            self._start_epoch(epoch)
            self._last_seq = current
            return
        if current > self._last_seq:
            self._repair(client, current + 1)

    def _rolled_back(self, client: redis.Redis, current: int) -> bool:
        """Return whether Redis lost updates that this subscriber already wrote.

        Replication is asynchronous, so a failover can promote a replica that
        lacks the old primary's last updates, and a restart can load an older
        dump. Redis's ``seq`` is then behind the ring, and its next publishes
        reuse seqs that clients already received with other content.
        """
        if current < self._last_seq:
            return True
        last = self._last_envelope
        if last is None or last.seq != self._last_seq:
            # Only the seq is known (a restarted subscriber, or a resync).
            return False
        if current - last.seq >= self._settings.global_log_length:
            # The log no longer contains it, and the repair below
            # resynchronises the streams anyway.
            return False
        stored = []
        for raw in client.zrangebyscore(self._keys.global_log, last.seq, last.seq):
            try:
                stored.append(decode_envelope(raw))
            except InvalidEnvelopeError as error:
                self._reject("envelope", "skipped invalid log entry: %s", error)
        return last not in stored

    def _replace_epoch(self, client: redis.Redis, epoch: str, current: int) -> str:
        """Start a new epoch after a rollback and return the epoch now in Redis.

        Event ids of the lost updates name seqs that Redis reuses for other
        updates, so the whole lineage is void, and every gateway's clients
        get snapshots, as after a loss of all data.
        """
        candidate = secrets.token_hex(6)
        result = client.eval(REPLACE_EPOCH_SCRIPT, 1, self._keys.epoch, epoch, candidate)
        new_epoch = result.decode("ascii", "replace") if isinstance(result, bytes) else result
        metrics.ROLLBACKS.inc()
        log.error("Redis lost updates this subscriber had written: Redis is at seq=%s, the "
                  "ring at seq=%s of epoch=%s (a failover to a lagging replica, or a restart "
                  "from an older dump). The epoch is now %s, and clients receive fresh "
                  "snapshots", current, self._last_seq, epoch, new_epoch)
        return new_epoch

    def _repair(self, client: redis.Redis, next_seq: int) -> None:
        """Fill the seqs between the last written one and ``next_seq`` from the log."""
        first_missing = self._last_seq + 1
        missing = next_seq - first_missing
        entries = client.zrangebyscore(
            self._keys.global_log, first_missing, next_seq - 1
        )
        envelopes = []
        for raw in entries:
            try:
                envelopes.append(decode_envelope(raw))
            except InvalidEnvelopeError as error:
                self._reject("envelope", "skipped invalid log entry: %s", error)
        covered = [e for e in envelopes if e.epoch == self._epoch]
        if len(covered) == missing and [e.seq for e in covered] == list(
            range(first_missing, next_seq)
        ):
            metrics.GAP_REPAIRS.labels("log").inc()
            log.info("repaired gap of %d updates (seq %d..%d) from the log",
                     missing, first_missing, next_seq - 1)
            for envelope in covered:
                self._write(envelope)
            return
        metrics.GAP_REPAIRS.labels("resync").inc()
        affected = self._channels_changed_since(client, first_missing - 1)
        log.warning("log no longer covers seq %d..%d (%d of %d found); clients of %s "
                    "receive fresh snapshots", first_missing, next_seq - 1, len(covered),
                    missing, "every channel" if affected is None else f"{len(affected)} channels")
        self._last_seq = next_seq - 1
        if affected is None:
            self._write_resync_all()
            return
        for channel in affected:
            self._write_resync_channel(channel, self._last_seq)

    def _channels_changed_since(self, client: redis.Redis, seq: int) -> list[str] | None:
        """Return the channels whose current version came after ``seq``.

        Returns None when there are more than MAX_RESYNC_CHANNELS of them.
        """
        names = [name for name, _ in client.hscan_iter(self._keys.channels, count=1000)]
        changed = []
        for start in range(0, len(names), 1000):
            batch = names[start:start + 1000]
            pipe = client.pipeline(transaction=False)
            for name in batch:
                pipe.hget(self._keys.state(name.decode("utf-8", "replace")), "seq")
            for name, channel_seq in zip(batch, pipe.execute()):
                if channel_seq is not None and int(channel_seq) > seq:
                    changed.append(name.decode("utf-8", "replace"))
                    if len(changed) > MAX_RESYNC_CHANNELS:
                        return None
        return changed

    # -- writing --------------------------------------------------------

    def _write(self, envelope: Envelope) -> None:
        self._last_envelope = envelope
        try:
            validate_channel(envelope.channel)
            if envelope.kind == KIND_ALIAS:
                kind, payload = ring_layout.ALIAS, envelope.body
                if payload:
                    validate_channel(payload.decode("utf-8"))
                log.info("alias %s now points to %s (seq %s)", envelope.channel,
                         payload.decode("utf-8") or "nothing", envelope.seq)
            else:
                kind, payload = build_frame(envelope)
        except (InvalidChannelError, FrameError, UnicodeDecodeError) as error:
            self._reject("frame", "skipped seq=%s channel %r: %s",
                         envelope.seq, envelope.channel[:200], error)
            # The seq is taken, so it counts as written; clients of that
            # channel are resynchronised instead of receiving the bad frame.
            self._last_seq = max(self._last_seq, envelope.seq)
            self._write_resync_channel(envelope.channel, envelope.seq)
            return
        try:
            self._ring.write(kind, envelope.channel, payload, envelope.seq,
                             envelope.version, envelope.publish_ts_ms)
        except ring_layout.RecordTooLargeError as error:
            log.error("update seq=%s of %s does not fit the ring: %s; "
                      "its clients receive a snapshot instead", envelope.seq,
                      envelope.channel, error)
            self._last_seq = envelope.seq
            self._write_resync_channel(envelope.channel, envelope.seq)
            return
        self._last_seq = envelope.seq
        # Ring.write stored the seq as the ring's last seq. The epoch is
        # stored only when it changes, with the RESYNC_ALL record of a new epoch.
        self._pending_notify = True
        self._updates_written += 1
        metrics.PUBLISH_TO_WRITE.observe(max(0.0, time.time() - envelope.publish_ts_ms / 1000))

    def _write_resync_all(self) -> None:
        self._ring.write(ring_layout.RESYNC_ALL, "", b"", self._last_seq, 0, _now_ms())
        self._ring.set_subscriber_status(last_seq=self._last_seq, epoch=self._epoch)
        self._pending_notify = True

    def _write_resync_channel(self, channel: str, seq: int) -> None:
        try:
            validate_channel(channel)
        except InvalidChannelError:
            return
        self._ring.write(ring_layout.RESYNC_CHANNEL, channel, b"", seq, 0, _now_ms())
        self._ring.set_subscriber_status(last_seq=self._last_seq, epoch=self._epoch)
        self._pending_notify = True

    def _finish_batch(self) -> None:
        """Count the batch's written updates and wake the workers if it wrote records."""
        if self._updates_written:
            # Once per batch, because each change of a multiprocess metric calls getpid.
            metrics.UPDATES_WRITTEN.inc(self._updates_written)
            self._updates_written = 0
        if self._pending_notify:
            self._pending_notify = False
            self._notifier.notify([index for index, _ in self._ring.active_slots()])

    # -- status and housekeeping ---------------------------------------

    def _publish_status(self, state: int) -> None:
        self._ring.set_subscriber_status(pid=os.getpid(), state=state, heartbeat=time.time())
        self._last_status = time.monotonic()

    def _maybe_publish_status(self) -> None:
        if time.monotonic() - self._last_status >= STATUS_INTERVAL:
            self._ring.set_subscriber_status(heartbeat=time.time())
            self._last_status = time.monotonic()

    def _parent_alive(self) -> bool:
        return os.getppid() == self._parent_pid

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            self._maybe_publish_status()

    def _reject(self, kind: str, message: str, *args: object) -> None:
        """Count an invalid message and log it, at most INVALID_LOG_LIMIT times a minute per kind."""
        self.invalid_messages += 1
        metrics.INVALID_MESSAGES.labels(kind).inc()
        now = time.monotonic()
        recent = [t for t in self._invalid_logged.get(kind, []) if now - t < 60]
        if len(recent) < INVALID_LOG_LIMIT:
            recent.append(now)
            log.error(message + " (invalid messages so far: %d)", *args, self.invalid_messages)
        self._invalid_logged[kind] = recent


def build_frame(envelope: Envelope) -> tuple[int, bytes]:
    """Build the ring record kind and SSE frame bytes of one envelope.

    Raises FrameError when the JSON text in the envelope is invalid.
    """
    body = compact_json(envelope.body)
    event_id = format_event_id(envelope.epoch, envelope.seq)
    if envelope.kind == KIND_SNAPSHOT:
        data = snapshot_data(envelope.channel, envelope.version, body)
        return ring_layout.FRAME_SNAPSHOT, encode_frame(b"snapshot", data, event_id)
    data = delta_data(envelope.channel, envelope.version, body)
    return ring_layout.FRAME_DELTA, encode_frame(b"delta", data, event_id)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _close_quietly(subscription: BusSubscription | None, client: redis.Redis) -> None:
    for closable in (subscription, client):
        if closable is None:
            continue
        try:
            closable.close()
        except (redis.RedisError, OSError) as error:
            log.debug("closing redis connection failed: %s", error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="livegate's per-pod Redis subscriber")
    parser.add_argument("--ring-fd", type=int, required=True,
                        help="file descriptor of the shared-memory ring (memfd)")
    arguments = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings)
    ring = ring_layout.Ring.attach(arguments.ring_fd)
    subscriber = Subscriber(settings, ring)
    signal.signal(signal.SIGTERM, subscriber.request_stop)
    signal.signal(signal.SIGINT, subscriber.request_stop)
    subscriber.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
