"""The per-worker hub: reads the ring and hands frames to streams.

One hub runs in each gevent worker. Its ring-reader greenlet sleeps on
the worker's wake-up socket, reads every new record, and offers each
frame to the streams whose subscriptions match, without yielding in
between. So no other greenlet ever sees the subscription index or a
stream's queue half-changed. The reader writes a frame straight to a
parked stream's socket when the socket takes it without waiting (see
``workers/client.py``). Each stream's own greenlet (the Flask response
generator in ``stream_events``) does the blocking work: its Redis sync
and the writes that cannot complete at once.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Iterator

import gevent
import redis
from gevent import socket as gevent_socket

from fanout import ring as ring_layout
from fanout.notify import bind_wakeup_socket, wakeup_address
from livegate.aliases import AliasStore
from livegate.auth import ChannelAccess
from livegate.channel_config import ChannelConfig
from livegate.compression import new_gzip_compressor
from livegate.frames import FrameError, encode_frame, retry_frame
from livegate.ids import parse_event_id
from livegate.namespaces import MODE_SNAPSHOT, Namespace
from livegate.redis_client import connect, request_primary_check
from livegate.settings import Settings
from livegate.views import View
from livegate.wire import Keys
from workers.aliases import AliasTable, rename_frame
from workers.client import (
    CLOSE_CLIENT_GONE, CLOSE_SHUTDOWN, CLOSE_SLOW_CONSUMER, CLOSE_SYNC_FAILED,
    CLOSE_TOKEN_EXPIRED, GzipStreamClient, StreamClient, offer_all, stream_socket,
)
from workers.heartbeat import HeartbeatLoop
from workers.matcher import SubscriptionIndex
from workers.replay import RingIndex, replay_from_ring
from workers.sync import Synchronizer
from workers.views import ViewCache, ViewGapError

log = logging.getLogger(__name__)

# The reader also wakes this often without a datagram, which bounds the
# delay when a wake-up is lost and refreshes the worker's slot heartbeat.
READER_FALLBACK_INTERVAL = 0.5
# Without a wake-up socket (no slot assigned) the reader polls this often.
READER_POLL_INTERVAL = 0.02
MAX_RECORDS_PER_READ = 2000
REDIS_POOL_SIZE = 64
REDIS_POOL_TIMEOUT = 10.0
# Delay between attempts to load the aliases from Redis at start.
ALIAS_LOAD_RETRY = 1.0
# The event that ends a stream whose subscriber token expired. It carries
# no id, so the client's resume point stays on its last real event.
TOKEN_EXPIRED_FRAME = encode_frame(
    b"token-expired",
    b'{"reason":"the subscriber token expired; renew it and reconnect with the last event id"}',
)


class Hub:
    """Ring reader, subscription index and open streams of one worker."""

    def __init__(self, settings: Settings, ring: ring_layout.Ring, slot: int | None,
                 channel_config: ChannelConfig | None = None):
        self.settings = settings
        self.ring = ring
        self.slot = slot
        self.channel_config = channel_config or ChannelConfig.from_settings(settings)
        self.namespaces = self.channel_config.namespaces
        # Streams per namespace prefix, for the namespaces with a subscriber limit.
        self.namespace_streams: dict[str, int] = {}
        self.aliases = AliasTable()
        # Streams with a view, by view name; every frame they match is
        # checked against the stream's ``allowed`` when it has one.
        self.view_indexes: dict[str, SubscriptionIndex] = {}
        self.view_cache = ViewCache()
        # Streams whose ``allowed`` is None: every frame they match is theirs.
        self.index = SubscriptionIndex()
        # Streams that reach into protected channels: each frame is checked
        # against the stream's ``allowed`` first. Kept apart so that the
        # open streams pay nothing for the check.
        self.guarded_index = SubscriptionIndex()
        self.streams: set[StreamClient] = set()
        self.streams_by_address: dict[str, int] = {}
        self.redis = connect(
            settings, max_connections=REDIS_POOL_SIZE, pool_timeout=REDIS_POOL_TIMEOUT,
            socket_timeout=10, socket_connect_timeout=5,
        )
        self.synchronizer = Synchronizer(
            self.redis, Keys(settings.key_prefix), max_replay=settings.max_replay
        )
        self.reader = ring_layout.RingReader(ring)
        self.ring_index = RingIndex()
        self.stopping = False
        self.stats = {
            "streams_opened": 0, "streams_closed": 0, "slow_consumer_drops": 0,
            "snapshots_sent": 0, "deltas_replayed": 0, "ring_overruns": 0, "resyncs": 0,
            "resumes_from_ring": 0, "resumes_from_redis": 0, "frames_sent": 0, "bytes_sent": 0,
            "frames_offered": 0, "tokens_expired": 0, "alias_switches": 0,
            "view_frames": 0, "view_resyncs": 0, "compressed_streams_opened": 0,
            "compression_input_bytes": 0, "compression_output_bytes": 0,
        }
        self._greenlets: list[gevent.Greenlet] = []
        self._heartbeat = HeartbeatLoop(self, self.namespaces.smallest_interval())
        # Whether streams may write HTTP chunks to their sockets themselves.
        # The worker turns it off where gunicorn frames responses otherwise.
        self.direct_writes = True

    # -- lifecycle ------------------------------------------------------

    def start(self) -> None:
        if self.slot is not None:
            self.ring.claim_slot(self.slot, os.getpid())
        self._greenlets = [
            gevent.spawn(self._read_loop),
            gevent.spawn(self._heartbeat.run),
            gevent.spawn(self._load_aliases),
        ]
        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if metrics_dir:
            from workers.metrics import MetricsExporter

            self._greenlets.append(gevent.spawn(MetricsExporter(self, metrics_dir).run))
        log.info("hub started pid=%s slot=%s ring=%s position=%s",
                 os.getpid(), self.slot, self.ring.ring_id, self.reader.position)

    def shutdown(self, window: float) -> None:
        """End every stream with a final ``retry:``, spread over ``window`` seconds.

        Streams close in small groups so that their clients come back to
        other pods over the window instead of all in the same second.
        """
        self.stopping = True
        streams = list(self.streams)
        random.shuffle(streams)
        log.info("hub stopping pid=%s: closing %d streams over %.1f s",
                 os.getpid(), len(streams), window)
        groups = max(1, min(len(streams), int(window * 10)))
        per_group = max(1, -(-len(streams) // groups))
        for start in range(0, len(streams), per_group):
            for stream in streams[start:start + per_group]:
                stream.close(CLOSE_SHUTDOWN, self.retry_frame())
            if window > 0:
                gevent.sleep(window / groups)
        for greenlet in self._greenlets:
            greenlet.kill(block=False)

    def _load_aliases(self) -> None:
        """Read every alias from Redis once, retrying until Redis replies."""
        store = AliasStore(self.redis, Keys(self.settings.key_prefix),
                           self.settings.global_log_length)
        attempt = 0
        while not self.stopping:
            attempt += 1
            try:
                aliases = store.all()
            except redis.RedisError as error:
                if attempt == 1 or attempt % 30 == 0:
                    log.warning("worker pid=%s cannot load the aliases from redis (attempt %d): "
                                "%s; resuming streams read redis until it can", os.getpid(),
                                attempt, error)
                gevent.sleep(ALIAS_LOAD_RETRY)
                continue
            for alias in aliases:
                self.aliases.apply(alias.name, alias.target, alias.seq)
            self.aliases.loaded = True
            log.info("worker pid=%s loaded %d aliases", os.getpid(), len(aliases))
            return

    @property
    def heartbeats_sent(self) -> int:
        return self._heartbeat.sent

    def retry_frame(self) -> bytes:
        jitter = random.randint(0, self.settings.retry_jitter_ms)
        return retry_frame(self.settings.retry_ms + jitter)


    # -- streams --------------------------------------------------------

    def open_stream(
        self,
        subscriptions,
        since: str | None,
        remote: str,
        allowed: ChannelAccess | None = None,
        expires_at: float | None = None,
        view: View | None = None,
        limited: tuple[Namespace, ...] = (),
        gzip: bool = False,
    ) -> StreamClient:
        """Register a new stream. ``expires_at`` is the Unix time its token expires.

        ``limited`` are the namespaces with a subscriber limit that the
        stream reaches (see ``full_namespace``); the stream counts against each.
        With ``gzip`` the stream's body is gzip from a compressor of its own.
        """
        deadline = None
        if expires_at is not None:
            deadline = time.monotonic() + (expires_at - time.time())
        options = {
            "allowed": allowed, "expires_at": deadline, "view": view,
            "heartbeat_interval": self.namespaces.heartbeat_interval(subscriptions),
        }
        settings = self.settings
        if gzip:
            compressor = new_gzip_compressor(settings.stream_compression_window_bits)
            stream = GzipStreamClient(subscriptions, settings.client_queue_bytes, since, remote,
                                      compressor=compressor, stats=self.stats, **options)
            self.stats["compressed_streams_opened"] += 1
        else:
            stream = StreamClient(subscriptions, settings.client_queue_bytes, since, remote,
                                  **options)
        stream.namespaces = tuple(namespace.prefix for namespace in limited)
        for prefix in stream.namespaces:
            self.namespace_streams[prefix] = self.namespace_streams.get(prefix, 0) + 1
        index = self._index_of(stream)
        for subscription in subscriptions:
            index.add(subscription, stream)
        self.streams.add(stream)
        self.streams_by_address[remote] = self.streams_by_address.get(remote, 0) + 1
        self.stats["streams_opened"] += 1
        log.debug("stream %s opened from %s: %s", stream.id, remote,
                  ",".join(s.text for s in subscriptions))
        return stream

    def _index_of(self, stream: StreamClient) -> SubscriptionIndex:
        if stream.view is not None:
            index = self.view_indexes.get(stream.view.name)
            if index is None:
                index = self.view_indexes[stream.view.name] = SubscriptionIndex()
            return index
        return self.index if stream.allowed is None else self.guarded_index

    def full_namespace(self, limited: tuple[Namespace, ...]) -> Namespace | None:
        """Return a namespace among ``limited`` that has reached its maximum of streams, if any."""
        for namespace in limited:
            if self.namespace_streams.get(namespace.prefix, 0) >= namespace.max_subscribers:
                return namespace
        return None

    def expire_stream(self, stream: StreamClient) -> None:
        """End a stream whose token expired: a ``token-expired`` event, then ``retry:``."""
        stream.close(CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED_FRAME + self.retry_frame())
        self.stats["tokens_expired"] += 1
        log.debug("stream %s from %s ended: subscriber token expired", stream.id, stream.remote)

    def subscription_counts(self) -> tuple[int, int]:
        """Return the number of (exact, pattern) subscriptions of all open streams."""
        exact = patterns = 0
        for index in (self.index, self.guarded_index, *self.view_indexes.values()):
            index_exact, index_patterns = index.counts()
            exact += index_exact
            patterns += index_patterns
        return exact, patterns

    def channels_by_subscribers(self) -> list[tuple[str, int]]:
        """Return (channel, exact subscribers) pairs of all open streams, most subscribed first."""
        totals = dict(self.index.channels_by_subscribers())
        for index in (self.guarded_index, *self.view_indexes.values()):
            for channel, count in index.channels_by_subscribers():
                totals[channel] = totals.get(channel, 0) + count
        return sorted(totals.items(), key=lambda item: -item[1])

    def close_stream(self, stream: StreamClient) -> None:
        if stream not in self.streams:
            return
        self.streams.discard(stream)
        index = self._index_of(stream)
        for subscription in stream.subscriptions:
            index.remove(subscription, stream)
        for prefix in stream.namespaces:
            self.namespace_streams[prefix] = self.namespace_streams.get(prefix, 1) - 1
        remaining = self.streams_by_address.get(stream.remote, 1) - 1
        if remaining > 0:
            self.streams_by_address[stream.remote] = remaining
        else:
            self.streams_by_address.pop(stream.remote, None)
        self.stats["streams_closed"] += 1
        if not stream.closed:
            stream.close(CLOSE_CLIENT_GONE)
        if stream.close_reason == CLOSE_SLOW_CONSUMER:
            self.stats["slow_consumer_drops"] += 1
            log.warning("stream %s from %s dropped: slow consumer with %d bytes queued",
                        stream.id, stream.remote, stream.queued_bytes)
        else:
            log.debug("stream %s closed: %s", stream.id, stream.close_reason)

    def stream_body(self, stream: StreamClient, environ: dict) -> StreamBody:
        """Return the body of the SSE response of ``stream``, for ``direct_passthrough``."""
        sock = stream_socket(environ) if self.direct_writes else None
        return StreamBody(self, stream, self.stream_events(stream, sock))

    def stream_events(
        self, stream: StreamClient, sock: gevent_socket.socket | None = None
    ) -> Iterator[bytes]:
        """Yield the bytes of one stream until it ends; the body of the SSE response.

        With ``sock`` (see ``stream_socket``), everything after the first
        item is written to the socket as HTTP chunks by the stream itself and
        by the ring reader, and this generator yields only the first and
        the final frame to gunicorn. Every byte of the body, on either path,
        passes through the stream's ``encode``, ``encode_end`` or ``take``,
        which compress it on a gzip stream. Response headers are already
        fixed when this runs, so a failure ends the stream (the client
        reconnects and resumes) instead of an error.
        """
        stream.greenlet = gevent.getcurrent()
        synced_generation = 0
        try:
            # Phase: the retry hint goes out at once, with the headers.
            yield stream.encode(self.retry_frame())
            if sock is not None:
                stream.attach_socket(sock, self.stats)

            # Phase: sync whenever asked (first connect, overrun, epoch
            # change), otherwise write whatever was queued or left unsent.
            while not stream.closed:
                if stream.sync_generation != synced_generation:
                    synced_generation = self._sync(stream)
                    continue
                if stream.queue or stream.unsent:
                    self.stats["frames_sent"] += len(stream.queue)
                    self.stats["bytes_sent"] += stream.queued_bytes
                    if sock is None:
                        yield stream.take()
                    else:
                        sock.sendall(stream.take_wire())
                    stream.last_sent = time.monotonic()
                    continue
                # park() clears the wake-up event that a resync with nothing
                # to send leaves set. Nothing yields between the checks above
                # and the wait, so no wake-up is lost.
                if stream.park():
                    stream.wakeup.wait()

            # Phase: a final retry hint, unless the client is already gone.
            # The rest of a partial direct write goes first, to keep the
            # chunked framing intact.
            if stream.close_reason != CLOSE_CLIENT_GONE:
                if stream.unsent:
                    sock.sendall(stream.unsent)
                    stream.unsent = b""
                yield stream.encode_end(stream.final_frame or self.retry_frame())
        finally:
            stream.parked = False
            self.close_stream(stream)

    def _sync(self, stream: StreamClient) -> int:
        """Run one sync for ``stream`` and return the generation it satisfied."""
        generation = stream.sync_generation
        since, stream.since = stream.since, None
        if since and self._resume_from_ring(stream, since):
            return generation
        try:
            result = self.synchronizer.sync(stream.subscriptions, since, stream.allowed,
                                            stream.view)
        except redis.RedisError as error:
            log.error("stream %s: sync from redis failed: %s; closing it so the client "
                      "reconnects", stream.id, error)
            stream.close(CLOSE_SYNC_FAILED, self.retry_frame())
            return generation
        for name, alias in result.aliases.items():
            self.aliases.apply(name, alias.target, alias.seq)
        for channel, (version, document) in result.documents.items():
            self.view_cache.remember(channel, version, document)
        if stream.sync_generation != generation:
            # A resync request arrived while reading; the next loop reads again.
            return generation
        stream.finish_sync(result.epoch, result.seq, result.frames)
        self.stats["snapshots_sent"] += result.snapshots
        self.stats["deltas_replayed"] += result.deltas
        if since:
            log.debug("stream %s resumed from redis after %s: %d deltas, %d snapshots",
                      stream.id, since, result.deltas, result.snapshots)
            self.stats["resumes_from_redis"] += 1
        return generation

    def _resume_from_ring(self, stream: StreamClient, since: str) -> bool:
        """Serve a resuming stream from the ring; return False when Redis must."""
        token = parse_event_id(since)
        if token is None or stream.view is not None or not self.aliases.loaded:
            return False
        if any(s.is_exact and self.aliases.known(s.text) for s in stream.subscriptions):
            # Ring frames carry the target's name, and only Redis records when
            # the alias changed.
            return False
        replay = replay_from_ring(
            self.ring, self.ring_index, self.reader.position, stream.subscriptions, token,
            self.settings.max_replay, stream.allowed,
        )
        if replay is None:
            return False
        stream.finish_sync(token.epoch, replay.seq, replay.frames)
        log.debug("stream %s resumed from the ring after %s: %d frames",
                  stream.id, since, len(replay.frames))
        self.stats["resumes_from_ring"] += 1
        self.stats["deltas_replayed"] += len(replay.frames)
        return True

    # -- ring reader ----------------------------------------------------

    def _read_loop(self) -> None:
        wakeup = self._bind_wakeup()
        reader = self.reader
        while not self.stopping:
            records = reader.read_available(max_records=MAX_RECORDS_PER_READ)
            if reader.overrun:
                self.stats["ring_overruns"] += 1
                log.error("worker pid=%s fell behind the ring (overrun %d); "
                          "resynchronising %d streams with snapshots",
                          os.getpid(), reader.overruns, len(self.streams))
                if self.slot is not None:
                    self.ring.add_slot_overrun(self.slot)
                reader.clear_overrun()
                self._resync_all()
            for record in records:
                self._dispatch(record)
            if records:
                self.ring_index.trim(self.ring.reserve_pos - self.ring.capacity)
            if self.slot is not None:
                self.ring.update_slot(self.slot, reader.position, time.time())
            if len(records) >= MAX_RECORDS_PER_READ:
                gevent.sleep(0)
                continue
            self._wait_for_records(wakeup)

    def _bind_wakeup(self):
        if self.slot is None:
            return None
        try:
            wakeup = bind_wakeup_socket(self.ring.ring_id, self.slot)
        except OSError as error:
            log.warning("worker pid=%s cannot bind wake-up socket of slot %s (%s); "
                        "polling the ring every %.0f ms instead", os.getpid(), self.slot,
                        error, READER_POLL_INTERVAL * 1000)
            return None
        # No timeout on the wait: gevent would create and cancel a timer
        # for every wake-up. The nudge greenlet bounds the wait instead.
        wakeup.settimeout(None)
        self._greenlets.append(gevent.spawn(
            self._nudge_loop, wakeup_address(self.ring.ring_id, self.slot)))
        return wakeup

    def _nudge_loop(self, address: str) -> None:
        """Wake the ring reader every READER_FALLBACK_INTERVAL, whatever the subscriber sends.

        This bounds the delay when a wake-up is lost, refreshes the slot's
        heartbeat on an idle pod, and lets the reader see ``stopping``.
        """
        sock = gevent_socket.socket(gevent_socket.AF_UNIX, gevent_socket.SOCK_DGRAM)
        try:
            while not self.stopping:
                gevent.sleep(READER_FALLBACK_INTERVAL)
                try:
                    sock.sendto(b".", address)
                except OSError:
                    # A full buffer means wake-ups are pending anyway.
                    pass
        finally:
            sock.close()

    def _wait_for_records(self, wakeup) -> None:
        if wakeup is None:
            gevent.sleep(READER_POLL_INTERVAL)
            return
        wakeup.recv(64)

    def _dispatch(self, record) -> None:
        kind = record.kind
        if kind == ring_layout.FRAME_DELTA or kind == ring_layout.FRAME_SNAPSHOT:
            seq = record.seq
            channel = record.channel
            frame = record.payload
            stats = self.stats
            now = time.monotonic()
            for streams in self.index.recipients(channel):
                written = offer_all(streams, seq, frame, now)
                if written:
                    stats["frames_sent"] += written
                    stats["bytes_sent"] += written * len(frame)
            for streams in self.guarded_index.recipients(channel):
                for stream in streams:
                    if stream.allowed.permits(channel):
                        stream.offer(seq, frame)
            aliases = self.aliases.aliases_of(channel)
            if aliases:
                self._dispatch_aliases(record, aliases)
            if self.view_indexes:
                self._dispatch_views(record, aliases)
            self.ring_index.note_frame(seq, record.pos)
            stats["frames_offered"] += 1
        elif kind == ring_layout.RESYNC_CHANNEL:
            names = [record.channel, *(self.aliases.aliases_of(record.channel) or ())]
            for index in (self.index, self.guarded_index, *self.view_indexes.values()):
                for name in names:
                    for streams in index.recipients(name):
                        for stream in streams:
                            stream.request_resync()
            self.view_cache.forget(record.channel)
            self.ring_index.reset()
            self.stats["resyncs"] += 1
        elif kind == ring_layout.RESYNC_ALL:
            self._resync_all()
        elif kind == ring_layout.ALIAS:
            self._switch_alias(record)

    def _alias_recipients(self, alias: str):
        """Yield the sets of streams subscribed to ``alias`` by name, in every index."""
        for index in (self.index, self.guarded_index, *self.view_indexes.values()):
            streams = index.exact_recipients(alias)
            if streams:
                yield streams

    def _dispatch_aliases(self, record, aliases: set[str]) -> None:
        """Offer a frame to the subscribers of each alias of its channel, renamed once per alias.

        View streams are left out: they get view frames from ``_dispatch_views``.
        """
        for alias in aliases:
            renamed = None
            for index in (self.index, self.guarded_index):
                streams = index.exact_recipients(alias)
                if not streams:
                    continue
                if renamed is None:
                    try:
                        renamed = rename_frame(record.payload, record.channel, alias)
                    except FrameError as error:
                        log.error("alias %s: %s", alias, error)
                        return
                for stream in streams:
                    if stream.allowed is None or stream.allowed.permits(alias):
                        # The same seq may already have gone out under the
                        # target's own name on the same stream.
                        stream.offer(record.seq, renamed, same_seq=True)

    def _dispatch_views(self, record, aliases: set[str] | None) -> None:
        """Build each view's frame of a change once and offer it to that view's streams."""
        channel = record.channel
        # view name -> (name on the stream, the stream sets subscribed under it)
        wanted: dict[str, list[tuple[str, list[set]]]] = {}
        for view_name, index in self.view_indexes.items():
            named = [(channel, index.recipients(channel))]
            for alias in aliases or ():
                streams = index.exact_recipients(alias)
                if streams:
                    named.append((alias, [streams]))
            if any(groups for _, groups in named):
                wanted[view_name] = named
        if not wanted:
            self.view_cache.forget(channel)
            return
        try:
            change = self.view_cache.advance(channel, record.version, record.payload)
        except ViewGapError as error:
            log.info("worker pid=%s: %s; resynchronising its view streams", os.getpid(), error)
            self.stats["view_resyncs"] += 1
            for named in wanted.values():
                for _, groups in named:
                    for streams in groups:
                        for stream in streams:
                            stream.request_resync()
            return
        if change is None:
            return
        snapshot_only = self.namespaces.lookup(channel).mode == MODE_SNAPSHOT
        for view_name, named in wanted.items():
            frame = self.view_cache.frame(self.channel_config.views[view_name], change,
                                          snapshot_only)
            if frame is None:
                continue
            self.stats["view_frames"] += 1
            for name, groups in named:
                if not groups:
                    continue
                renamed = frame if name == channel else rename_frame(frame, channel, name)
                for streams in groups:
                    for stream in streams:
                        if stream.allowed is None or stream.allowed.permits(name):
                            stream.offer(record.seq, renamed, same_seq=name != channel)

    def _switch_alias(self, record) -> None:
        """Apply an alias change from the ring and resynchronise the alias's streams."""
        alias = record.channel
        target = record.payload.decode("utf-8", "replace")
        self.aliases.apply(alias, target, record.seq)
        self.stats["alias_switches"] += 1
        moved = 0
        for streams in self._alias_recipients(alias):
            for stream in streams:
                # A stream whose sync read Redis after the change already has
                # the new target; every other one reads it now.
                if stream.pending is None and stream.last_seq >= record.seq:
                    continue
                stream.request_resync()
                moved += 1
        log.info("worker pid=%s: alias %s now points to %s (seq %s); %d streams resynchronise",
                 os.getpid(), alias, target or "nothing", record.seq, moved)

    def _resync_all(self) -> None:
        # After a failover that lost updates the subscriber starts a new
        # epoch, and the streams' snapshots must not come from the old primary.
        request_primary_check(self.redis)
        for stream in self.streams:
            stream.request_resync()
        self.ring_index.reset()
        self.stats["resyncs"] += 1

    # -- status ---------------------------------------------------------

    def subscriber_ready(self) -> tuple[bool, str]:
        """Return whether the pod's subscriber is alive, connected and current, and why not."""
        status = self.ring.subscriber_status()
        age = time.time() - status.heartbeat
        if status.pid == 0:
            return False, "subscriber has not started"
        if age > self.settings.subscriber_stale_after:
            return False, f"subscriber pid={status.pid} silent for {age:.1f} s"
        if status.state != ring_layout.SUBSCRIBER_CONNECTED:
            return False, f"subscriber pid={status.pid} is not connected to redis"
        return True, f"subscriber pid={status.pid} connected, last seq {status.last_seq}"


class StreamBody:
    """The WSGI response iterable of one stream.

    gunicorn iterates the generator directly, with no werkzeug wrapper in
    between, which keeps the parked greenlet's stack and its objects
    small. ``close`` runs whether or not the generator ever started, for
    instance for a HEAD request, whose body werkzeug never iterates.
    """

    __slots__ = ("_hub", "_stream", "_events")

    def __init__(self, hub: Hub, stream: StreamClient, events: Iterator[bytes]):
        self._hub = hub
        self._stream = stream
        self._events = events

    def __iter__(self) -> Iterator[bytes]:
        return self._events

    def close(self) -> None:
        self._events.close()
        self._hub.close_stream(self._stream)


_current: Hub | None = None


def install(hub: Hub) -> None:
    global _current
    _current = hub


def current() -> Hub | None:
    """Return this worker's hub, or None outside a livegate gunicorn worker."""
    return _current
