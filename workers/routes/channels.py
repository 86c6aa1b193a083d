"""``GET /v1/channels`` and ``GET /v1/channels/<channel>``: current state."""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, jsonify, request

from livegate.channels import InvalidChannelError, parse_subscription, validate_channel
from livegate.frames import FrameError, compact_json
from livegate.ids import format_event_id
from workers.routes.errors import invalid_channel, json_error
from workers.routes.gateway import gateway

channels = Blueprint("channels", __name__)


@channels.get("/v1/channels")
def list_channels():
    pattern = None
    if "pattern" in request.args:
        try:
            pattern = parse_subscription(request.args["pattern"])
        except InvalidChannelError as error:
            return invalid_channel(error)
    service = gateway()
    entries = []
    # HSCAN keeps Redis responsive with many channels, unlike one HGETALL.
    for name, version in service.redis.hscan_iter(service.keys.channels, count=1000):
        channel = name.decode("utf-8", "replace")
        if pattern is None or pattern.matches(channel):
            entries.append({"channel": channel, "version": int(version)})
    entries.sort(key=lambda entry: entry["channel"])
    return jsonify({"channels": entries})


@channels.get("/v1/channels/<channel:channel>")
def get_channel(channel: str):
    try:
        validate_channel(channel)
    except InvalidChannelError as error:
        return invalid_channel(error)
    service = gateway()
    pipe = service.redis.pipeline(transaction=True)
    pipe.get(service.keys.epoch)
    pipe.hmget(service.keys.state(channel), "version", "seq", "doc")
    epoch, (version, seq, document) = pipe.execute()
    if version is None or document is None or epoch is None:
        alias = service.aliases.get(channel)
        if alias is not None:
            return json_error(404, "channel_is_alias",
                              f"{channel!r} is an alias of {alias.target!r}; read that channel",
                              channel=channel, target=alias.target)
        return json_error(404, "channel_not_found", f"channel {channel!r} has no state",
                          channel=channel)
    try:
        document = compact_json(document)
    except FrameError as error:
        return json_error(500, "invalid_state",
                          f"stored document of {channel!r} is invalid: {error}")
    token = format_event_id(epoch.decode("ascii", "replace"), int(seq))
    # The stored document is JSON text already; it is spliced in unparsed.
    body = b'{"channel":%s,"version":%d,"id":%s,"data":%s}' % (
        orjson.dumps(channel), int(version), orjson.dumps(token), document,
    )
    return Response(body, mimetype="application/json")

