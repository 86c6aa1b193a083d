"""``GET /v1/stream``: the SSE endpoint."""

from __future__ import annotations

from flask import Blueprint, Response, request

from livegate.channels import InvalidChannelError, Pattern, parse_subscription
from workers import hub as worker_hub
from workers.routes.errors import invalid_channel, json_error
from workers.routes.gateway import gateway

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


@stream.get("/v1/stream")
def open_stream():
    settings = gateway().settings
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

    hub = worker_hub.current()
    if hub is None:
        return json_error(503, "no_ring",
                          "streaming needs the gateway under gunicorn with gunicorn.conf.py")
    if hub.stopping:
        response = json_error(503, "shutting_down", "this gateway is shutting down; retry")
        response.headers["Retry-After"] = "1"
        return response

    since = request.headers.get("Last-Event-ID") or request.args.get("since")
    client = hub.open_stream(subscriptions, since, request.remote_addr or "")
    response = Response(hub.stream_events(client), status=200, mimetype="text/event-stream",
                        headers=SSE_HEADERS)
    # The generator's own cleanup never runs if the server drops the
    # response before iterating it; this callback runs in every case.
    response.call_on_close(lambda: hub.close_stream(client))
    return response
