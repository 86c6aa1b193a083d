"""``GET /v1/stream``: the SSE endpoint."""

from __future__ import annotations

import logging
import math
import random
import socket

from flask import Blueprint, Response, request

from livegate.auth import AccessError
from livegate.channels import InvalidChannelError, Pattern, parse_subscription
from livegate.compression import accepts_gzip
from livegate.settings import Settings
from workers import hub as worker_hub
from workers.routes.auth import access_error, rejections, subscriber_token
from workers.routes.errors import invalid_channel, json_error
from workers.routes.gateway import gateway

log = logging.getLogger(__name__)

stream = Blueprint("stream", __name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Tells nginx-style proxies to pass each event on instead of buffering.
    "X-Accel-Buffering": "no",
}


def parse_subscriptions(values: list[str]) -> tuple[Pattern, ...]:
    """Parse the ``channel`` parameters, dropping repeats; raises InvalidChannelError."""
    subscriptions: dict[str, Pattern] = {}
    for value in values:
        subscription = parse_subscription(value)
        subscriptions.setdefault(subscription.text, subscription)
    return tuple(subscriptions.values())


def retry_after_seconds(settings: Settings) -> str:
    """Return a Retry-After value: the stream retry delay with jitter, in whole seconds."""
    milliseconds = settings.retry_ms + random.randint(0, settings.retry_jitter_ms)
    return str(max(1, math.ceil(milliseconds / 1000)))


def check_capacity(hub: worker_hub.Hub, settings: Settings, remote: str) -> Response | None:
    """Return a 503 or 429 response when this worker cannot take a stream from ``remote``."""
    if len(hub.streams) >= settings.max_streams_per_worker:
        code = "too_many_streams"
        response = json_error(
            503, code,
            f"this gateway worker holds the maximum of {settings.max_streams_per_worker} "
            "streams (LIVEGATE_MAX_STREAMS_PER_WORKER); retry after the Retry-After delay",
            maximum=settings.max_streams_per_worker,
        )
    elif (
        settings.max_streams_per_address
        and hub.streams_by_address.get(remote, 0) >= settings.max_streams_per_address
    ):
        code = "too_many_streams_from_address"
        response = json_error(
            429, code,
            f"{remote} holds the maximum of {settings.max_streams_per_address} streams on this "
            "gateway worker (LIVEGATE_MAX_STREAMS_PER_ADDRESS); close one or retry later",
            maximum=settings.max_streams_per_address,
        )
    else:
        return None
    response.headers["Retry-After"] = retry_after_seconds(settings)
    rejections.record("stream", response.status_code, code, remote)
    return response


@stream.get("/v1/stream")
def open_stream():
    service = gateway()
    settings = service.settings
    values = request.args.getlist("channel")
    if not values:
        return json_error(400, "missing_channel",
                          "add at least one channel parameter, e.g. ?channel=news/1")
    if len(values) > settings.max_subscriptions:
        return json_error(
            400, "too_many_channels",
            f"{len(values)} channel parameters exceed the maximum of "
            f"{settings.max_subscriptions} (LIVEGATE_MAX_SUBSCRIPTIONS)",
            maximum=settings.max_subscriptions,
        )
    try:
        subscriptions = parse_subscriptions(values)
    except InvalidChannelError as error:
        return invalid_channel(error)
    view = None
    view_name = request.args.get("view")
    if view_name is not None:
        view = service.channel_config.views.get(view_name)
        if view is None:
            known = sorted(service.channel_config.views)
            return json_error(
                400, "unknown_view",
                f"there is no view {view_name!r}; the channels file declares: "
                f"{', '.join(known) if known else 'no views'}",
                views=known,
            )

    hub = worker_hub.current()
    if hub is None:
        return json_error(503, "no_ring",
                          "streaming needs the gateway under gunicorn with gunicorn.conf.py")
    if hub.stopping:
        response = json_error(503, "shutting_down", "this gateway is shutting down; retry")
        response.headers["Retry-After"] = "1"
        return response

    # From here to open_stream nothing yields to other greenlets, so the
    # capacity checked is still there when the stream is registered.
    remote = request.remote_addr or ""
    rejected = check_capacity(hub, settings, remote)
    if rejected is not None:
        return rejected
    limited = hub.namespaces.limited(subscriptions)
    full = hub.full_namespace(limited)
    if full is not None:
        response = json_error(
            503, "namespace_full",
            f"{full.describe()} holds its maximum of {full.max_subscribers} streams on this "
            "gateway worker (max_subscribers in the channels file); retry after the "
            "Retry-After delay",
            namespace=full.prefix, maximum=full.max_subscribers,
        )
        response.headers["Retry-After"] = retry_after_seconds(settings)
        rejections.record("stream", 503, "namespace_full", remote)
        return response
    access = None
    if service.subscribe_auth is not None:
        token = subscriber_token(request, settings.subscribe_token_cookie)
        try:
            access = service.subscribe_auth.authorize(subscriptions, token)
        except AccessError as error:
            rejections.record("stream", error.status, error.message, remote, token)
            return access_error(error)

    since = request.headers.get("Last-Event-ID") or request.args.get("since")
    headers = dict(SSE_HEADERS)
    gzip = False
    if settings.stream_compression == "gzip":
        # The body depends on Accept-Encoding whichever coding is chosen.
        headers["Vary"] = "Accept-Encoding"
        gzip = accepts_gzip(request.accept_encodings)
        if gzip:
            headers["Content-Encoding"] = "gzip"
    if access is None:
        client = hub.open_stream(subscriptions, since, remote, view=view, limited=limited,
                                 gzip=gzip)
    else:
        client = hub.open_stream(subscriptions, since, remote, allowed=access.channels,
                                 expires_at=access.expires_at, view=view, limited=limited,
                                 gzip=gzip)
        log.debug("stream %s from %s filtered by subscriber token %s", client.id, remote,
                  access.fingerprint or "(none)")
    _limit_send_buffer(request.environ.get("gunicorn.socket"), settings.stream_send_buffer_bytes)
    # The body closes the stream itself, also when it is never iterated.
    return Response(hub.stream_body(client, request.environ), status=200,
                    mimetype="text/event-stream", headers=headers, direct_passthrough=True)


def _limit_send_buffer(sock, size: int) -> None:
    """Cap the kernel's send buffer of a stream socket (see LIVEGATE_STREAM_SEND_BUFFER_BYTES)."""
    if sock is None or size <= 0:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError as error:
        log.debug("cannot set SO_SNDBUF=%s on a stream socket: %s", size, error)
