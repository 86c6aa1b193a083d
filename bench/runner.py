"""Runs benchmark scenarios: target, Redis, publisher, load generator and meter together.

One scenario is one fresh process tree of one target on its own private
Redis. Its steps:

1. start Redis and the target, then the publisher, which publishes the
   first version of every channel;
2. measure the idle pod (PSS);
3. ramp the streams up at the set rate and wait until every stream has its
   response headers (and its first snapshot, where the target sends one);
4. measure the pod holding the streams, and from both the memory per
   stream;
5. run each phase of the workload as a measured window: pod CPU time and
   the events the streams received in the window give CPU seconds per
   1,000 delivered events, and the load generator gives the
   publish-to-arrival delays;
6. close every stream, optionally wait until the target's own gauges are
   back to zero, and stop everything by PID.

A target that fails to start, or a size it cannot reach, is recorded in
the scenario's result with the stage and the reason, and the run goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from bench.meter import TreeMeter, median_pss, memory_drift
from bench.targets import REPO_ROOT, TARGETS, LivegateTarget, PrivateRedis, TargetUnavailable
from bench.workloads import Workload, expected_burst_recipients, subscriptions_for

log = logging.getLogger(__name__)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Seconds the publisher and load generator get beyond their planned work.
COMMAND_GRACE = 120.0
DRAIN_SECONDS = 2.0
# livegate notices a closed stream only when a write fails. The first write
# after the client left still succeeds (the peer responds with a reset),
# so the failing write is the second heartbeat: up to two intervals of 20 s,
# plus the heartbeat check period and the gauge's flush period.
GAUGE_WAIT_SECONDS = 60.0


@dataclass
class Scenario:
    name: str                         # matchday, throughput, storm, sweep, soak, replay, gzip
    target: str
    clients: int
    rate: float                       # new connections per second
    workers: int = 2
    workload: Workload = field(default_factory=lambda: Workload("matchday"))
    phases: list[tuple[str, float]] = field(default_factory=list)
    churn_per_minute: float = 0.0
    reconnect: bool = False
    connect_timeout: float = 15.0
    check_gauges: bool = False
    settle_seconds: float = 3.0
    # "gzip": livegate runs with LIVEGATE_STREAM_COMPRESSION=gzip and every
    # stream requests gzip; "off": neither.
    compression: str = "off"

    def to_json(self) -> dict:
        data = asdict(self)
        data["workload"] = self.workload.to_json()
        return data


class JsonLineProcess:
    """A child process that takes commands on stdin and prints JSON lines."""

    def __init__(self, name: str, command: list[str], log_path: Path):
        self.name = name
        self.log_file = open(log_path, "ab")
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log_file, text=True,
                                        bufsize=1)
        self.messages: queue.Queue = queue.Queue()
        self.progress: dict = {}
        self._reader = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("type") == "progress":
                self.progress = message
            else:
                self.messages.put(message)

    def send(self, command: str) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(command + "\n")
                self.process.stdin.flush()
            except BrokenPipeError:
                pass

    def expect(self, kinds: tuple[str, ...], timeout: float) -> dict:
        """Return the next message of one of ``kinds``; raise TimeoutError naming the process."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name} sent no {'/'.join(kinds)} within {timeout:.0f} s")
            try:
                message = self.messages.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if self.process.poll() is not None and self.messages.empty():
                    raise RuntimeError(f"{self.name} exited with code "
                                       f"{self.process.returncode}; see {self.log_file.name}")
                continue
            if message.get("type") in kinds:
                return message
            if message.get("type") == "error":
                raise RuntimeError(f"{self.name}: {message.get('message')}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.send("stop")
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s pid=%s did not exit; killing it", self.name, self.process.pid)
                self.process.kill()
                self.process.wait(timeout=10)
        self.log_file.close()


def machine_state() -> dict:
    memory_kib = 0
    with open("/proc/meminfo", encoding="ascii") as file:
        for line in file:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as file:
            for line in file:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gib": round(memory_kib / 1048576, 1),
            "kernel": platform.release(), "cpu": model, "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _wait_for_ramp(loadgen: JsonLineProcess, scenario: Scenario, needs_snapshot: bool,
                   wait_for_headers: bool) -> dict:
    """Wait until the ramp is done and every stream is set up; return the last progress.

    A stream is set up once it has its response headers (when
    ``wait_for_headers``) and its first snapshot (when ``needs_snapshot``).
    """
    timeout = scenario.clients / scenario.rate + scenario.connect_timeout + 60
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        progress = loadgen.progress
        if loadgen.process.poll() is not None:
            raise RuntimeError(f"load generator exited with code {loadgen.process.returncode}")
        if not progress.get("ramp_done"):
            continue
        if not wait_for_headers:
            # A target that sends headers only with its first event: the
            # streams are set up once every connection was started.
            return progress
        if progress["pending"] == 0 and (not needs_snapshot or progress["without_snapshot"] == 0):
            return progress
    progress = dict(loadgen.progress)
    progress["ramp_timed_out"] = True
    return progress


