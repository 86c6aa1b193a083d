"""The servers under test: livegate and its peers, and their private Redis.

Each target starts its own process tree on a free loopback port and waits
until it responds to HTTP. It stops only the processes it started, by PID:
SIGTERM (SIGQUIT for nginx) to the root, then SIGKILL to every descendant
still alive after a grace period. A peer that is not installed is
installed first (pip for Flask-SSE, apt-get for nginx and nchan); when
that fails the target raises TargetUnavailable with the reason, and the
run reports the peer as unavailable instead of stopping.
"""

from __future__ import annotations

import http.client
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.meter import descendants
from ingest.local_redis import free_port, start_redis_server

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(__file__).resolve().parent / "peers"
HOST = "127.0.0.1"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 40.0


class TargetUnavailable(RuntimeError):
    """A target cannot be installed or started on this machine."""


def _raise_nofile_limit() -> None:
    """In a child before exec: raise the soft open-file limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def http_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    """Return the status code of GET ``path`` on the loopback ``port``, or None when unreachable."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def http_text(port: int, path: str, timeout: float = 5.0) -> str | None:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.read().decode("utf-8", "replace") if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


class ProcessTree:
    """A root process started in its own session, and the descendants it forks."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str],
                 cwd: Path, stop_signal: int = signal.SIGTERM):
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.process: subprocess.Popen | None = None
        self._seen: set[int] = set()

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def start(self) -> None:
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_raise_nofile_limit,
            )
        log.info("%s started pid=%s: %s", self.name, self.process.pid, " ".join(self.command))

    def remember_children(self) -> list[int]:
        """Record the current descendants, so that stop() can end them by PID."""
        if self.process is None or self.process.poll() is not None:
            return []
        pids = descendants(self.process.pid)
        self._seen.update(pids)
        return pids

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def wait_until(self, ready, timeout: float = READY_TIMEOUT) -> None:
        """Poll ``ready()`` until it is true; raise TargetUnavailable if the root exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited():
                raise TargetUnavailable(
                    f"{self.name} exited with code {self.process.returncode} during start; "
                    f"log {self.log_path}:\n{self.log_tail()}")
            if ready():
                self.remember_children()
                return
            time.sleep(0.2)
        self.stop()
        raise TargetUnavailable(f"{self.name} did not become ready within {timeout:.0f} s; "
                                f"log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        process = self.process
        if process is None:
            return
        self.remember_children()
        if process.poll() is None:
            try:
                os.kill(process.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s pid=%s did not stop within %.0f s; killing it",
                            self.name, process.pid, timeout)
                process.kill()
                process.wait(timeout=10)
        # Descendants that outlived the root (a worker stuck in a write).
        deadline = time.monotonic() + 5
        for pid in sorted(self._seen - {process.pid}):
            while _alive_and_ours(pid, process.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive_and_ours(pid, process.pid):
                log.warning("%s: killing leftover pid=%s", self.name, pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._seen.clear()


def _alive_and_ours(pid: int, session: int) -> bool:
    """True while ``pid`` lives in the session that ``session`` leads (so it was not reused)."""
    try:
        return os.getsid(pid) == session
    except ProcessLookupError:
        return False


# -- Redis --------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this run on a free port, never on the default ports."""

    def __init__(self, work_dir: Path):
        self.dir = work_dir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> "PrivateRedis":
        if self.port in (6379, 6399):
            raise RuntimeError(f"free_port() returned {self.port}, a shared Redis port")
        self.process = start_redis_server(self.port, str(self.dir))
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# -- targets --------------------------------------------------------------------------


class Target:
    """One server under test. Subclasses set ``name`` and build the process tree."""

    name = ""
    # Whether the target sends a snapshot of each channel on connect.
    sends_snapshots = True
    # Whether the response headers leave before the first event.
    headers_at_once = True

    def __init__(self, work_dir: Path, redis: PrivateRedis, workers: int):
        self.work_dir = work_dir
        self.redis = redis
        self.workers = workers
        self.port = free_port()
        self.tree: ProcessTree | None = None

    @property
    def root_pid(self) -> int:
        return self.tree.pid

    def stream_path(self, subscription: str) -> str:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.tree is not None:
            self.tree.stop()

    def open_streams(self) -> int | None:
        """Return the open streams the target itself reports, or None when it reports none."""
        return None

    def describe(self) -> dict:
        return {"name": self.name, "workers": self.workers, "port": self.port}


class LivegateTarget(Target):
    name = "livegate"

    def __init__(self, work_dir: Path, redis: PrivateRedis, workers: int,
                 env: dict[str, str] | None = None):
        super().__init__(work_dir, redis, workers)
        self.extra_env = dict(env or {})

    def stream_path(self, subscription: str) -> str:
        return f"/v1/stream?channel={subscription}"

    def start(self) -> None:
        env = dict(os.environ)
        env.update({"REDIS_URL": self.redis.url, "PYTHONUNBUFFERED": "1",
                    "LIVEGATE_METRICS_DIR": str(self.work_dir / f"metrics-{self.port}")})
        env.update(self.extra_env)
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app",
                   "--bind", f"{HOST}:{self.port}", "--workers", str(self.workers),
                   "--no-control-socket"]
        self.tree = ProcessTree(self.name, command, self.work_dir / f"livegate-{self.port}.log",
                                env, REPO_ROOT)
        self.tree.start()
        self.tree.wait_until(lambda: http_status(self.port, "/readyz") == 200)

    def open_streams(self) -> int | None:
        text = http_text(self.port, "/metrics")
        if text is None:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith("livegate_connections{") or line.startswith("livegate_connections "):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)


class FlaskSseTarget(Target):
    """Flask-SSE 1.0 under gunicorn's gevent worker, one Redis subscription per stream."""

    name = "flask-sse"
    sends_snapshots = False
    # Flask-SSE's generator yields nothing until the first message, and
    # gunicorn sends the headers with the first chunk of the body.
    headers_at_once = False

    def stream_path(self, subscription: str) -> str:
        return f"/stream?channel={subscription}"

    def start(self) -> None:
        ensure_flask_sse()
        env = dict(os.environ)
        env.update({"REDIS_URL": self.redis.url, "PYTHONUNBUFFERED": "1"})
        command = [sys.executable, "-m", "gunicorn", "--worker-class", "gevent",
                   "--worker-connections", "10000", "--workers", str(self.workers),
                   "--bind", f"{HOST}:{self.port}", "--timeout", "60", "--graceful-timeout", "5",
                   "--no-control-socket", "bench.peers.flask_sse_app:app"]
        self.tree = ProcessTree(self.name, command, self.work_dir / f"flask-sse-{self.port}.log",
                                env, REPO_ROOT)
        self.tree.start()
        self.tree.wait_until(lambda: http_status(self.port, "/healthz") == 200)


class NchanTarget(Target):
    """nginx with the nchan module, its in-memory message store, publishing over HTTP."""

    name = "nchan"

    def stream_path(self, subscription: str) -> str:
        return f"/sub/{subscription}"

    def start(self) -> None:
        nginx = ensure_nginx_nchan()
        prefix = Path(tempfile.mkdtemp(prefix=f"nchan-{self.port}-", dir=self.work_dir))
        (prefix / "logs").mkdir()
        config = render_nchan_config(port=self.port, prefix=prefix, workers=self.workers)
        config_path = prefix / "nchan.conf"
        config_path.write_text(config)
        command = [nginx, "-p", str(prefix), "-c", str(config_path),
                   "-e", str(prefix / "logs" / "error.log")]
        self.tree = ProcessTree(self.name, command, prefix / "logs" / "stdout.log",
                                dict(os.environ), prefix, stop_signal=signal.SIGQUIT)
        self.tree.start()
        self.tree.wait_until(lambda: http_status(self.port, "/healthz") == 200)

    def describe(self) -> dict:
        described = super().describe()
        described["version"] = _command_output(["nginx", "-v"])
        return described


TARGETS = {"livegate": LivegateTarget, "flask-sse": FlaskSseTarget, "nchan": NchanTarget}


def render_nchan_config(port: int, prefix: Path, workers: int) -> str:
    template = (PEERS_DIR / "nchan.conf").read_text()
    values = {"port": str(port), "prefix": str(prefix), "workers": str(workers),
              "module": str(NCHAN_MODULE)}
    for name, value in values.items():
        template = template.replace("@" + name.upper() + "@", value)
    return template


# -- installing peers ---------------------------------------------------------------


def _command_output(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    return (completed.stdout + completed.stderr).strip()


def ensure_flask_sse() -> None:
    """Install the pinned Flask-SSE into this interpreter's environment when it is missing."""
    check = subprocess.run([sys.executable, "-c", "import flask_sse"], capture_output=True)
    if check.returncode == 0:
        return
    requirements = REPO_ROOT / "requirements-bench.txt"
    log.info("Flask-SSE is missing; installing %s", requirements)
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(requirements)], capture_output=True, text=True, timeout=600)
    if completed.returncode != 0:
        raise TargetUnavailable(f"pip install -r {requirements} failed: "
                                f"{completed.stderr.strip()[-500:]}")


def ensure_nginx_nchan() -> str:
    """Return the nginx binary, installing nginx and nchan with apt-get when missing."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx and NCHAN_MODULE.exists():
        return nginx
    if os.geteuid() != 0:
        raise TargetUnavailable("nginx or its nchan module is missing and installing them "
                                "needs root: apt-get install nginx libnginx-mod-nchan")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "nginx",
               "libnginx-mod-nchan"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    completed = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if completed.returncode != 0:
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=900)
        completed = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if completed.returncode != 0 or not nginx or not NCHAN_MODULE.exists():
        raise TargetUnavailable("apt-get install nginx libnginx-mod-nchan failed: "
                                f"{completed.stderr.strip()[-500:]}")
    return nginx
