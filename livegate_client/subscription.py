"""A resuming livegate stream that keeps the current document of each channel.

Needs ``pip install httpx httpx-sse jsonpatch`` (the gateway's own
requirements do not include httpx-sse).
"""

from __future__ import annotations

import json
import logging
import random
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Sequence

import httpx
import jsonpatch
import jsonpointer
from httpx_sse import SSEError, connect_sse

log = logging.getLogger("livegate_client")

STREAM_PATH = "/v1/stream"
# Delay before the first reconnect until the gateway sends a retry: field.
DEFAULT_RETRY_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
# Reads wait this long for a byte. The gateway sends a heartbeat comment on
# an idle stream every 15 to 30 s, so a longer silence means a dead connection.
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
# HTTP statuses after which a reconnect can succeed; any other error status
# (400 for an invalid channel, 401, 404) is raised as StreamRejected.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class StreamRejected(Exception):
    """The gateway rejected the stream with an error status that a reconnect cannot fix."""

    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(f"the gateway rejected the stream with HTTP {status_code}: {body[:500]}")
        self.status_code = status_code
        self.body = body


@dataclass(frozen=True)
class Update:
    """One snapshot or delta, with the channel's document after it."""

    event: str
    channel: str
    version: int
    id: Optional[str]
    document: Any
    # The delta's RFC 6902 operations; None for a snapshot.
    patch: Optional[list] = None


@dataclass
class ChannelDocument:
    """The current document of one channel and its version."""

    document: Any
    version: int


class _Resynchronise(Exception):
    """A delta that cannot be applied to the document held."""


