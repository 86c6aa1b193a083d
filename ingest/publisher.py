"""Publisher with auto-compare.

A publish takes the whole new document of a channel, compares it with the
stored one and sends only an RFC 6902 patch, or nothing when nothing
changed. The write itself is ``publish.lua``, one atomic step in Redis that
checks the base version, so two publishers racing on one channel never
lose an update: the loser recomputes its patch against the winner's
document and tries again, with backoff, for up to DEFAULT_RETRY_SECONDS.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import jsonpatch
import jsonpointer
import orjson
import redis

from ingest.diff import diff
from livegate.channel_config import ChannelConfig
from livegate.channels import validate_channel
from livegate.namespaces import MODE_SNAPSHOT
from livegate.ids import format_event_id
from livegate.redis_client import client_for_channel, connect
from livegate.settings import Settings
from livegate.wire import KIND_DELTA, KIND_SNAPSHOT, Keys

log = logging.getLogger(__name__)

SCRIPT_PATH = Path(__file__).with_name("publish.lua")
# A publish that keeps losing races to other publishers of the same channel
# retries with jittered backoff for this long before it gives up.
DEFAULT_RETRY_SECONDS = 5.0
FIRST_BACKOFF = 0.001
MAX_BACKOFF = 0.05
# Documents larger than this have their patch computed by ``cpu_runner``
# when one is given (gevent workers pass a thread-pool runner).
CPU_OFFLOAD_BYTES = 64 * 1024


class PublishError(Exception):
    """Base class of the publisher's own errors."""


class DocumentError(PublishError, ValueError):
    """A document or patch that is not valid JSON for livegate."""


class DocumentTooDeepError(DocumentError):
    """A document whose arrays and objects nest deeper than the configured maximum."""

    def __init__(self, maximum: int):
        self.maximum = maximum
        super().__init__(
            f"document nests arrays and objects more than {maximum} levels deep, the maximum "
            "(LIVEGATE_MAX_DOCUMENT_DEPTH)"
        )


def check_depth(document: Any, maximum: int) -> None:
    """Raise DocumentTooDeepError when arrays and objects nest more than ``maximum`` levels.

    Walks the document with an explicit stack, so a deep document cannot
    exhaust Python's recursion limit here. A scalar has depth 0 and ``[]``
    depth 1.
    """
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        depth += 1
        if depth > maximum:
            raise DocumentTooDeepError(maximum)
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))


class PatchError(PublishError, ValueError):
    """A JSON Patch that is malformed or does not apply to the current document."""


class VersionConflictError(PublishError):
    """The channel moved past the base version the caller named."""

    def __init__(self, channel: str, base_version: int, current_version: int):
        self.channel = channel
        self.base_version = base_version
        self.current_version = current_version
        super().__init__(
            f"channel {channel!r} is at version {current_version}, not {base_version}: "
            "fetch the current document and compute the change again"
        )


class ChannelIsAliasError(PublishError):
    """The channel name is an alias; documents go to the channel it points to."""

    def __init__(self, channel: str):
        self.channel = channel
        super().__init__(
            f"{channel!r} is an alias of another channel; publish to its target "
            "(GET /v1/aliases/<alias> names it)"
        )


class PublishResult(NamedTuple):
    channel: str
    version: int
    id: str | None
    changed: bool
    # The results of the routing rules' republishes of this change.
    routed: tuple["PublishResult", ...] = ()


def canonical_json(document: Any) -> bytes:
    """Encode ``document`` as compact JSON with sorted keys, for comparisons.

    Raises DocumentError for values JSON cannot carry (non-string keys,
    integers beyond 64 bits, objects of other types).
    """
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except TypeError as error:
        raise DocumentError(f"document is not valid JSON: {error}") from None


def make_patch(old: Any, new: Any) -> list[dict]:
    """Compute an RFC 6902 patch from ``old`` to ``new`` in linear time (see ingest.diff)."""
    return diff(old, new)


