"""Resource meter: memory (PSS) and CPU time of a whole process tree.

A pod is a root process and all of its descendants: the gunicorn master,
the fan-out subscriber and the workers for livegate, the master and its
workers for a gunicorn peer, the nginx master and its workers for nchan.
PSS (proportional set size, from ``/proc/PID/smaps_rollup``) splits each
shared page between the processes that map it, so the sum over the tree
counts the shared ring and copy-on-write pages once. CPU time is user plus
system time from ``/proc/PID/stat``.

A sampling thread reads the tree once a second. CPU time of a process that
exits between two samples is lost from the sum after its last sample, so
the meter counts the processes it saw exit.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    at: float              # time.monotonic() of the sample
    pss_bytes: int
    cpu_seconds: float
    processes: int

    def to_json(self) -> dict:
        return {"at": round(self.at, 3), "pss_bytes": self.pss_bytes,
                "cpu_seconds": round(self.cpu_seconds, 4), "processes": self.processes}


def descendants(root: int) -> list[int]:
    """Return ``root`` and every live descendant, from /proc's children lists."""
    found = [root]
    position = 0
    # A pod has a few dozen processes. The bound only stops a loop if /proc
    # ever reported a cycle.
    while position < len(found) and len(found) < 10_000:
        pid = found[position]
        position += 1
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as file:
                    found.extend(int(child) for child in file.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return list(dict.fromkeys(found))


def read_pss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as file:
            for line in file:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def read_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            text = file.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name in brackets may contain spaces, so fields are counted
    # after its closing bracket: utime and stime, fields 14 and 15 of
    # proc(5), are the 12th and 13th there.
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class TreeMeter:
    """Samples one process tree once per ``interval`` seconds in a background thread."""

    root: int
    interval: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    exited: set[int] = field(default_factory=set)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    def sample(self) -> Sample:
        """Read the tree now, store the sample and return it."""
        pids = descendants(self.root)
        pss = 0
        cpu = 0.0
        alive = set()
        for pid in pids:
            memory = read_pss_bytes(pid)
            seconds = read_cpu_seconds(pid)
            if memory is None or seconds is None:
                continue
            alive.add(pid)
            pss += memory
            cpu += seconds
        sample = Sample(time.monotonic(), pss, cpu, len(alive))
        with self._lock:
            self.exited |= self._seen - alive
            self._seen = alive
            self.samples.append(sample)
        return sample

    def start(self) -> "TreeMeter":
        self._thread = threading.Thread(target=self._run, name=f"meter-{self.root}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        # Ends at stop(), which every run calls in its cleanup.
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def series(self, since: float | None = None) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if since is None or s.at >= since]


def median_pss(samples: list[Sample]) -> int | None:
    values = [s.pss_bytes for s in samples]
    return int(statistics.median(values)) if values else None


def memory_drift(samples: list[Sample], edge: int = 10) -> float | None:
    """Return the relative change of PSS from the first to the last ``edge`` samples."""
    if len(samples) < 2 * edge:
        edge = max(1, len(samples) // 4)
    if len(samples) < 2:
        return None
    first = statistics.median(s.pss_bytes for s in samples[:edge])
    last = statistics.median(s.pss_bytes for s in samples[-edge:])
    return (last - first) / first if first else None
