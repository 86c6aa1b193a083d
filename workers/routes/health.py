"""``/healthz`` (process alive) and ``/readyz`` (able to serve streams)."""

from __future__ import annotations

import redis
from flask import Blueprint

from workers import hub as worker_hub
from workers.routes.errors import json_error
from workers.routes.gateway import gateway

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    return {"status": "ok"}


@health.get("/readyz")
def readyz():
    """Ready when Redis answers and the pod's subscriber is alive, connected and current."""
    try:
        gateway().redis.ping()
    except redis.RedisError as error:
        return json_error(503, "not_ready", f"redis is unreachable: {error}")
    hub = worker_hub.current()
    if hub is None:
        return json_error(503, "not_ready", "no ring: run under gunicorn with gunicorn.conf.py")
    if hub.stopping:
        return json_error(503, "not_ready", "worker is shutting down")
    ready, reason = hub.subscriber_ready()
    if not ready:
        return json_error(503, "not_ready", reason)
    return {"status": "ready", "subscriber": reason}