def _samples(meter: TreeMeter, count: int = 3, interval: float = 0.5) -> list:
    samples = []
    for _ in range(count):
        time.sleep(interval)
        samples.append(meter.sample())
    return samples


def _phase_report(kind: str, window: dict, published: dict, pod: tuple, redis_cpu: float,
                  expected: int | None) -> dict:
    events = window["events"] if window else 0
    pod_cpu = pod[1].cpu_seconds - pod[0].cpu_seconds
    report = {
        "kind": kind, "seconds": pod[1].at - pod[0].at, "publishes": published.get("publishes"),
        "publish_errors": published.get("errors"), "publisher_late_max": published.get("late_max"),
        "events": events, "deltas": window.get("deltas") if window else 0,
        "heartbeats": window.get("heartbeats") if window else 0,
        "bytes": window.get("bytes") if window else 0,
        "payload_bytes": window.get("payload_bytes") if window else 0,
        "pod_cpu_seconds": pod_cpu, "redis_cpu_seconds": redis_cpu,
        "cpu_per_1000_events": pod_cpu / events * 1000 if events else None,
        "cpu_with_redis_per_1000_events": (pod_cpu + redis_cpu) / events * 1000 if events else None,
        "latency": {k: v for k, v in (window or {}).get("latency", {}).items() if k != "buckets"},
        "full_document_bytes": published.get("full_document_bytes"),
    }
    if kind == "replay":
        report["poll_document_bytes"] = published.get("poll_document_bytes")
        report["documents"] = published.get("documents")
        report["changes"] = published.get("changes")
    if expected is not None:
        report["expected_recipients_per_publish"] = expected
    return report


def _make_target(scenario: Scenario, work_dir: Path, redis_server: PrivateRedis):
    """Build the scenario's target; only livegate has stream compression."""
    target_class = TARGETS[scenario.target]
    if scenario.compression == "off":
        return target_class(work_dir, redis_server, scenario.workers)
    if target_class is not LivegateTarget:
        raise ValueError(f"scenario {scenario.name}: compression {scenario.compression!r} "
                         f"needs the livegate target, not {scenario.target}")
    return LivegateTarget(work_dir, redis_server, scenario.workers,
                          env={"LIVEGATE_STREAM_COMPRESSION": scenario.compression})


def run_scenario(scenario: Scenario, work_dir: Path) -> dict:
    """Run one scenario and return its result; failures are recorded, not raised."""
    return ScenarioRun(scenario, work_dir).run()


