"""``POST /v1/publish/<channel>``: publish a document or a patch."""

from __future__ import annotations

import logging

import gevent
import msgpack
import orjson
import redis
from flask import Blueprint, request

from ingest.publisher import (
    ChannelIsAliasError, DocumentError, DocumentTooDeepError, PatchError, VersionConflictError,
)
from livegate.auth import AccessError, PublishAuth
from livegate.channels import InvalidChannelError, validate_channel
from workers.routes.auth import access_error, bearer_token, rejections
from workers.routes.errors import invalid_channel, json_error
from workers.routes.gateway import gateway

log = logging.getLogger(__name__)

publish = Blueprint("publish", __name__)

JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
MSGPACK = "application/msgpack"
READ_CHUNK_BYTES = 65536


@publish.post("/v1/publish/<channel:channel>")
def publish_channel(channel: str):
    service = gateway()
    # The token is checked first, so that a caller without one learns
    # nothing, not even whether the channel name is valid.
    token = bearer_token(request)
    grant = None
    if service.publish_auth is not None:
        try:
            grant = service.publish_auth.authenticate(token)
        except AccessError as error:
            rejections.record("publish", error.status, error.message,
                              request.remote_addr or "", token)
            return access_error(error)
    try:
        validate_channel(channel)
    except InvalidChannelError as error:
        return invalid_channel(error)
    if grant is not None:
        try:
            PublishAuth.authorize(grant, channel)
        except AccessError as error:
            rejections.record("publish", error.status, error.message,
                              request.remote_addr or "", token)
            return access_error(error)

    limit = service.settings.max_publish_bytes
    if request.content_length is not None and request.content_length > limit:
        return _too_large(request.content_length, limit)
    timeout = service.settings.publish_read_timeout
    try:
        body = read_body(limit, timeout)
    except BodyTimeoutError:
        return body_timeout(timeout)
    if len(body) > limit:
        return _too_large(len(body), limit)

    content_type = request.mimetype
    try:
        if content_type == JSON:
            result = service.publisher.publish(channel, _load_json(body))
        elif content_type == MSGPACK:
            result = service.publisher.publish(channel, _load_msgpack(body))
        elif content_type == JSON_PATCH:
            base_version = _base_version()
            result = service.publisher.publish_patch(channel, _load_json(body), base_version)
        else:
            return json_error(
                415, "unsupported_media_type",
                f"Content-Type {content_type or '(none)'!r} is not supported; "
                f"use {JSON}, {JSON_PATCH} or {MSGPACK}",
            )
    except DocumentTooDeepError as error:
        return json_error(400, "document_too_deep", str(error), maximum=error.maximum)
    except DocumentError as error:
        return json_error(400, "invalid_document", str(error))
    except PatchError as error:
        return json_error(422, "patch_failed", str(error))
    except VersionConflictError as error:
        return json_error(409, "version_conflict", str(error), channel=channel,
                          current_version=error.current_version)
    except ChannelIsAliasError as error:
        return json_error(409, "channel_is_alias", str(error), channel=channel)
    except ValueError as error:
        return json_error(400, "invalid_request", str(error))
    except redis.RedisError as error:
        log.error("publish to %s failed: redis error: %s", channel, error)
        return json_error(503, "redis_unavailable", "redis is unavailable; retry later")
    response = {
        "channel": result.channel, "version": result.version, "id": result.id,
        "changed": result.changed,
    }
    if result.routed:
        response["routed"] = [
            {"channel": r.channel, "version": r.version, "id": r.id, "changed": r.changed}
            for r in result.routed
        ]
    return response


class BodyTimeoutError(Exception):
    """The publish body did not arrive within LIVEGATE_PUBLISH_READ_TIMEOUT."""


def body_timeout(timeout: float):
    """Return the 408 response to a body that did not arrive within ``timeout`` seconds."""
    response = json_error(408, "request_timeout",
                          f"the request body did not arrive within {timeout:g} s "
                          "(LIVEGATE_PUBLISH_READ_TIMEOUT)")
    # The rest of the body may still come; this connection is done.
    response.headers["Connection"] = "close"
    return response


def read_body(limit: int, timeout: float) -> bytes:
    """Read at most ``limit + 1`` bytes of the body within ``timeout`` seconds.

    Reading stops one byte past the limit, so a chunked body without a
    Content-Length cannot fill the worker's memory before it is rejected.
    Raises BodyTimeoutError when the client sends too slowly.
    """
    chunks: list[bytes] = []
    size = 0
    timer = gevent.Timeout(timeout)
    timer.start()
    try:
        while size <= limit:
            chunk = request.stream.read(min(READ_CHUNK_BYTES, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except gevent.Timeout as error:
        if error is not timer:
            raise
        raise BodyTimeoutError() from None
    finally:
        timer.close()
    return b"".join(chunks)


def _too_large(size: int, limit: int):
    return json_error(413, "body_too_large",
                      f"body of {size} bytes exceeds the maximum of {limit} "
                      "(LIVEGATE_MAX_PUBLISH_BYTES)", maximum=limit)


def _load_json(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise DocumentError(f"body is not valid JSON: {error}") from None


def _load_msgpack(body: bytes):
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise DocumentError(f"body is not valid msgpack: {error}") from None


def _base_version() -> int | None:
    """Read the optional ``base_version`` query parameter of a patch publish."""
    raw = request.args.get("base_version")
    if raw is None:
        return None
    if not raw.isdigit():
        raise ValueError(f"base_version must be a non-negative integer, got {raw!r}")
    return int(raw)
