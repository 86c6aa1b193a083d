"""A private Redis Sentinel process for integration tests.

The same redis-server binary runs as a sentinel when started with a
configuration file and ``--sentinel``. The sentinel rewrites that file as
its view changes, so each SentinelServer writes its own copy into a
directory of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .ports import free_port
from .redis_server import HOST, RedisServerError, _read_tail, find_redis_server


class SentinelServer:
    """A sentinel on 127.0.0.1 that monitors one primary under ``service``.

    ``down_after_ms`` is how long the primary must be silent before the
    sentinel calls it down; ``failover_timeout_ms`` bounds one failover
    attempt. A quorum of 1 lets this one sentinel decide alone.
    """

    def __init__(
        self,
        primary_port: int,
        service: str = "mymaster",
        port: Optional[int] = None,
        data_dir: Optional[os.PathLike[str] | str] = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        start_timeout: float = 10.0,
    ) -> None:
        self.binary = find_redis_server()
        self.primary_port = primary_port
        self.service = service
        self.port = port if port is not None else free_port(HOST)
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.start_timeout = start_timeout
        if data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="livegate-sentinel-"))
            self._owns_data_dir = True
        else:
            self.data_dir = Path(data_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._owns_data_dir = False
        self.config_path = self.data_dir / "sentinel.conf"
        self.log_path = self.data_dir / "sentinel.log"
        self.stderr_path = self.data_dir / "sentinel.stderr.log"
        self._process: Optional[subprocess.Popen[bytes]] = None

    @property
    def address(self) -> str:
        """``host:port``, as LIVEGATE_REDIS_SENTINELS takes it."""
        return f"{HOST}:{self.port}"

    def write_config(self) -> None:
        self.config_path.write_text(
            f"port {self.port}\n"
            f"bind {HOST}\n"
            "daemonize no\n"
            f"logfile {self.log_path}\n"
            f"dir {self.data_dir}\n"
            f"sentinel monitor {self.service} {HOST} {self.primary_port} 1\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}\n"
        )

    def client(self) -> redis.Redis:
        """Return a client of the sentinel itself, one attempt per command."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=1,
                           retry=Retry(NoBackoff(), 0), decode_responses=True)

    def start(self) -> "SentinelServer":
        """Start the sentinel and wait until it replies to PING."""
        self.write_config()
        with open(self.stderr_path, "ab") as stderr:
            self._process = subprocess.Popen(
                [self.binary, str(self.config_path), "--sentinel"],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, cwd=self.data_dir,
            )
        deadline = time.monotonic() + self.start_timeout
        with self.client() as probe:
            while True:
                if self._process.poll() is not None:
                    raise RedisServerError(
                        f"sentinel exited with code {self._process.returncode} during start on "
                        f"port {self.port}.\n{self.log_tail()}"
                    )
                try:
                    if probe.ping():
                        return self
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if time.monotonic() >= deadline:
                    self.stop()
                    raise RedisServerError(
                        f"sentinel on port {self.port} did not reply to PING within "
                        f"{self.start_timeout:g} s.\n{self.log_tail()}"
                    )
                time.sleep(0.05)

    def primary_address(self) -> tuple[str, int] | None:
        """Return the address the sentinel names as the primary, or None."""
        with self.client() as connection:
            reply = connection.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return (reply[0], int(reply[1])) if reply else None

    def promotable_replica_ports(self) -> list[int]:
        """Return the ports of the replicas that SENTINEL FAILOVER could promote now.

        The sentinel learns of a replica from the primary's INFO, and it
        promotes one only after it has connected to it and read its own
        INFO: before that, FAILOVER fails with NOGOODSLAVE.
        """
        with self.client() as connection:
            replicas = connection.execute_command("SENTINEL", "REPLICAS", self.service)
        ports = []
        for replica in replicas:
            if isinstance(replica, dict):
                fields = replica
            else:
                fields = dict(zip(replica[::2], replica[1::2]))
            flags = str(fields.get("flags", ""))
            if ("s_down" not in flags and "disconnected" not in flags
                    and fields.get("role-reported") == "slave"
                    and fields.get("master-link-status") == "ok"):
                ports.append(int(fields["port"]))
        return ports

    def failover(self) -> None:
        """Run SENTINEL FAILOVER: promote a replica without waiting for agreement."""
        with self.client() as connection:
            connection.execute_command("SENTINEL", "FAILOVER", self.service)

    def log_tail(self, lines: int = 30) -> str:
        return (
            f"--- {self.log_path} ---\n{_read_tail(self.log_path, lines)}\n"
            f"--- {self.stderr_path} ---\n{_read_tail(self.stderr_path, lines)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._owns_data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "SentinelServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
