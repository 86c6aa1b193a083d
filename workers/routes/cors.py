"""CORS: which browser origins may read streams and call the API.

Only origins listed in ``LIVEGATE_CORS_ORIGINS`` get CORS headers. A
request from any other origin gets its usual response without them, so the
browser keeps that response from the page. Listed origins may send
credentials (the subscriber token cookie with ``EventSource(url,
{withCredentials: true})``), which is why the list is exact and ``*`` is not
accepted. With CORS on, every response carries ``Vary: Origin`` so that a
shared cache never hands one origin's response to another.
"""

from __future__ import annotations

from flask import Flask, Response, request

ALLOWED_METHODS = "GET, POST, OPTIONS"
# Authorization and Content-Type for the publish API; Last-Event-ID and
# Cache-Control for EventSource polyfills that send them as real headers.
ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID, Cache-Control"
# Response headers a page's script may read besides the CORS-safelisted ones.
EXPOSED_HEADERS = "Retry-After, WWW-Authenticate"


def install_cors(app: Flask, origins: tuple[str, ...], max_age: int) -> None:
    """Add CORS headers to the app's responses for ``origins``; do nothing when it is empty."""
    if not origins:
        return
    allowed = frozenset(origins)

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin is None or origin not in allowed:
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            # A preflight. Flask responds to OPTIONS itself for every route,
            # without running the view, so no token is needed here.
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(max_age)
        else:
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