def stream_url(url: str) -> str:
    """Return the stream endpoint for ``url``, a gateway base URL or the endpoint itself."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"invalid gateway URL {url!r}: expected http:// or https://")
    if parsed.path.rstrip("/").endswith(STREAM_PATH):
        return str(parsed.copy_with(query=None))
    return str(parsed.copy_with(path=parsed.path.rstrip("/") + STREAM_PATH, query=None))


class Subscription:
    """One logical stream of several channels or patterns, across reconnects.

    Iterating yields an Update after every snapshot and every applied delta,
    forever, until close(). After a lost connection it reconnects with the
    last event id in Last-Event-ID, so the gateway sends only the missed
    deltas. It waits the gateway's ``retry:`` delay before the first attempt,
    then doubles the delay per failed attempt up to ``max_backoff`` seconds,
    with jitter. A delta it cannot apply (a failed patch or a version gap)
    makes it resynchronise: it reconnects without an id and receives fresh
    snapshots. An error status other than 408, 425, 429 and 5xx raises
    StreamRejected.

    ``since`` resumes from an event id of an earlier session. The gateway
    then sends only later deltas, so pass the documents at that id in
    ``documents``. A delta for a channel without a document makes the
    subscription resynchronise.

    Not thread-safe, except close(), which may be called from any thread.
    close() takes effect at the next event, heartbeat or read timeout.
    """

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        *,
        since: Optional[str] = None,
        documents: Optional[Mapping[str, ChannelDocument]] = None,
        headers: Optional[Mapping[str, str]] = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        if not channels:
            raise ValueError("at least one channel or pattern is required")
        self.url = stream_url(url)
        self.channels = list(channels)
        self.last_event_id = since
        self.documents: dict[str, ChannelDocument] = dict(documents or {})
        self.retry_seconds = DEFAULT_RETRY_SECONDS
        self.max_backoff = max_backoff
        self.connections = 0
        self.reconnects = 0
        self.resyncs = 0
        self._headers = dict(headers or {})
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._transport = transport
        self._stopped = threading.Event()
        self._failures = 0

    def close(self) -> None:
        """Stop iterating and reconnecting."""
        self._stopped.set()

    def __iter__(self) -> Iterator[Update]:
        return self.updates()

    def updates(self) -> Iterator[Update]:
        """Yield an Update per snapshot and applied delta until close()."""
        with httpx.Client(timeout=self._timeout, transport=self._transport) as client:
            while not self._stopped.is_set():
                delay = yield from self._read_one_connection(client)
                if self._stopped.is_set():
                    return
                self.reconnects += 1
                if self.last_event_id:
                    log.info("reconnecting to %s in %.1f s with Last-Event-ID %s",
                             self.url, delay, self.last_event_id)
                else:
                    log.info("reconnecting to %s in %.1f s", self.url, delay)
                if self._stopped.wait(delay):
                    return

    # --- one connection ----------------------------------------------------------------

    def _read_one_connection(self, client: httpx.Client) -> Iterator[Update]:
        """Yield the updates of one connection; return the delay before the next."""
        headers = dict(self._headers)
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        params = [("channel", channel) for channel in self.channels]
        retry_after = 0.0
        try:
            with connect_sse(client, "GET", self.url, params=params, headers=headers) as source:
                response = source.response
                if response.status_code != 200:
                    body = response.read().decode("utf-8", "replace")
                    if response.status_code not in RETRYABLE_STATUSES:
                        raise StreamRejected(response.status_code, body)
                    log.warning("the gateway returned HTTP %d: %s", response.status_code, body[:200])
                    retry_after = _retry_after_seconds(response)
                else:
                    self.connections += 1
                    self._failures = 0
                    if self.last_event_id:
                        log.info("connected to %s, resuming after %s", self.url, self.last_event_id)
                    else:
                        log.info("connected to %s", self.url)
                    for sse in source.iter_sse():
                        if self._stopped.is_set():
                            return 0.0
                        if sse.retry is not None:
                            self.retry_seconds = sse.retry / 1000
                        if sse.event in ("snapshot", "delta"):
                            update = self._apply(sse.event, sse.data, sse.id or None)
                            if update is not None:
                                yield update
                    log.info("the gateway ended the stream")
        except _Resynchronise as error:
            self.resyncs += 1
            log.warning("resynchronising with fresh snapshots: %s", error)
            # Without an id, the gateway starts over with a snapshot of every channel.
            self.last_event_id = None
        except (httpx.TransportError, SSEError) as error:
            log.warning("stream from %s failed: %s", self.url, error or type(error).__name__)
        return max(retry_after, self._next_delay())

    def _next_delay(self) -> float:
        failures = self._failures
        self._failures += 1
        if failures == 0:
            # The gateway already adds jitter to its retry: value.
            return self.retry_seconds
        ceiling = min(self.max_backoff, self.retry_seconds * 2 ** failures)
        return random.uniform(ceiling / 2, ceiling)

    def _apply(self, event: str, data: str, event_id: Optional[str]) -> Optional[Update]:
        """Apply one event to the documents held; None for a delta already applied."""
        try:
            message = json.loads(data)
            channel = message["channel"]
            version = message["version"]
        except (ValueError, KeyError, TypeError) as error:
            raise _Resynchronise(f"invalid {event} event {data[:200]!r}: {error}") from None

        if event == "snapshot":
            document = message.get("data")
            self.documents[channel] = ChannelDocument(document, version)
            self._remember(event_id)
            return Update("snapshot", channel, version, event_id, document)

        current = self.documents.get(channel)
        if current is None:
            raise _Resynchronise(f"delta version {version} of {channel} arrived before its snapshot")
        if version <= current.version:
            log.debug("%s: skipped delta version %d, already at version %d", channel, version, current.version)
            return None
        # A view's delta applies to every version from base_version on; any
        # other delta only to the version before it.
        base = message.get("base_version", version - 1)
        if not isinstance(base, int) or current.version < base:
            raise _Resynchronise(f"{channel}: delta version {version} after version {current.version}")

        patch = message.get("patch")
        try:
            # apply_patch copies the document first, so a failed patch leaves it unchanged.
            document = jsonpatch.apply_patch(current.document, patch)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as error:
            raise _Resynchronise(f"{channel}: patch to version {version} failed: {error}") from None
        self.documents[channel] = ChannelDocument(document, version)
        self._remember(event_id)
        return Update("delta", channel, version, event_id, document, patch)

    def _remember(self, event_id: Optional[str]) -> None:
        if event_id:
            self.last_event_id = event_id


def _retry_after_seconds(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0
