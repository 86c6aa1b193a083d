"""A resuming SSE client that keeps one Mirror across reconnects.

ResumingClient connects to any gateway URL with the id of the last event it
received, as a browser's EventSource does on reconnect, and checks the
exactly-once rule per channel across all of its connections:

- a delta must carry the version right after the current one, in the same epoch;
- a snapshot may skip versions, and the count continues from it, but within one
  epoch it never carries a version older than the current one;
- within one connection, the seq in the event ids never decreases within an epoch.

A breach is recorded in `violations` instead of raised, so that a test can
report every breach of a long run at once. The offending event is not applied,
and the resume point stays before it.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import jsonpatch
import jsonpointer

from .mirror import Mirror
from .sse import Event, SSEClient


@dataclass(frozen=True)
class Received:
    """One snapshot or delta as the client received it."""

    connection: int
    event: str
    channel: str
    version: int
    id: str


def split_event_id(event_id: str) -> tuple[str, int]:
    """Return the epoch and seq of an `EPOCH-SEQ` event id."""
    epoch, _, seq = event_id.rpartition("-")
    return epoch, int(seq)


class ResumingClient:
    """One logical SSE client whose connections come and go.

    Not thread-safe: one thread drives each client. `history`, when set,
    keeps (channel, version, document) after every applied event.
    """

    def __init__(
        self,
        channels: Sequence[str],
        last_event_id: Optional[str] = None,
        name: str = "client",
        keep_history: bool = False,
        read_timeout: float = 30.0,
    ) -> None:
        self.channels = list(channels)
        self.name = name
        self.last_event_id = last_event_id
        self.read_timeout = read_timeout
        self.mirror = Mirror()
        self.received: list[Received] = []
        self.violations: list[str] = []
        self.history: Optional[list[tuple[str, int, Any]]] = [] if keep_history else None
        self.connections = 0
        self.failed_connects = 0
        self.sse: Optional[SSEClient] = None
        # Epoch of the current version of each channel.
        self._epochs: dict[str, str] = {}
        # Events of the current connection already applied.
        self._applied = 0
        # (epoch, seq) of the last event id on the current connection.
        self._last_position: Optional[tuple[str, int]] = None

    # --- connections -------------------------------------------------------------------

    def connect(self, base_url: str, since: Optional[str] = None, timeout: float = 5.0) -> SSEClient:
        """Open a stream on `base_url` with Last-Event-ID set to the last id received.

        `since` adds a `?since=` parameter. The previous connection is closed
        first. Returns the SSEClient. A refused connection or an error status is
        counted in `failed_connects`, not raised.
        """
        self.disconnect()
        params = [("channel", channel) for channel in self.channels]
        if since is not None:
            params.append(("since", since))
        sse = SSEClient(
            f"{base_url}/v1/stream",
            params=params,
            last_event_id=self.last_event_id,
            connect_timeout=2.0,
            read_timeout=self.read_timeout,
        )
        self.sse = sse
        self._applied = 0
        self._last_position = None
        try:
            sse.start(timeout=timeout)
        except TimeoutError:
            self.failed_connects += 1
            return sse
        if sse.status_code == 200:
            self.connections += 1
        else:
            self.failed_connects += 1
        return sse

    @property
    def connected(self) -> bool:
        """Whether the current connection is open and streaming."""
        return self.sse is not None and self.sse.status_code == 200 and not self.sse.finished

    def disconnect(self) -> None:
        """Close the current connection and apply every event it delivered."""
        sse = self.sse
        if sse is None:
            return
        try:
            sse.close()
        except TimeoutError:
            # Only a request still waiting for response headers outlives close().
            # Its thread ends by itself within read_timeout.
            if sse.status_code is not None:
                raise
        finally:
            self.sync()
            self.sse = None

    def sync(self) -> None:
        """Apply the events that the current connection received since the last call."""
        if self.sse is not None:
            self._absorb(self.sse.events)

    def seed(self, channel: str, version: int, document: Any, event_id: str) -> None:
        """Hold `document` as `version` of `channel`, as read from GET /v1/channels/<channel>,
        and resume from `event_id`."""
        self.mirror.apply("snapshot", {"channel": channel, "version": version, "data": copy.deepcopy(document)})
        self._epochs[channel] = split_event_id(event_id)[0]
        self.last_event_id = event_id

    # --- waiting -----------------------------------------------------------------------

    def wait_for_documents(self, expected: Mapping[str, Any], timeout: float = 10.0) -> None:
        """Wait until the mirror contains `expected` (channel to document) on the current connection.

        Raises TimeoutError, listing what differs, after `timeout` seconds or when the
        stream ends first.
        """
        if self.sse is None:
            raise RuntimeError(f"{self.name} is not connected: call connect() first")

        def contains_expected(events: list[Event]) -> bool:
            self._absorb(events)
            return self.differences(expected) == {}

        try:
            self.sse.wait_for(contains_expected, timeout=timeout)
        except TimeoutError as error:
            raise TimeoutError(f"{self.name}: {self.describe_differences(expected)}; {error}") from None

    def follow(
        self,
        choose_url: Callable[[], str],
        expected: Mapping[str, Any],
        timeout: float = 20.0,
        reconnect_delay: float = 0.2,
    ) -> None:
        """Reconnect through `choose_url()` whenever the stream ends, until the mirror
        contains `expected`. Raises TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: {self.describe_differences(expected)} after {timeout:g} s")
            if not self.connected:
                self.connect(choose_url())
                if not self.connected:
                    time.sleep(min(reconnect_delay, max(0.0, deadline - time.monotonic())))
                    continue
            try:
                self.wait_for_documents(expected, timeout=remaining)
                return
            except TimeoutError:
                if self.connected:
                    raise
                time.sleep(min(reconnect_delay, max(0.0, deadline - time.monotonic())))

    # --- results -----------------------------------------------------------------------

    def documents(self) -> dict[str, Any]:
        return self.mirror.documents()

    def differences(self, expected: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Return (current, expected) for every channel whose document differs from `expected`."""
        current = self.mirror.documents()
        return {
            channel: (current.get(channel), document)
            for channel, document in expected.items()
            if current.get(channel) != document
        }

    def describe_differences(self, expected: Mapping[str, Any]) -> str:
        differing = self.differences(expected)
        versions = self.mirror.versions()
        current = {channel: versions.get(channel) for channel in differing}
        return (
            f"{len(differing)} of {len(expected)} channels differ from the expected documents "
            f"(current versions {current}), violations: {self.violations[:5]}"
        )

    def connection_events(self, connection: Optional[int] = None) -> list[Received]:
        """Return the events received on one connection, by default the latest."""
        number = self.connections if connection is None else connection
        return [received for received in self.received if received.connection == number]

    # --- the exactly-once rule ---------------------------------------------------------

    def _absorb(self, events: list[Event]) -> None:
        for event in events[self._applied:]:
            self._apply(event)
        self._applied = max(self._applied, len(events))

    def _apply(self, event: Event) -> None:
        if event.event not in ("snapshot", "delta"):
            self.violations.append(f"unexpected event {event.event!r} with data {event.data[:100]!r}")
            return
        if not event.id:
            self.violations.append(f"{event.event} without an id: {event.data[:100]!r}")
            return
        data = json.loads(event.data)
        channel = data["channel"]
        version = data["version"]
        epoch, seq = split_event_id(event.id)
        self.received.append(Received(self.connections, event.event, channel, version, event.id))
        self._check_order(epoch, seq, event)

        if event.event == "delta" and not self._delta_follows(channel, version, epoch):
            return
        if event.event == "snapshot" and not self._snapshot_is_current(channel, version, epoch):
            return
        try:
            self.mirror.apply(event.event, data)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
            self.violations.append(f"{channel} v{version} ({event.id}): patch does not apply: {error}")
            return
        self._epochs[channel] = epoch
        self.last_event_id = event.id
        if self.history is not None:
            self.history.append((channel, version, copy.deepcopy(self.mirror.channels[channel].document)))

    def _delta_follows(self, channel: str, version: int, epoch: str) -> bool:
        state = self.mirror.channels.get(channel)
        if state is None:
            self.violations.append(f"{channel}: delta v{version} before any snapshot")
            return False
        if self._epochs[channel] != epoch:
            self.violations.append(
                f"{channel}: delta v{version} of epoch {epoch} on v{state.version} of epoch {self._epochs[channel]}"
            )
            return False
        if version <= state.version:
            self.violations.append(f"{channel}: delta v{version} repeated after v{state.version}")
            return False
        if version > state.version + 1:
            self.violations.append(f"{channel}: delta v{version} skipped versions after v{state.version}")
            return False
        return True

    def _snapshot_is_current(self, channel: str, version: int, epoch: str) -> bool:
        state = self.mirror.channels.get(channel)
        if state is not None and self._epochs[channel] == epoch and version < state.version:
            self.violations.append(f"{channel}: snapshot v{version} of epoch {epoch} after v{state.version}")
            return False
        return True

    def _check_order(self, epoch: str, seq: int, event: Event) -> None:
        previous = self._last_position
        if previous is not None and previous[0] == epoch and seq < previous[1]:
            self.violations.append(
                f"connection {self.connections}: id {event.id} after {previous[0]}-{previous[1]}"
            )
        self._last_position = (epoch, seq)


def versions_by_channel(received) -> dict[str, list[int]]:
    versions: dict[str, list[int]] = {}
    for event in received:
        versions.setdefault(event.channel, []).append(event.version)
    return versions


def assert_replayed_exactly(client: ResumingClient, versions_before: dict[str, int],
                            versions_after: dict[str, int]) -> None:
    """Check that the latest connection delivered exactly the deltas after `versions_before`, in order."""
    received = client.connection_events()
    assert [event.event for event in received] == ["delta"] * len(received)
    expected = {
        channel: list(range(versions_before[channel] + 1, versions_after[channel] + 1))
        for channel in versions_after
        if versions_after[channel] > versions_before[channel]
    }
    assert versions_by_channel(received) == expected
