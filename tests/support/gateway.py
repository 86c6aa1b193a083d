"""The real gateway under gunicorn, run as a child process for integration tests.

The master is started in a new session, so its process group contains gunicorn's
workers and the fan-out subscriber. Cleanup ends each member by PID, and it checks the
process start time so that a reused PID is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

import httpx
import psutil

from .ports import free_port
from .waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
SUBSCRIBER_MARKER = "fanout.subscriber"


class GatewayError(RuntimeError):
    """The gateway failed to start or to stop."""


class Gateway:
    """A gunicorn master running `app:app` with `gunicorn.conf.py` from `root`.

    `env` overrides the inherited environment: a value of None removes a variable, and
    other values are converted with str(). REDIS_URL is always set to `redis_url`.
    `extra_args` are appended to the gunicorn command line, where they override the
    config file. stdout and stderr of the master and its children go to `log_path`, in
    `log_dir` or else in a new temporary directory that is kept for debugging.
    """

    def __init__(
        self,
        redis_url: str,
        workers: int = 2,
        env: Optional[Mapping[str, object]] = None,
        port: Optional[int] = None,
        log_dir: Optional[os.PathLike[str] | str] = None,
        root: os.PathLike[str] | str = REPO_ROOT,
        extra_args: Sequence[str] = (),
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.redis_url = redis_url
        self.workers = workers
        self.env_overrides = dict(env or {})
        self.port = port if port is not None else free_port(HOST)
        self.root = Path(root)
        self.extra_args = list(extra_args)

        log_folder = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="livegate-gateway-"))
        log_folder.mkdir(parents=True, exist_ok=True)
        self.log_path = log_folder / f"gateway-{self.port}.log"

        self._process: Optional[subprocess.Popen[bytes]] = None
        self._master: Optional[psutil.Process] = None
        # Every child seen while the master ran, by PID. psutil.Process compares the
        # start time before signalling, so an entry whose PID was reused is skipped.
        self._seen_children: dict[int, psutil.Process] = {}
        # PIDs that stop() had to kill because they outlived the master's exit.
        self.killed_stragglers: list[int] = []

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        """PID of the gunicorn master, or None before start()."""
        return self._process.pid if self._process is not None else None

    def command_line(self) -> list[str]:
        command = [
            sys.executable, "-m", "gunicorn",
            "-c", "gunicorn.conf.py",
            "app:app",
            "--bind", f"{HOST}:{self.port}",
            "--workers", str(self.workers),
        ]  # fmt: skip
        # gunicorn 25.1+ opens a control socket at one fixed path per user by default
        # ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl), which concurrent
        # test gateways would share. Pass --control-socket PATH in extra_args to get one.
        if "--control-socket" not in self.extra_args:
            command.append("--no-control-socket")
        command.extend(self.extra_args)
        return command

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # Children write logs straight to log_path, so a test can read them while the
        # gateway runs.
        env["PYTHONUNBUFFERED"] = "1"
        env["REDIS_URL"] = self.redis_url
        for name, value in self.env_overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        return env

    def log_text(self) -> str:
        """Return everything the gateway has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = self.log_text().splitlines()[-lines:]
        body = "\n".join(tail) if tail else "(empty)"
        return f"--- {self.log_path} ---\n{body}"

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        """Wait until `text` appears in the log. Raises TimeoutError with the log tail."""
        try:
            wait_for(lambda: text in self.log_text(), timeout=timeout, interval=0.1)
        except TimeoutError:
            raise TimeoutError(f"{text!r} did not appear in the gateway log within {timeout:g} s.\n{self.log_tail()}") from None

    def is_running(self) -> bool:
        """Whether the master process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> "Gateway":
        """Start gunicorn and wait until GET /readyz returns 200.

        Raises GatewayError with the log tail if the master exits first or /readyz does
        not return 200 within `timeout` seconds. Every process started is killed before
        raising. A stopped gateway can be started again: it keeps its port and appends to
        the same log.
        """
        if self.is_running():
            raise GatewayError(f"gateway on port {self.port} is already running (master pid {self.pid})")

        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command_line(),
                cwd=self.root,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._master = psutil.Process(self._process.pid)
        except psutil.NoSuchProcess:
            self._master = None

        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.cleanup()
            raise
        self.children()
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        last_outcome = "no request sent"
        with httpx.Client(timeout=httpx.Timeout(1.0, connect=0.5)) as client:
            while True:
                self.children()
                returncode = self._process.poll()
                if returncode is not None:
                    raise GatewayError(
                        f"gunicorn exited with code {returncode} during start on port {self.port}.\n{self.log_tail()}"
                    )
                try:
                    response = client.get(f"{self.url}/readyz")
                    if response.status_code == 200:
                        return
                    last_outcome = f"HTTP {response.status_code}: {response.text[:200]!r}"
                except httpx.TransportError as error:
                    last_outcome = repr(error)

                if time.monotonic() >= deadline:
                    raise GatewayError(
                        f"GET {self.url}/readyz did not return 200 within {timeout:g} s "
                        f"(last outcome: {last_outcome}).\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def children(self) -> list[psutil.Process]:
        """Return the live direct children of the master and remember them for cleanup.

        Zombies (exited but not yet reaped by the master) are left out.
        """
        if self._master is None or not self.is_running():
            return []
        try:
            found = self._master.children(recursive=False)
        except psutil.NoSuchProcess:
            return []

        alive = []
        for child in found:
            self._seen_children.setdefault(child.pid, child)
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
            except psutil.NoSuchProcess:
                continue
        return alive

    @staticmethod
    def _is_subscriber(child: psutil.Process) -> Optional[bool]:
        """Whether the child runs the fan-out subscriber, or None if it has exited."""
        try:
            return any(SUBSCRIBER_MARKER in part for part in child.cmdline())
        except psutil.NoSuchProcess:
            return None

    def worker_pids(self) -> list[int]:
        """Return the PIDs of the live gunicorn workers: every child but the subscriber."""
        return sorted(child.pid for child in self.children() if self._is_subscriber(child) is False)

    def subscriber_pid(self) -> Optional[int]:
        """Return the PID of the live child whose command line contains `fanout.subscriber`,
        or None if there is none."""
        subscribers = [child.pid for child in self.children() if self._is_subscriber(child)]
        if len(subscribers) > 1:
            raise GatewayError(f"expected one fan-out subscriber process, found PIDs {subscribers}")
        return subscribers[0] if subscribers else None

    def wait_for_workers(self, count: Optional[int] = None, timeout: float = 10.0) -> list[int]:
        """Wait until exactly `count` workers (default: `workers`) are alive. Returns their PIDs."""
        expected = self.workers if count is None else count
        if expected < 1:
            raise ValueError(f"count must be >= 1, got {expected}")

        def expected_workers_alive() -> Optional[list[int]]:
            pids = self.worker_pids()
            return pids if len(pids) == expected else None

        return wait_for(
            expected_workers_alive,
            timeout=timeout,
            interval=0.1,
            message=f"{expected} gunicorn workers on port {self.port}",
        )

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        """Send SIGTERM to the master and wait up to `timeout` seconds for it to exit.

        Children still alive once the master has exited get the rest of `timeout` to
        exit, then SIGKILL, and their PIDs are added to `killed_stragglers`. Returns the
        master's exit code, or None if it was never started. Raises GatewayError, after
        killing every process, if the master does not exit in time.
        """
        process = self._process
        if process is None:
            return None
        self.children()
        deadline = time.monotonic() + timeout

        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.cleanup()
                raise GatewayError(
                    f"gunicorn master {process.pid} did not exit within {timeout:g} s of SIGTERM "
                    f"and was killed.\n{self.log_tail()}"
                ) from None

        remaining = max(0.0, deadline - time.monotonic())
        _, alive = psutil.wait_procs(self._tracked_processes(), timeout=remaining)
        for straggler in alive:
            self.killed_stragglers.append(straggler.pid)
        self.cleanup()
        return process.returncode

    def kill(self) -> None:
        """Send SIGKILL to the master only, as a crash would. Its children keep running
        until they notice, and cleanup() ends any that do not."""
        process = self._process
        if process is None:
            return
        self.children()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def _tracked_processes(self) -> list[psutil.Process]:
        """Return every live process this gateway started: seen children, and members of
        the master's process group that started no earlier than the master did."""
        tracked: dict[int, psutil.Process] = {}
        for pid, child in self._seen_children.items():
            if child.is_running():
                tracked[pid] = child

        if self._master is not None:
            group_id = self._master.pid
            master_started = self._master.create_time()
            for candidate in psutil.process_iter(["create_time"]):
                if candidate.pid in tracked or candidate.pid == group_id:
                    continue
                try:
                    same_group = os.getpgid(candidate.pid) == group_id
                except (ProcessLookupError, PermissionError):
                    continue
                started = candidate.info["create_time"]
                if same_group and started is not None and started >= master_started:
                    tracked[candidate.pid] = candidate
        return list(tracked.values())

    def cleanup(self) -> None:
        """Kill the master and every process it started that is still alive, by PID."""
        process = self._process
        if process is None:
            return
        self.children()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

        remaining = self._tracked_processes()
        for leftover in remaining:
            try:
                leftover.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(remaining, timeout=5)

    def __enter__(self) -> "Gateway":
        if self._process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            self.cleanup()

    def __repr__(self) -> str:
        return f"Gateway(url={self.url!r}, master_pid={self.pid}, log_path={str(self.log_path)!r})"