class Publisher:
    """Publishes documents and patches to channels through Redis.

    Thread-safe and greenlet-safe as far as the redis client is. The same
    class serves the HTTP publish route and the ingest process.
    """

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str = "lg",
        channel_log_length: int = 200,
        global_log_length: int = 10_000,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        cpu_runner: Callable[..., Any] | None = None,
        max_depth: int | None = None,
        channel_config: ChannelConfig | None = None,
    ):
        """``cpu_runner(function, *args)``, when given, runs patch computations
        for documents above CPU_OFFLOAD_BYTES, e.g. off an event loop.
        ``max_depth``, when given, rejects deeper documents (see check_depth).
        ``channel_config``, when given, sets each channel's log length and
        mode from its namespace and republishes by its routing rules."""
        self._client = client
        self._config = channel_config
        self._cpu_runner = cpu_runner
        self._max_depth = max_depth
        self._keys = Keys(key_prefix)
        self._channel_log_length = channel_log_length
        self._global_log_length = global_log_length
        self._retry_seconds = retry_seconds
        self._script = client.register_script(SCRIPT_PATH.read_text())

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        client: redis.Redis | None = None,
        cpu_runner: Callable[..., Any] | None = None,
    ) -> "Publisher":
        if client is None:
            client = connect(settings)
        return cls(
            client,
            key_prefix=settings.key_prefix,
            channel_log_length=settings.channel_log_length,
            global_log_length=settings.global_log_length,
            cpu_runner=cpu_runner,
            max_depth=settings.max_document_depth,
            channel_config=ChannelConfig.from_settings(settings),
        )

    def current(self, channel: str) -> tuple[int, Any]:
        """Return the current version and document of ``channel`` (0 and None if unknown)."""
        client = client_for_channel(self._client, channel)
        version, document_json = client.hmget(self._keys.state(channel), "version", "doc")
        if version is None:
            return 0, None
        return int(version), orjson.loads(document_json)

    def publish(self, channel: str, document: Any) -> PublishResult:
        """Publish ``document`` as the new state of ``channel``.

        Only the difference to the stored document leaves; an identical
        document publishes nothing and returns ``changed=False``.
        """
        validate_channel(channel)
        if self._max_depth is not None:
            check_depth(document, self._max_depth)
        result = self._publish_document(channel, document)
        return self._route(result, document)

    def _publish_document(self, channel: str, document: Any) -> PublishResult:
        new_json = canonical_json(document)
        for _ in self._attempts():
            version, old = self.current(channel)
            if version and canonical_json(old) == new_json:
                return PublishResult(channel, version, None, False)
            if version == 0:
                result = self._write(channel, 0, KIND_SNAPSHOT, b"", new_json)
            else:
                result = self._write_change(channel, version, old, document, new_json)
            if result is not None:
                return result
        raise VersionConflictError(channel, version, self.current(channel)[0])

    def publish_patch(
        self, channel: str, patch: Any, base_version: int | None = None
    ) -> PublishResult:
        """Apply an RFC 6902 ``patch`` to the current document and publish it.

        With ``base_version`` the patch must have been computed against that
        version, else VersionConflictError. Without it the patch applies to
        whatever version is current, retried if another publish wins the race.
        """
        validate_channel(channel)
        try:
            operations = jsonpatch.JsonPatch(patch)
        except (jsonpatch.InvalidJsonPatch, TypeError) as error:
            raise PatchError(f"invalid JSON Patch: {error}") from None
        for _ in self._attempts():
            version, old = self.current(channel)
            if base_version is not None and base_version != version:
                raise VersionConflictError(channel, base_version, version)
            try:
                new = operations.apply(old)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
                raise PatchError(
                    f"patch does not apply to version {version} of {channel!r}: {error}"
                ) from None
            if self._max_depth is not None:
                # Checked on the result: a patch may nest a value below a deep path.
                check_depth(new, self._max_depth)
            new_json = canonical_json(new)
            if version and canonical_json(old) == new_json:
                return PublishResult(channel, version, None, False)
            if version == 0:
                result = self._write(channel, 0, KIND_SNAPSHOT, b"", new_json)
            else:
                result = self._write_change(channel, version, old, new, new_json)
            if result is not None:
                return self._route(result, new)
            if base_version is not None:
                raise VersionConflictError(channel, base_version, self.current(channel)[0])
        raise VersionConflictError(channel, version, self.current(channel)[0])

    def _route(self, result: PublishResult, document: Any) -> PublishResult:
        """Republish a changed document to the targets of the routing rules.

        The source's publish stands whatever happens to a target. A target
        that fails is logged and left out of ``routed``, and the next change
        of the source brings it up to date again.
        """
        if not result.changed or self._config is None or not self._config.rules:
            return result
        routed = []
        for rule, target in self._config.rules.route(result.channel):
            try:
                routed.append(self._publish_document(target, document))
            except (PublishError, redis.RedisError) as error:
                log.error("rule %s: republish of %s version %s to %s failed: %s",
                          rule, result.channel, result.version, target, error)
        return result._replace(routed=tuple(routed))

    def _attempts(self) -> Iterator[int]:
        """Yield attempt numbers, sleeping with jittered backoff between them.

        Every attempt re-reads the channel, so a loser of a race recomputes
        against the winner's document. The sleep is ``time.sleep``, which
        gevent makes cooperative inside a worker.
        """
        deadline = time.monotonic() + self._retry_seconds
        backoff = FIRST_BACKOFF
        attempt = 0
        while True:
            attempt += 1
            yield attempt
            if time.monotonic() >= deadline:
                return
            time.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _make_patch(self, old: Any, new: Any, size: int) -> list[dict]:
        if self._cpu_runner is not None and size > CPU_OFFLOAD_BYTES:
            return self._cpu_runner(make_patch, old, new)
        return make_patch(old, new)

    def _write_change(
        self, channel: str, base_version: int, old: Any, new: Any, new_json: bytes
    ) -> PublishResult | None:
        """Publish the change from ``old`` to ``new`` as a delta, or as a snapshot.

        A channel in a snapshot-mode namespace skips the patch altogether.
        """
        if self._config is not None and \
                self._config.namespaces.lookup(channel).mode == MODE_SNAPSHOT:
            return self._write(channel, base_version, KIND_SNAPSHOT, b"", new_json)
        patch_json = canonical_json(self._make_patch(old, new, len(new_json)))
        # A patch larger than the document it produces costs every client more
        # than the document itself, so such a change travels as a snapshot.
        kind = KIND_SNAPSHOT if len(patch_json) >= len(new_json) else KIND_DELTA
        return self._write(channel, base_version, kind, patch_json, new_json)

    def _write(
        self, channel: str, base_version: int, kind: str, patch_json: bytes, new_json: bytes
    ) -> PublishResult | None:
        """Run the publish script; return None when the base version was stale."""
        keys = self._keys
        log_length = self._channel_log_length
        if self._config is not None:
            namespace = self._config.namespaces.lookup(channel)
            if not namespace.is_default:
                log_length = namespace.log_length
        status, version, seq, epoch = self._script(
            keys=[
                keys.epoch, keys.seq, keys.channels, keys.state(channel),
                keys.channel_log(channel), keys.global_log, keys.aliases,
            ],
            args=[
                channel, base_version, kind, patch_json, new_json, new_epoch(),
                log_length, self._global_log_length, keys.bus,
            ],
            client=client_for_channel(self._client, channel),
        )
        if status == -1:
            raise ChannelIsAliasError(channel)
        if status == 0:
            log.debug(
                "publish to %s lost a race at version %s (now %s); retrying",
                channel, base_version, version,
            )
            return None
        return PublishResult(channel, int(version), format_event_id(_text(epoch), int(seq)), True)


def new_epoch() -> str:
    """Return a fresh epoch: 12 lowercase hex characters."""
    return secrets.token_hex(6)


def _text(value: bytes | str) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value
