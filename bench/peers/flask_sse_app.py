"""Flask-SSE peer: the library's stream view as its documentation sets it up.

Serve with gunicorn's gevent worker (bench.targets.FlaskSseTarget does):
``GET /stream?channel=C`` streams channel ``C``. Flask-SSE subscribes one
Redis Pub/Sub connection per stream and publishes with ``sse.publish``;
``bench.publish`` calls that inside this app's context. ``REDIS_URL``
names the benchmark's private Redis.
"""

from __future__ import annotations

import os

from flask import Flask
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ.get("REDIS_URL", "")
app.register_blueprint(sse, url_prefix="/stream")


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
