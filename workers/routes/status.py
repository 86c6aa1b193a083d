"""``/status``: a page for people, and ``/status.json`` behind it.

The numbers come from the same multiprocess metrics as ``/metrics``, plus
each worker's top channels, which are kept out of metric labels.
"""

from __future__ import annotations

import glob
import json
import os
import time

import redis
from flask import Blueprint, current_app

from fanout import ring as ring_layout
from workers import hub as worker_hub
from workers.routes.errors import json_error
from workers.routes.gateway import gateway
from workers.routes.metrics import pod_registry

status = Blueprint("status", __name__)

TOP_CHANNELS = 20


@status.get("/status")
def status_page():
    return current_app.send_static_file("status.html")


@status.get("/status.json")
def status_json():
    hub = worker_hub.current()
    if hub is None:
        return json_error(503, "no_ring", "status needs the gateway under gunicorn")
    per_pid = _per_worker_samples()
    workers = []
    commit = hub.ring.commit_pos
    for index, pid in hub.ring.active_slots():
        slot = hub.ring.slot_status(index)
        samples = per_pid.get(str(pid), {})
        workers.append({
            "pid": pid,
            "slot": index,
            "connections": int(samples.get("livegate_connections", 0)),
            "frames_sent": int(samples.get("livegate_worker_frames_sent", 0)),
            "ring_lag_bytes": max(0, commit - slot.read_pos),
            "ring_overruns": slot.overruns,
        })
    ready, reason = hub.subscriber_ready()
    subscriber = hub.ring.subscriber_status()
    return {
        "time": time.time(),
        "subscriber": {
            "pid": subscriber.pid,
            "ready": ready,
            "detail": reason,
            "last_seq": subscriber.last_seq,
            "epoch": subscriber.epoch,
            "heartbeat_age_seconds": round(max(0.0, time.time() - subscriber.heartbeat), 3),
            "connected": subscriber.state == ring_layout.SUBSCRIBER_CONNECTED,
        },
        "redis": _redis_state(),
        "ring": {"capacity_bytes": hub.ring.capacity, "write_position_bytes": commit},
        "workers": workers,
        "top_channels": _top_channels(),
    }


def _per_worker_samples() -> dict[str, dict[str, float]]:
    samples: dict[str, dict[str, float]] = {}
    for family in pod_registry().collect():
        for sample in family.samples:
            pid = sample.labels.get("pid")
            if pid is not None:
                samples.setdefault(pid, {})[sample.name] = sample.value
    return samples


def _redis_state() -> dict:
    try:
        gateway().redis.ping()
    except redis.RedisError as error:
        return {"ok": False, "error": str(error)}
    return {"ok": True}


def _top_channels() -> list[list]:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return []
    totals: dict[str, int] = {}
    for status_file in glob.glob(os.path.join(path, "status_*.json")):
        try:
            with open(status_file) as handle:
                entries = json.load(handle).get("top_channels", [])
        except (OSError, ValueError):
            continue
        for channel, count in entries:
            totals[channel] = totals.get(channel, 0) + int(count)
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:TOP_CHANNELS]
    return [[channel, count] for channel, count in ranked]