class ScenarioRun:
    """The processes and measurements of one scenario, step by step."""

    def __init__(self, scenario: Scenario, work_dir: Path):
        work_dir.mkdir(parents=True, exist_ok=True)
        self.scenario = scenario
        self.work_dir = work_dir
        self.result: dict = {"scenario": scenario.to_json(), "machine_before": machine_state(),
                             "started_at": time.time()}
        self.redis = PrivateRedis(work_dir)
        self.target = _make_target(scenario, work_dir, self.redis)
        self.publisher: JsonLineProcess | None = None
        self.loadgen: JsonLineProcess | None = None
        self.pod_meter: TreeMeter | None = None
        self.redis_meter: TreeMeter | None = None
        self.subscriptions: list[str] = []
        self.stage = "redis"

    def run(self) -> dict:
        scenario = self.scenario
        log.info("scenario %s on %s: %d clients at %.0f/s, %d workers, compression %s",
                 scenario.name, scenario.target, scenario.clients, scenario.rate,
                 scenario.workers, scenario.compression)
        try:
            self.start_servers()
            self.measure_idle()
            self.ramp_up()
            self.measure_held()
            self.run_phases()
            self.leave()
        except (TargetUnavailable, TimeoutError, RuntimeError, OSError,
                redis.RedisError) as error:
            log.error("scenario %s on %s failed at %s: %s", scenario.name, scenario.target,
                      self.stage, error)
            self.result["error"] = {"stage": self.stage, "message": str(error)}
            if self.loadgen is not None:
                self.result.setdefault("ramp", self.loadgen.progress)
        finally:
            self.cleanup()
        return self.result

    def start_servers(self) -> None:
        """Start Redis, the target, the meters and the publisher, and publish the first versions."""
        self.redis.start()
        # Flask-SSE opens one Redis connection per stream, and Redis's
        # default of 10,000 clients would cap it below the benchmark's sizes.
        redis.Redis.from_url(self.redis.url).config_set("maxclients", 19_000)
        self.stage = "target"
        self.target.start()
        self.result["target"] = self.target.describe()
        self.pod_meter = TreeMeter(self.target.root_pid).start()
        self.redis_meter = TreeMeter(self.redis.pid).start()

        self.stage = "prepare"
        self.publisher = JsonLineProcess("publisher", [
            sys.executable, "-m", "bench.publish", "--target", self.scenario.target,
            "--redis-url", self.redis.url, "--port", str(self.target.port),
            "--workload", json.dumps(self.scenario.workload.to_json()),
        ], self.work_dir / f"publisher-{self.target.port}.log")
        self.publisher.send("prepare")
        self.result["prepare"] = self.publisher.expect(("prepared",), COMMAND_GRACE)

    def measure_idle(self) -> None:
        time.sleep(self.scenario.settle_seconds)
        self.result["idle_pss_bytes"] = median_pss(_samples(self.pod_meter))
        self.result["idle_redis_pss_bytes"] = self.redis_meter.sample().pss_bytes

    def ramp_up(self) -> None:
        """Open the streams at the set rate and wait until each is set up."""
        self.stage = "ramp"
        scenario = self.scenario
        target = self.target
        self.subscriptions = subscriptions_for(scenario.workload.kind, scenario.clients,
                                               scenario.workload)
        paths_file = self.work_dir / f"paths-{target.port}.txt"
        paths_file.write_text("\n".join(target.stream_path(s) for s in self.subscriptions)
                              + "\n")
        planned = (scenario.clients / scenario.rate + scenario.connect_timeout
                   + sum(seconds for _, seconds in scenario.phases) + 2 * GAUGE_WAIT_SECONDS
                   + COMMAND_GRACE)
        connect_timeout = scenario.connect_timeout
        if not target.headers_at_once and scenario.name != "storm":
            # Flask-SSE sends its headers with the first event, so a stream
            # waits for a publish. Only the storm counts that as a failure.
            connect_timeout = planned
        command = [sys.executable, "-m", "bench.loadgen", "--port", str(target.port),
                   "--paths-file", str(paths_file), "--clients", str(scenario.clients),
                   "--rate", str(scenario.rate), "--control", "--max-seconds", f"{planned:.0f}",
                   "--connect-timeout", f"{connect_timeout:.0f}",
                   "--churn-per-minute", str(scenario.churn_per_minute)]
        if scenario.reconnect:
            command.append("--reconnect")
        if scenario.compression == "gzip":
            command.append("--gzip")

        start = self.pod_meter.sample()
        self.loadgen = JsonLineProcess("load generator", command,
                                       self.work_dir / f"loadgen-{target.port}.log")
        needs_snapshot = target.sends_snapshots and scenario.workload.kind != "replay"
        # The storm waits for every stream's headers, or its timeout, even on
        # a target that sends them late: that wait is what it measures.
        wait_for_headers = target.headers_at_once or scenario.name == "storm"
        ramp = _wait_for_ramp(self.loadgen, scenario, needs_snapshot, wait_for_headers)
        self.result["ramp"] = ramp
        self.result["ramp_cpu_seconds"] = self.pod_meter.sample().cpu_seconds - start.cpu_seconds
        # A stream of a target that sends headers only with its first event
        # is held from its connect on.
        held_key = "streaming" if target.headers_at_once else "open"
        self.result["streams_held"] = ramp.get(held_key, 0)

    def measure_held(self) -> None:
        self.stage = "hold"
        time.sleep(self.scenario.settle_seconds)
        result = self.result
        result["held_pss_bytes"] = median_pss(_samples(self.pod_meter))
        held_redis = self.redis_meter.sample().pss_bytes
        streams = max(1, self.loadgen.progress.get("open", 0))
        result["pss_per_stream_bytes"] = (result["held_pss_bytes"] - result["idle_pss_bytes"]) / streams
        result["redis_pss_per_stream_bytes"] = (held_redis - result["idle_redis_pss_bytes"]) / streams

    def run_phases(self) -> None:
        """Run each phase as a measured window of CPU time, events and delays."""
        phases = []
        window_started = time.monotonic()
        for kind, seconds in self.scenario.phases:
            self.stage = f"phase {kind}"
            pod_start, redis_start = self.pod_meter.sample(), self.redis_meter.sample()
            self.loadgen.send("window-start")
            self.publisher.send("replay" if kind == "replay" else f"run {kind} {seconds}")
            published = self.publisher.expect(("ran",), seconds + COMMAND_GRACE)
            time.sleep(DRAIN_SECONDS)
            self.loadgen.send("window-end")
            window = self.loadgen.expect(("window",), 60)["window"]
            pod_end, redis_end = self.pod_meter.sample(), self.redis_meter.sample()
            expected = expected_burst_recipients(self.subscriptions) if kind == "burst" else None
            phases.append(_phase_report(kind, window, published, (pod_start, pod_end),
                                        redis_end.cpu_seconds - redis_start.cpu_seconds,
                                        expected))
        self.result["phases"] = phases
        if self.scenario.phases:
            series = self.pod_meter.series(since=window_started)
            self.result["memory_drift"] = memory_drift(series)
            step = max(1, len(series) // 120)
            self.result["pss_series"] = [sample.to_json() for sample in series[::step]]

    def leave(self) -> None:
        """Close every stream, check the target's gauge if the scenario requests it, and collect the load generator's result."""
        self.stage = "leave"
        self.loadgen.send("close-all")
        if self.scenario.check_gauges:
            self.result["open_streams_after_leave"] = _wait_for_zero(self.target)
        self.result["pss_after_leave_bytes"] = median_pss(_samples(self.pod_meter, 2))
        self.loadgen.send("stop")
        loadgen = self.loadgen.expect(("result",), COMMAND_GRACE)
        for name in ("time_to_headers", "time_to_first_event", "time_to_first_snapshot"):
            loadgen[name].pop("buckets", None)
        for section in ("total", "window"):
            if loadgen.get(section):
                loadgen[section]["latency"].pop("buckets", None)
        self.result["loadgen"] = loadgen

    def cleanup(self) -> None:
        for process in (self.loadgen, self.publisher):
            if process is not None:
                process.stop()
        for meter in (self.pod_meter, self.redis_meter):
            if meter is not None:
                meter.stop()
        if self.pod_meter is not None:
            self.result["pod_processes_exited"] = len(self.pod_meter.exited)
        self.target.stop()
        self.redis.stop()
        self.result["machine_after"] = machine_state()
        self.result["finished_at"] = time.time()


def _wait_for_zero(target) -> dict:
    """Poll the target's stream gauge until it reads zero; return what was seen."""
    started = time.monotonic()
    last = target.open_streams()
    while last not in (0, None) and time.monotonic() - started < GAUGE_WAIT_SECONDS:
        time.sleep(1.0)
        last = target.open_streams()
    return {"open_streams": last, "seconds": round(time.monotonic() - started, 1)}


# -- suites -------------------------------------------------------------------------

PEER_TARGETS = ("livegate", "nchan", "flask-sse")


@dataclass(frozen=True)
class Sizes:
    matchday_clients: int
    matchday_seconds: float
    burst_seconds: float
    throughput_clients: int
    throughput_rate: float
    throughput_seconds: float
    storm_clients: int
    storm_rate: float
    ramp_rate: float
    sweep_clients: int
    sweep_seconds: float
    soak_clients: int
    soak_seconds: float
    gzip_clients: int
    gzip_seconds: float


MODES = {
    # Hundreds of streams, under a minute per scenario: checks the harness.
    "smoke": Sizes(matchday_clients=300, matchday_seconds=30, burst_seconds=10,
                   throughput_clients=300, throughput_rate=50, throughput_seconds=15,
                   storm_clients=300, storm_rate=100, ramp_rate=150,
                   sweep_clients=300, sweep_seconds=20, soak_clients=300, soak_seconds=60,
                   gzip_clients=300, gzip_seconds=20),
    # A few minutes: a quick comparison after a change.
    "short": Sizes(matchday_clients=1000, matchday_seconds=30, burst_seconds=10,
                   throughput_clients=1000, throughput_rate=100, throughput_seconds=20,
                   storm_clients=1000, storm_rate=250, ramp_rate=250,
                   sweep_clients=1000, sweep_seconds=30, soak_clients=1000, soak_seconds=60,
                   gzip_clients=1000, gzip_seconds=30),
    # The sizes of the targets; about an hour and a half on two cores.
    "full": Sizes(matchday_clients=10_000, matchday_seconds=120, burst_seconds=20,
                  throughput_clients=5000, throughput_rate=200, throughput_seconds=60,
                  storm_clients=5000, storm_rate=500, ramp_rate=500,
                  sweep_clients=10_000, sweep_seconds=60, soak_clients=10_000, soak_seconds=600,
                  gzip_clients=2000, gzip_seconds=60),
}
# Scenario groups of each mode, in run order. The gzip group (match day
# with and without compression, about three minutes in full mode) runs
# only when named with --only.
GROUPS = ("matchday", "throughput", "storm", "sweep", "soak", "replay", "gzip")
MODE_GROUPS = {
    "smoke": ("matchday", "throughput", "storm", "sweep", "soak", "replay"),
    "short": ("matchday", "throughput", "storm", "replay"),
    "full": ("matchday", "throughput", "storm", "sweep", "soak", "replay"),
}


def build_suite(mode: str, targets: tuple[str, ...] = PEER_TARGETS,
                groups: tuple[str, ...] | None = None, workers: int = 2) -> list[Scenario]:
    sizes = MODES[mode]
    groups = groups or MODE_GROUPS[mode]
    suite: list[Scenario] = []
    matchday = Workload("matchday")
    for group in groups:
        if group == "matchday":
            suite += [Scenario("matchday", name, sizes.matchday_clients, sizes.ramp_rate, workers,
                               matchday, [("matchday", sizes.matchday_seconds),
                                          ("burst", sizes.burst_seconds)])
                      for name in targets]
        elif group == "throughput":
            workload = Workload("throughput", pattern_share=0.0, rate=sizes.throughput_rate)
            suite += [Scenario("throughput", name, sizes.throughput_clients, sizes.ramp_rate,
                               workers, workload, [("throughput", sizes.throughput_seconds)])
                      for name in targets]
        elif group == "storm":
            suite += [Scenario("storm", name, sizes.storm_clients, sizes.storm_rate, workers,
                               Workload("storm"), [], settle_seconds=1.0)
                      for name in targets]
        elif group == "sweep" and "livegate" in targets:
            suite += [Scenario("sweep", "livegate", sizes.sweep_clients, sizes.ramp_rate, count,
                               matchday, [("matchday", sizes.sweep_seconds)])
                      for count in range(1, 5)]
        elif group == "soak" and "livegate" in targets:
            suite.append(Scenario("soak", "livegate", sizes.soak_clients, sizes.ramp_rate, workers,
                                  matchday, [("matchday", sizes.soak_seconds)],
                                  churn_per_minute=0.1, reconnect=True, check_gauges=True))
        elif group == "replay" and "livegate" in targets:
            suite += [Scenario("replay", "livegate", 1, 10, workers, Workload("replay"),
                               [("replay", 0)], settle_seconds=1.0, compression=compression)
                      for compression in ("off", "gzip")]
        elif group == "gzip" and "livegate" in targets:
            suite += [Scenario("gzip", "livegate", sizes.gzip_clients, sizes.ramp_rate, workers,
                               matchday, [("matchday", sizes.gzip_seconds)],
                               compression=compression)
                      for compression in ("off", "gzip")]
    return suite


def planned_seconds(scenario: Scenario) -> float:
    """Estimate a scenario's wall time, for the run's plan."""
    startup = 15 + 2 * scenario.settle_seconds
    ramp = scenario.clients / scenario.rate
    phases = sum(seconds + DRAIN_SECONDS for _, seconds in scenario.phases)
    replay = 20 if any(kind == "replay" for kind, _ in scenario.phases) else 0
    gauges = GAUGE_WAIT_SECONDS if scenario.check_gauges else 0
    return startup + ramp + phases + replay + gauges


def run_suite(mode: str, suite: list[Scenario], command: str) -> Path:
    """Run every scenario, saving the results file after each; return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS_DIR / f"{stamp}-{mode}.json"
    work_root = RESULTS_DIR / f"{stamp}-{mode}-work"
    document = {"mode": mode, "command": command, "machine": machine_state(),
                "versions": software_versions(), "started_at": time.time(),
                "planned_seconds": math.ceil(sum(planned_seconds(s) for s in suite)),
                "scenarios": []}
    log.info("%s run: %d scenarios, about %d s; results in %s", mode, len(suite),
             document["planned_seconds"], path)
    for number, scenario in enumerate(suite, 1):
        work_dir = work_root / f"{number:02d}-{scenario.name}-{scenario.target}-w{scenario.workers}"
        if scenario.compression != "off":
            work_dir = work_dir.with_name(f"{work_dir.name}-{scenario.compression}")
        document["scenarios"].append(run_scenario(scenario, work_dir))
        document["machine_end"] = machine_state()
        path.write_text(json.dumps(document, indent=1))
    document["finished_at"] = time.time()
    path.write_text(json.dumps(document, indent=1))
    return path


def software_versions() -> dict:
    from importlib import metadata

    versions = {}
    for package in ("gunicorn", "gevent", "Flask", "redis", "Flask-SSE"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    for package in ("nginx", "libnginx-mod-nchan", "redis-server"):
        try:
            completed = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                                       capture_output=True, text=True, timeout=10)
            versions[package] = completed.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            versions[package] = None
    return versions
