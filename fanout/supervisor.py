"""Supervision of the subscriber process from the gunicorn master.

gunicorn's arbiter reaps every child with ``waitpid(-1)``, including
processes it did not start as workers, so a supervisor cannot learn of
the subscriber's death from ``waitpid`` of its own. A pidfd (Linux 5.3 or
newer) becomes readable when the process exits whoever reaps it, so one
daemon thread in the master waits on it and starts a new subscriber.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# A subscriber that dies again within this many seconds of its start is
# in a crash loop; the restart delay then doubles up to MAX_RESTART_DELAY,
# which stays below the two seconds within which a pod must recover.
STABLE_AFTER = 5.0
FIRST_RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 1.5
STOP_TIMEOUT = 3.0


class SubscriberSupervisor:
    """Starts the subscriber process and restarts it whenever it exits."""

    def __init__(self, ring_fd: int, on_exit=None):
        """``on_exit(pid)``, when given, runs in the watcher thread after each exit."""
        self._ring_fd = ring_fd
        self._on_exit = on_exit
        self._stopping = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        self._process = self._spawn()
        self._thread = threading.Thread(
            target=self._watch, name="livegate-subscriber-supervisor", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the subscriber: SIGTERM, then SIGKILL after STOP_TIMEOUT seconds."""
        self._stopping.set()
        process = self._process
        if process is None:
            return
        pidfd = _open_pidfd(process.pid)
        if pidfd is None:
            return
        try:
            _signal(pidfd, signal.SIGTERM)
            if not _wait_readable(pidfd, STOP_TIMEOUT):
                log.warning("subscriber pid=%s did not stop within %.0f s; killing it",
                            process.pid, STOP_TIMEOUT)
                _signal(pidfd, signal.SIGKILL)
        finally:
            os.close(pidfd)
        log.info("subscriber pid=%s stopped", process.pid)

    def _spawn(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "fanout.subscriber", "--ring-fd", str(self._ring_fd)],
            pass_fds=(self._ring_fd,),
            cwd=PROJECT_ROOT,
        )
        log.info("subscriber started pid=%s by master pid=%s", process.pid, os.getpid())
        return process

    def _watch(self) -> None:
        delay = FIRST_RESTART_DELAY
        while not self._stopping.is_set():
            process = self._process
            started = time.monotonic()
            pidfd = _open_pidfd(process.pid)
            if pidfd is not None:
                try:
                    while not self._stopping.is_set() and not _wait_readable(pidfd, 1.0):
                        pass
                    status = _exit_status(pidfd)
                finally:
                    os.close(pidfd)
            else:
                status = "exit status unknown (already reaped by the gunicorn master)"
            if self._on_exit is not None:
                self._on_exit(process.pid)
            if self._stopping.is_set():
                return

            # Phase: restart, backing off only while the subscriber crash-loops.
            if time.monotonic() - started >= STABLE_AFTER:
                delay = FIRST_RESTART_DELAY
            log.error("subscriber pid=%s exited: %s; restarting in %.1f s",
                      process.pid, status, delay)
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            self._process = self._spawn()
            delay = min(delay * 2, MAX_RESTART_DELAY)


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def _wait_readable(fd: int, timeout: float) -> bool:
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)


def _exit_status(pidfd: int) -> str:
    """Describe how the process behind ``pidfd`` ended, without reaping it.

    WNOWAIT leaves the zombie for the arbiter's own ``waitpid``, which
    otherwise could not account for it.
    """
    try:
        result = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return "exit status unknown (already reaped by the gunicorn master)"
    if result is None:
        return "exit status not yet available"
    if result.si_code == os.CLD_EXITED:
        return f"exit code {result.si_status}"
    try:
        return f"killed by {signal.Signals(result.si_status).name}"
    except ValueError:
        return f"killed by signal {result.si_status}"


def _signal(pidfd: int, signum: int) -> None:
    # Signalling through the pidfd cannot hit another process that reused the pid.
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        pass
