"""Pod-level resources that the gunicorn master creates before forking.

The master creates the ring and starts the subscriber in ``start``; forked
workers inherit the mapping and find it through ``ring()``. The master
also hands each worker a reader slot in the ring header, so workers never
race to claim one.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile

from fanout.ring import MAX_SLOTS, Ring, capacity_from_mib
from fanout.supervisor import SubscriberSupervisor
from livegate.settings import Settings

log = logging.getLogger(__name__)

_ring: Ring | None = None
_supervisor: SubscriberSupervisor | None = None
_free_slots: list[int] = []
# A metrics folder this master created itself, removed again at exit.
_created_metrics_dir: str | None = None


def start(settings: Settings) -> None:
    """Create the ring and start the subscriber. Called once, in the master."""
    global _ring, _supervisor, _free_slots
    prepare_metrics_dir(settings)
    _ring = Ring.create(capacity_from_mib(settings.ring_size_mb))
    _free_slots = list(range(MAX_SLOTS))
    _supervisor = SubscriberSupervisor(_ring.fd, on_exit=forget_process)
    _supervisor.start()
    log.info("pod started: ring %s of %d MiB", _ring.ring_id, settings.ring_size_mb)


def prepare_metrics_dir(settings: Settings) -> str:
    """Create or empty the Prometheus multiprocess folder and export its path.

    prometheus_client reads PROMETHEUS_MULTIPROC_DIR when it is imported,
    so this runs in the master before the subscriber starts and workers
    fork; both inherit the variable. Files of an earlier master would add
    stale counts, so they are removed.
    """
    global _created_metrics_dir
    path = settings.metrics_dir
    if not path:
        path = _created_metrics_dir = tempfile.mkdtemp(prefix="livegate-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")) + glob.glob(
        os.path.join(path, "status_*.json")
    ):
        os.remove(stale)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    log.info("metrics folder %s", path)
    return path


def forget_process(pid: int) -> None:
    """Drop the live gauges and status file of a worker or subscriber that exited."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)
    try:
        os.remove(os.path.join(path, f"status_{pid}.json"))
    except FileNotFoundError:
        pass


def stop() -> None:
    if _supervisor is not None:
        _supervisor.stop()
    if _created_metrics_dir is not None:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)


def ring() -> Ring | None:
    return _ring


def assign_slot() -> int | None:
    """Take a free reader slot for a worker about to fork, or None when all are taken."""
    if not _free_slots:
        log.warning("all %d ring reader slots are taken; the new worker polls the ring",
                    MAX_SLOTS)
        return None
    return _free_slots.pop(0)


def release_slot(slot: int | None) -> None:
    if slot is None or _ring is None:
        return
    _ring.release_slot(slot)
    if slot not in _free_slots:
        _free_slots.append(slot)
        _free_slots.sort()
