"""``GET /``: the live scoreboard page.

The page and its ES modules are files in ``static/``. Flask serves the
modules under ``/static/``, and this route serves ``static/index.html`` at
the root. Its Content-Security-Policy allows scripts, styles and
connections to this origin only, because the page has no inline script or
style.
"""

from __future__ import annotations

from flask import Blueprint, current_app

pages = Blueprint("pages", __name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@pages.get("/")
def scoreboard():
    response = current_app.send_static_file("index.html")
    # Revalidate on every load, so a deploy's page and modules arrive together.
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
