"""Tokens in requests, the 401 and 403 responses, and the log of rejected requests.

The checks themselves are in ``livegate.auth``. Rejections (401, 403, and
the stream limits' 429 and 503) are logged with the client address and the
token's fingerprint, never the token, at most LOG_LIMIT lines a minute per
worker so that a client trying tokens cannot flood the log.
"""

from __future__ import annotations

import logging
import time

from flask import Request, Response

from livegate.auth import AccessError, AuthenticationError, AuthorizationError, token_fingerprint
from workers.routes.errors import json_error

log = logging.getLogger(__name__)

LOG_LIMIT = 10
LOG_WINDOW = 60.0
# The query parameter that may carry a subscriber token (EventSource cannot set headers).
TOKEN_PARAMETER = "token"


def bearer_token(request: Request) -> str | None:
    """Return the token of an ``Authorization: Bearer`` header, or None."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value


def subscriber_token(request: Request, cookie_name: str) -> str | None:
    """Return the subscriber token from the header, else the query, else the cookie."""
    return (
        bearer_token(request)
        or request.args.get(TOKEN_PARAMETER)
        or request.cookies.get(cookie_name)
        or None
    )


def access_error(error: AccessError) -> Response:
    """Build the JSON 401 or 403 response, with the RFC 6750 ``WWW-Authenticate`` challenge."""
    response = json_error(error.status, error.code, error.message, **error.fields)
    challenge = 'Bearer realm="livegate"'
    if isinstance(error, AuthorizationError):
        challenge += ', error="insufficient_scope"'
    elif isinstance(error, AuthenticationError) and error.token_presented:
        challenge += ', error="invalid_token"'
    response.headers["WWW-Authenticate"] = challenge
    return response


class RejectionLog:
    """Warning log of rejected requests, at most LOG_LIMIT lines a minute."""

    def __init__(self) -> None:
        self._window_start = 0.0
        self._logged = 0
        self._suppressed = 0

    def record(self, what: str, status: int, reason: str, remote: str,
               token: str | None = None) -> None:
        now = time.monotonic()
        if now - self._window_start >= LOG_WINDOW:
            if self._suppressed:
                log.warning("%d more rejected requests were not logged in the last minute",
                            self._suppressed)
            self._window_start = now
            self._logged = 0
            self._suppressed = 0
        if self._logged >= LOG_LIMIT:
            self._suppressed += 1
            return
        self._logged += 1
        fingerprint = token_fingerprint(token) if token else "none"
        log.warning("%s rejected with %d from %s (token fingerprint %s): %s",
                    what, status, remote, fingerprint, reason)


rejections = RejectionLog()
