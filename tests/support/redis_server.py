"""A private redis-server process for integration tests.

Each RedisServer listens on 127.0.0.1 on a port of its own and keeps its dump file and
log in a directory of its own, so tests never touch a Redis that they did not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ingest.local_redis import (  # noqa: F401  (re-exported for the fixtures)
    BINARY_ENV_VAR,
    INSTALL_HINT,
    RedisServerNotFound,
    bundled_redis_server,
    find_redis_server,
)

from .ports import free_port

HOST = "127.0.0.1"
DUMP_FILENAME = "dump.rdb"


class RedisServerError(RuntimeError):
    """A redis-server process failed to start or to stop."""


def _read_tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"({path} is empty)"


class RedisServer:
    """A redis-server child process on 127.0.0.1 with persistence off.

    The port is picked once (or given) and kept across stop, start and restart, so
    clients and gateways configured with `url` reconnect to the same address. Nothing is
    saved to disk unless `restart(keep_data=True)` or the caller runs SAVE.

    Use it as a context manager, or call start() and close(). close() stops the process
    and removes the data directory when this object created it.
    """

    def __init__(
        self,
        port: Optional[int] = None,
        data_dir: Optional[os.PathLike[str] | str] = None,
        binary: Optional[str] = None,
        start_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary or find_redis_server()
        self.port = port if port is not None else free_port(HOST)
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)

        if data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="livegate-redis-"))
            self._owns_data_dir = True
        else:
            self.data_dir = Path(data_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._owns_data_dir = False

        # redis-server writes its own log to log_path once its configuration is parsed.
        # Errors before that (an unknown option, say) go to stderr, kept in stderr_path.
        self.log_path = self.data_dir / "redis.log"
        self.stderr_path = self.data_dir / "redis.stderr.log"
        self.dump_path = self.data_dir / DUMP_FILENAME
        self._process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """Connection URL of database 0, for redis-py and for the gateway's REDIS_URL."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> Optional[int]:
        """PID of the running process, or None when it is not running."""
        if self.is_running():
            assert self._process is not None
            return self._process.pid
        return None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a new redis-py client for `url`. Keyword arguments go to Redis.from_url."""
        return redis.Redis.from_url(self.url, **kwargs)

    def command_line(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
            "--dbfilename", DUMP_FILENAME,
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the server log and of its stderr, labelled."""
        return (
            f"--- {self.log_path} ---\n{_read_tail(self.log_path, lines)}\n"
            f"--- {self.stderr_path} ---\n{_read_tail(self.stderr_path, lines)}"
        )

    def start(self) -> "RedisServer":
        """Start redis-server and wait until it replies to PING.

        Raises RedisServerError with the log tail if the process exits first or does not
        reply within `start_timeout` seconds. The process is killed before raising.
        """
        if self.is_running():
            raise RedisServerError(f"redis-server is already running on port {self.port} (pid {self.pid})")

        with open(self.stderr_path, "ab") as stderr:
            self._process = subprocess.Popen(
                self.command_line(),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=self.data_dir,
            )

        try:
            self._wait_until_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        # One attempt per PING with short socket timeouts: redis-py's default retry
        # policy would stretch each failed attempt to seconds.
        probe = redis.Redis(
            host=HOST,
            port=self.port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        deadline = time.monotonic() + self.start_timeout
        last_error: Optional[Exception] = None
        try:
            while True:
                returncode = self._process.poll()
                if returncode is not None:
                    raise RedisServerError(
                        f"redis-server exited with code {returncode} during start on port {self.port}.\n"
                        f"{self.log_tail()}"
                    )
                try:
                    if probe.ping():
                        return
                except redis.exceptions.ConnectionError as error:
                    # Includes BusyLoadingError, which redis-server returns while it
                    # loads a dump file.
                    last_error = error
                except redis.exceptions.TimeoutError as error:
                    last_error = error

                if time.monotonic() >= deadline:
                    raise RedisServerError(
                        f"redis-server on port {self.port} did not reply to PING within "
                        f"{self.start_timeout:g} s (last error: {last_error!r}).\n{self.log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            probe.close()

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """Send SIGTERM and wait up to `timeout` seconds, then SIGKILL.

        Returns the exit code, or None if the server was not started. With the default
        `--save ""`, redis-server does not write a dump on SIGTERM.
        """
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            # A process stopped by pause() handles SIGTERM only after SIGCONT.
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        return process.returncode

    def kill(self) -> Optional[int]:
        """Send SIGKILL, as a crash would, and wait for the process to exit.

        Returns the exit code, or None if the server was not started.
        """
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        return process.returncode

    def pause(self) -> None:
        """Send SIGSTOP to simulate a hung Redis.

        The kernel still completes TCP handshakes, but no command gets a reply until
        resume()."""
        if not self.is_running():
            raise RedisServerError(f"redis-server on port {self.port} is not running")
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Send SIGCONT to a server stopped by pause()."""
        if not self.is_running():
            raise RedisServerError(f"redis-server on port {self.port} is not running")
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def save(self) -> None:
        """Run SAVE, which writes the dataset to `dump_path` before returning."""
        with self.client(socket_timeout=30) as connection:
            connection.save()

    def restart(self, keep_data: bool) -> "RedisServer":
        """Stop the server and start it again on the same port with the same directory.

        With keep_data, a running server runs SAVE first and the new process loads the
        dump, so keys come back. A server that is already stopped starts from whatever
        dump is on disk. Without keep_data, the dump is deleted and the server starts
        empty. Returns self once the new process replies to PING.
        """
        if keep_data and self.is_running():
            self.save()
        self.stop()
        if not keep_data:
            self.dump_path.unlink(missing_ok=True)
        return self.start()

    def close(self) -> None:
        """Stop the server and remove the data directory if this object created it."""
        try:
            self.stop()
        finally:
            if self._owns_data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisServer(url={self.url!r}, pid={self.pid}, data_dir={str(self.data_dir)!r})"
