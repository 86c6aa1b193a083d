"""``/v1/aliases``: read aliases, and set or remove them with an admin token.

``PUT /v1/aliases/<alias>`` with ``{"target": "<channel>"}`` points the
alias at a channel; every gateway moves the alias's subscribers to the
new target at once. ``DELETE`` removes the alias. Both need a bearer
token from ``LIVEGATE_ADMIN_TOKENS`` that covers the alias name.
"""

from __future__ import annotations

import logging

import orjson
import redis
from flask import Blueprint, jsonify, request

from livegate.aliases import AliasError
from livegate.auth import AccessError, AuthenticationError, AuthorizationError
from livegate.channels import InvalidChannelError, validate_channel
from workers.routes.auth import access_error, bearer_token, rejections
from workers.routes.errors import invalid_channel, json_error
from workers.routes.gateway import gateway
from workers.routes.publish import BodyTimeoutError, body_timeout, read_body

log = logging.getLogger(__name__)

aliases = Blueprint("aliases", __name__)

MAX_BODY_BYTES = 4096


@aliases.get("/v1/aliases")
def list_aliases():
    service = gateway()
    return jsonify({"aliases": [alias.as_json() for alias in service.aliases.all()]})


@aliases.get("/v1/aliases/<channel:name>")
def get_alias(name: str):
    try:
        validate_channel(name)
    except InvalidChannelError as error:
        return invalid_channel(error)
    alias = gateway().aliases.get(name)
    if alias is None:
        return json_error(404, "alias_not_found", f"there is no alias {name!r}", alias=name)
    return alias.as_json()


@aliases.put("/v1/aliases/<channel:name>")
def put_alias(name: str):
    rejection = _authorize(name)
    if rejection is not None:
        return rejection
    too_large = json_error(413, "body_too_large",
                           f"an alias body is at most {MAX_BODY_BYTES} bytes",
                           maximum=MAX_BODY_BYTES)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return too_large
    timeout = gateway().settings.publish_read_timeout
    try:
        raw = read_body(MAX_BODY_BYTES, timeout)
    except BodyTimeoutError:
        return body_timeout(timeout)
    if len(raw) > MAX_BODY_BYTES:
        return too_large
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return json_error(400, "invalid_body", f"body is not valid JSON: {error}")
    target = body.get("target") if isinstance(body, dict) else None
    if not isinstance(target, str):
        return json_error(400, "invalid_body",
                          'send {"target": "<channel>"} as application/json')
    try:
        validate_channel(target)
    except InvalidChannelError as error:
        return invalid_channel(error)
    return _change(lambda store: store.set(name, target), name)


@aliases.delete("/v1/aliases/<channel:name>")
def delete_alias(name: str):
    rejection = _authorize(name)
    if rejection is not None:
        return rejection
    return _change(lambda store: store.remove(name), name)


def _authorize(name: str):
    """Check the admin token for ``name``; return the error response, or None."""
    service = gateway()
    token = bearer_token(request)
    try:
        if service.admin_auth is None:
            raise AuthenticationError(
                "changing aliases needs an admin token, and LIVEGATE_ADMIN_TOKENS is empty",
                token_presented=token is not None,
            )
        grant = service.admin_auth.authenticate(token)
        validate_channel(name)
        if not grant.allows(name):
            raise AuthorizationError(f"this admin token may not change the alias {name!r}",
                                     channel=name)
    except InvalidChannelError as error:
        return invalid_channel(error)
    except AccessError as error:
        rejections.record("alias change", error.status, error.message,
                          request.remote_addr or "", token)
        return access_error(error)
    return None


def _change(operation, name: str):
    service = gateway()
    try:
        change = operation(service.aliases)
    except InvalidChannelError as error:
        return invalid_channel(error)
    except AliasError as error:
        return json_error(error.status, error.code, str(error), alias=name)
    except redis.RedisError as error:
        log.error("alias change of %s failed: redis error: %s", name, error)
        return json_error(503, "redis_unavailable", "redis is unavailable; retry later")
    return {
        "alias": change.alias, "target": change.target or None,
        "previous": change.previous or None, "id": change.id, "changed": change.changed,
    }
