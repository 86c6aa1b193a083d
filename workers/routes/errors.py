"""JSON errors shared by the routes: ``{"error": CODE, "message": TEXT, ...}``."""

from __future__ import annotations

from flask import Response, jsonify

from livegate.channels import InvalidChannelError


def json_error(status: int, code: str, message: str, **fields: object) -> Response:
    response = jsonify({"error": code, "message": message, **fields})
    response.status_code = status
    return response


def invalid_channel(error: InvalidChannelError) -> Response:
    return json_error(400, "invalid_channel", str(error), value=error.value, reason=error.reason)
