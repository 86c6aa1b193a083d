"""Stopping child processes that tests start themselves."""

from __future__ import annotations

import subprocess
import threading
from typing import Iterable


def stop_process(process: subprocess.Popen, readers: Iterable[threading.Thread] = (),
                 timeout: float = 5.0) -> None:
    """Stop ``process`` with SIGTERM, or SIGKILL after ``timeout`` seconds, then join its readers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    for thread in readers:
        thread.join(timeout=2)
