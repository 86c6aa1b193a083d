"""Server-Sent Events clients for integration tests, each reading in a background thread.

SSEClient parses events with httpx_sse. httpx_sse drops comment lines, so RawSSEReader
keeps the raw response body instead, for checks on heartbeat comments (`:` lines) and
on the exact bytes on the wire.

Both readers stop when close() is called, when the server ends the response, or when no
byte arrives for `read_timeout` seconds. close() shuts the socket down, which wakes
the blocked read at once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar

import httpx
from httpx_sse import connect_sse

T = TypeVar("T")

EVENT_STREAM = "text/event-stream"


@dataclass(frozen=True)
class Event:
    """One dispatched SSE event.

    `event` is "message" when the server sent no event field. `id` is the stream's last
    event ID when this event was dispatched, so it carries over from earlier events
    that set one, as the SSE specification requires. `received_at` is time.monotonic()
    at dispatch.
    """

    event: str
    data: str
    id: str
    retry: Optional[int]
    received_at: float = field(default=0.0, compare=False)

    def json(self) -> Any:
        """Return `data` parsed as JSON."""
        return json.loads(self.data)


class _StreamReader:
    """Base of the readers: one streaming GET in a background thread, with its response
    status and headers. Subclasses read the body."""

    thread_name = "sse-reader"

    def __init__(
        self,
        url: str,
        params: Optional[Mapping[str, Any] | Sequence[tuple[str, Any]]] = None,
        headers: Optional[Mapping[str, str]] = None,
        last_event_id: Optional[str] = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.url = url
        # None, not {}, when absent: httpx 0.28 replaces a query string in `url` with
        # any params mapping, even an empty one.
        # A list of pairs keeps repeated keys (several channel parameters).
        if not params:
            self.params = None
        elif isinstance(params, Mapping):
            self.params = list(params.items())
        else:
            self.params = list(params)
        self.headers = dict(headers or {})
        self.initial_last_event_id = last_event_id
        self.timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=5.0, pool=5.0)

        self.status_code: Optional[int] = None
        self.response_headers: Optional[httpx.Headers] = None
        # Body of a response that is not an event stream (an error status, say).
        self.body: Optional[bytes] = None
        # The exception that ended the reader thread, unless close() caused it.
        self.error: Optional[BaseException] = None

        self._condition = threading.Condition()
        self._connected = threading.Event()
        self._finished = threading.Event()
        self._closing = threading.Event()
        self._socket: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None

    # --- lifecycle -------------------------------------------------------------------

    def start(self, wait_connected: bool = True, timeout: float = 10.0):
        """Start the reader thread. Returns self.

        With wait_connected, blocks until the response headers arrive or the request
        fails, and raises TimeoutError after `timeout` seconds. A failed request or an
        error status does not raise here: check `status_code` and `error`.
        """
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} for {self.url} was already started")
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

        if wait_connected:
            deadline = time.monotonic() + timeout
            while not (self._connected.is_set() or self._finished.is_set()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.close()
                    raise TimeoutError(f"no response headers from {self.url} within {timeout:g} s")
                self._connected.wait(min(remaining, 0.05))
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop reading and wait up to `timeout` seconds for the thread to end.

        Raises TimeoutError if the thread is still running then, which happens only if
        the response headers have not arrived yet, because the socket is not known
        before that. Such a thread still ends within connect_timeout or read_timeout.
        """
        self._closing.set()
        sock = self._socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # Already closed or disconnected by the server.
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"reader thread for {self.url} did not end within {timeout:g} s of close()")

    @property
    def finished(self) -> bool:
        """Whether the reader thread has ended."""
        return self._finished.is_set()

    def __enter__(self):
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reader thread ---------------------------------------------------------------

    def request_headers(self) -> dict[str, str]:
        headers = {"Accept": EVENT_STREAM, "Cache-Control": "no-store"}
        if self.initial_last_event_id is not None:
            headers["Last-Event-ID"] = self.initial_last_event_id
        headers.update(self.headers)
        return headers

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=self.timeout) as client:
                self._read(client)
        except Exception as error:  # Recorded for the test to inspect, not swallowed.
            if not self._closing.is_set():
                self.error = error
        finally:
            self._finished.set()
            with self._condition:
                self._condition.notify_all()

    def _read(self, client: httpx.Client) -> None:
        raise NotImplementedError

    def _record_response(self, response: httpx.Response) -> bool:
        """Store status and headers. Returns whether the body is an event stream to read."""
        self.status_code = response.status_code
        self.response_headers = response.headers
        network_stream = response.extensions.get("network_stream")
        if network_stream is not None:
            self._socket = network_stream.get_extra_info("socket")
        # close() may have run before the socket was known.
        if self._closing.is_set():
            return False

        content_type = response.headers.get("content-type", "").partition(";")[0].strip()
        is_stream = response.status_code == 200 and content_type == EVENT_STREAM
        if not is_stream:
            self.body = response.read()
        self._connected.set()
        return is_stream

    def _wait_on(self, snapshot: Callable[[], T], predicate: Callable[[T], Any], timeout: float, description: str) -> Any:
        """Wait until predicate(snapshot()) is truthy and return its value.

        Raises TimeoutError after `timeout` seconds, or at once when the stream has
        ended without satisfying the predicate.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                result = predicate(snapshot())
                if result:
                    return result
                if self._finished.is_set():
                    raise TimeoutError(
                        f"stream from {self.url} ended before {description} "
                        f"(status {self.status_code}, error {self.error!r}). Received: {self._describe()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout:g} s waiting for {description}. Received: {self._describe()}")
                self._condition.wait(remaining)

    def _describe(self) -> str:
        raise NotImplementedError


class SSEClient(_StreamReader):
    """An SSE client that collects the events of one response, parsed by httpx_sse."""

    thread_name = "sse-client"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events: list[Event] = []

    @property
    def events(self) -> list[Event]:
        """A copy of the events received so far, in order."""
        with self._condition:
            return list(self._events)

    @property
    def last_event_id(self) -> Optional[str]:
        """The most recent non-empty event ID, else the `last_event_id` given at creation.

        Pass it to a new SSEClient to resume, as a browser does on reconnect.
        """
        with self._condition:
            for event in reversed(self._events):
                if event.id:
                    return event.id
        return self.initial_last_event_id

    def wait_for(self, predicate: Callable[[list[Event]], T], timeout: float = 10.0) -> T:
        """Wait until predicate(events) is truthy and return its value.

        Raises TimeoutError, listing the events received, after `timeout` seconds or when
        the stream ends first.
        """
        return self._wait_on(lambda: list(self._events), predicate, timeout, "the expected events")

    def wait_for_count(self, count: int, timeout: float = 10.0) -> list[Event]:
        """Wait until at least `count` events have arrived. Returns the first `count`."""
        self._wait_on(lambda: len(self._events), lambda received: received >= count, timeout, f"{count} events")
        return self.events[:count]

    def _read(self, client: httpx.Client) -> None:
        with connect_sse(client, "GET", self.url, params=self.params, headers=self.request_headers()) as source:
            if not self._record_response(source.response):
                return
            for sse in source.iter_sse():
                # httpx-sse 0.4 yields an event for every blank line once an id
                # was seen, so a heartbeat comment becomes an empty "message".
                # The SSE specification dispatches nothing when the data
                # buffer is empty, so neither does this client.
                if sse.data == "" and sse.event == "message":
                    continue
                event = Event(sse.event, sse.data, sse.id, sse.retry, received_at=time.monotonic())
                with self._condition:
                    self._events.append(event)
                    self._condition.notify_all()

    def _describe(self) -> str:
        events = self._events
        recent = ", ".join(f"{event.event}:{event.data[:80]!r}" for event in events[-10:])
        return f"{len(events)} events, last: [{recent}]"


class RawSSEReader(_StreamReader):
    """An SSE reader that keeps the raw body bytes of one response, with the arrival time
    of each chunk.

    The bytes are the body after HTTP chunked decoding, before any content decoding.
    """

    thread_name = "sse-raw-reader"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._buffer = bytearray()
        self._chunks: list[tuple[float, bytes]] = []

    @property
    def raw(self) -> bytes:
        """All body bytes received so far."""
        with self._condition:
            return bytes(self._buffer)

    @property
    def text(self) -> str:
        """`raw` decoded as UTF-8, the only encoding SSE allows."""
        return self.raw.decode("utf-8", errors="replace")

    @property
    def chunks(self) -> list[tuple[float, bytes]]:
        """(time.monotonic() at arrival, bytes) for each read from the socket."""
        with self._condition:
            return list(self._chunks)

    def lines(self) -> list[str]:
        """Complete lines received so far, split on CRLF, CR or LF as SSE defines."""
        text = self.text.replace("\r\n", "\n").replace("\r", "\n")
        return text.split("\n")[:-1]

    def comment_lines(self) -> list[str]:
        """Complete comment lines (starting with ":") received so far, including the colon."""
        return [line for line in self.lines() if line.startswith(":")]

    def wait_for(self, predicate: Callable[[bytes], T], timeout: float = 10.0) -> T:
        """Wait until predicate(raw bytes) is truthy and return its value.

        Raises TimeoutError after `timeout` seconds or when the stream ends first.
        """
        return self._wait_on(lambda: bytes(self._buffer), predicate, timeout, "the expected bytes")

    def wait_for_bytes(self, needle: bytes, count: int = 1, timeout: float = 10.0) -> bytes:
        """Wait until `needle` occurs at least `count` times in the body. Returns the body."""
        self._wait_on(
            lambda: bytes(self._buffer),
            lambda raw: raw.count(needle) >= count,
            timeout,
            f"{count} occurrence(s) of {needle!r}",
        )
        return self.raw

    def _read(self, client: httpx.Client) -> None:
        with client.stream("GET", self.url, params=self.params, headers=self.request_headers()) as response:
            if not self._record_response(response):
                return
            for chunk in response.iter_raw():
                with self._condition:
                    self._buffer.extend(chunk)
                    self._chunks.append((time.monotonic(), chunk))
                    self._condition.notify_all()

    def _describe(self) -> str:
        tail = bytes(self._buffer[-300:])
        return f"{len(self._buffer)} bytes, ending {tail!r}"
