"""Measure what livegate's traffic costs one Redis server, in CPU time per operation.

Starts a private redis-server on a free port of 127.0.0.1 (never the
default port), loads it in three ways and reads the server's main-thread
CPU time (``INFO cpu``, Redis 6.2 or newer) before and after each run:

1. ``PUBLISH`` of one envelope-sized message to the bus, with 0 to N
   subscribers that a separate process drains, at a fixed rate. This is
   the fan-out to the pods' subscribers.
2. One run of ``ingest/publish.lua`` per update (a patch to a document),
   as ``EVALSHA``, with 0 and with some subscribers on the bus.
3. The read of one stream's initial sync: one MULTI with the epoch, the
   seq, ``HKEYS`` of the channel index and ``HMGET`` of every channel's
   state, as ``workers/sync.py`` sends it for a pattern subscription.

Redis runs commands on one thread, so the CPU time per operation bounds
the operations per second of one server: about 1 s / cost, minus headroom.
The load generator shares the machine, so the achieved rates depend on
it more than the CPU costs do.

Run: ``python -m bench.redis_capacity`` from the repository root (about a
minute). ``--help`` lists the sizes and counts.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import secrets
import selectors
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import redis

from ingest.local_redis import free_port, start_redis_server
from livegate.wire import Keys

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT_PATH = PROJECT_ROOT / "ingest" / "publish.lua"
BUS = "bench:bus"


def main_thread_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])


def drain(port: int, subscribers: int, ready, stop, received) -> None:
    """Hold ``subscribers`` subscribed connections and discard what arrives."""
    selector = selectors.DefaultSelector()
    connections = []
    for _ in range(subscribers):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.sendall(f"*2\r\n$9\r\nSUBSCRIBE\r\n${len(BUS)}\r\n{BUS}\r\n".encode())
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
        connections.append(connection)
    ready.set()
    total = 0
    buffer = bytearray(1 << 20)
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.1):
            try:
                total += key.fileobj.recv_into(buffer)
            except BlockingIOError:
                pass
    received.value = total
    for connection in connections:
        connection.close()


class Subscribers:
    """``count`` drained subscribers of the bus in a child process."""

    def __init__(self, port: int, count: int):
        self.port = port
        self.count = count
        self.ready = multiprocessing.Event()
        self.stop = multiprocessing.Event()
        self.received = multiprocessing.Value("q", 0)
        self.process = multiprocessing.Process(
            target=drain, args=(port, count, self.ready, self.stop, self.received), daemon=True
        )

    def __enter__(self) -> "Subscribers":
        if self.count:
            self.process.start()
            if not self.ready.wait(30):
                raise RuntimeError("the subscriber process did not start within 30 s")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.count:
            self.stop.set()
            self.process.join(10)


def paced(rate: float, seconds: float, batch: int):
    """Yield batch sizes that keep ``rate`` operations per second for ``seconds``."""
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - sent
        if due <= 0:
            time.sleep(min(0.002, batch / rate))
            continue
        count = min(due, batch)
        sent += count
        yield count


def idle_cpu_per_second(client: redis.Redis, seconds: float) -> float:
    """Return the main-thread CPU seconds per second of an idle server (its timers)."""
    before = main_thread_cpu(client)
    time.sleep(seconds)
    return (main_thread_cpu(client) - before) / seconds


def bench_publish(client: redis.Redis, port: int, subscribers: int, rate: float,
                  seconds: float, size: int, batch: int, idle: float) -> dict:
    payload = secrets.token_bytes(size)
    with Subscribers(port, subscribers) as subs:
        time.sleep(0.2)
        delivered_before = client.pubsub_numsub(BUS)[0][1]
        cpu_before = main_thread_cpu(client)
        started = time.monotonic()
        count = 0
        for size_of_batch in paced(rate, seconds, batch):
            pipe = client.pipeline(transaction=False)
            for _ in range(size_of_batch):
                pipe.publish(BUS, payload)
            pipe.execute()
            count += size_of_batch
        elapsed = time.monotonic() - started
        cpu = main_thread_cpu(client) - cpu_before - idle * elapsed
        time.sleep(0.3)
    return {
        "subscribers": subscribers, "listening": delivered_before, "publishes": count,
        "rate": count / elapsed, "cpu_us_per_publish": cpu / count * 1e6,
        "bytes_received": subs.received.value if subscribers else 0,
    }


def bench_script(client: redis.Redis, port: int, subscribers: int, seconds: float,
                 channels: int, document_bytes: int, patch_bytes: int, idle: float) -> dict:
    client.flushall()
    keys = Keys("bench")
    script = client.register_script(SCRIPT_PATH.read_text())
    document = b'{"pad":"' + b"x" * max(0, document_bytes - 10) + b'"}'
    patch = b'[{"op":"replace","path":"/pad","value":"' + b"y" * max(0, patch_bytes - 45) + b'"}]'
    names = [f"bench/match-{index}" for index in range(channels)]
    versions = dict.fromkeys(names, 0)
    # Version 1 of every channel first, so the measured runs are deltas.
    for name in names:
        script(keys=[keys.epoch, keys.seq, keys.channels, keys.state(name),
                     keys.channel_log(name), keys.global_log],
               args=[name, 0, "snapshot", b"", document, "bench", 200, 10000, BUS])
        versions[name] = 1
    with Subscribers(port, subscribers):
        time.sleep(0.2)
        cpu_before = main_thread_cpu(client)
        started = time.monotonic()
        count = 0
        while time.monotonic() - started < seconds:
            pipe = client.pipeline(transaction=False)
            for offset in range(50):
                name = names[(count + offset) % channels]
                script(keys=[keys.epoch, keys.seq, keys.channels, keys.state(name),
                             keys.channel_log(name), keys.global_log],
                       args=[name, versions[name], "delta", patch, document, "bench",
                             200, 10000, BUS], client=pipe)
                versions[name] += 1
            results = pipe.execute()
            if any(result[0] != 1 for result in results):
                raise RuntimeError("a publish script run found a stale version")
            count += 50
        elapsed = time.monotonic() - started
        cpu = main_thread_cpu(client) - cpu_before - idle * elapsed
    return {"subscribers": subscribers, "runs": count, "rate": count / elapsed,
            "cpu_us_per_run": cpu / count * 1e6}


def bench_sync(client: redis.Redis, seconds: float, channels: int, idle: float) -> dict:
    keys = Keys("bench")
    names = [name.decode() for name in client.hkeys(keys.channels)][:channels]
    cpu_before = main_thread_cpu(client)
    started = time.monotonic()
    count = 0
    returned = 0
    while time.monotonic() - started < seconds:
        pipe = client.pipeline(transaction=True)
        pipe.get(keys.epoch)
        pipe.get(keys.seq)
        pipe.hkeys(keys.channels)
        for name in names:
            pipe.hmget(keys.state(name), "version", "seq", "doc")
        results = pipe.execute()
        returned += sum(len(state[2] or b"") for state in results[3:])
        count += 1
    elapsed = time.monotonic() - started
    cpu = main_thread_cpu(client) - cpu_before - idle * elapsed
    return {"channels": len(names), "syncs": count, "rate": count / elapsed,
            "cpu_us_per_sync": cpu / count * 1e6, "document_bytes_per_sync": returned / count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", default="0,1,10,50,100,200",
                        help="subscriber counts for the PUBLISH runs, separated by commas")
    parser.add_argument("--publish-rate", type=float, default=1000,
                        help="PUBLISH calls per second in the fan-out runs")
    parser.add_argument("--publish-batch", type=int, default=1,
                        help="PUBLISH calls per pipeline in the fan-out runs; 1 sends each "
                             "alone, as a publisher of live updates does")
    parser.add_argument("--message-bytes", type=int, default=300,
                        help="size of one bus message (a delta envelope)")
    parser.add_argument("--channels", type=int, default=200, help="channels for the script runs")
    parser.add_argument("--document-bytes", type=int, default=2000,
                        help="document size stored per channel")
    parser.add_argument("--patch-bytes", type=int, default=180, help="patch size per update")
    parser.add_argument("--script-subscribers", type=int, default=50,
                        help="subscribers on the bus in the second script run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    arguments = parser.parse_args(argv)

    directory = tempfile.mkdtemp(prefix="livegate-bench-redis-")
    port = free_port()
    server = start_redis_server(port, directory)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        version = client.info("server")["redis_version"]
        print(f"redis-server {version} on 127.0.0.1:{port}; {os.cpu_count()} CPUs "
              f"({platform.processor() or platform.machine()}); Python {platform.python_version()}")
        idle = idle_cpu_per_second(client, 2.0)
        print(f"idle main-thread CPU: {idle * 1e3:.2f} ms per second, subtracted below")
        print(f"\nPUBLISH of {arguments.message_bytes} bytes at "
              f"{arguments.publish_rate:g}/s, {arguments.publish_batch} per pipeline, "
              f"for {arguments.seconds:g} s:")
        print("subscribers  publishes/s  Redis CPU µs per PUBLISH  MB received")
        for count in (int(text) for text in arguments.subscribers.split(",")):
            row = bench_publish(client, port, count, arguments.publish_rate, arguments.seconds,
                                arguments.message_bytes, arguments.publish_batch, idle)
            print(f"{row['subscribers']:>11}  {row['rate']:>11.0f}  "
                  f"{row['cpu_us_per_publish']:>24.1f}  {row['bytes_received'] / 1e6:>11.1f}")

        print(f"\npublish.lua as EVALSHA, {arguments.channels} channels, "
              f"{arguments.document_bytes}-byte documents, {arguments.patch_bytes}-byte patches, "
              "pipelined 50 at a time:")
        print("subscribers  runs/s  Redis CPU µs per run")
        for count in (0, arguments.script_subscribers):
            row = bench_script(client, port, count, arguments.seconds, arguments.channels,
                               arguments.document_bytes, arguments.patch_bytes, idle)
            print(f"{row['subscribers']:>11}  {row['rate']:>6.0f}  {row['cpu_us_per_run']:>20.1f}")

        row = bench_sync(client, arguments.seconds, arguments.channels, idle)
        print(f"\nInitial sync of a pattern stream over {row['channels']} channels "
              f"(one MULTI, {row['document_bytes_per_sync'] / 1e3:.0f} kB of documents):")
        print(f"syncs/s {row['rate']:.0f}, Redis CPU µs per sync {row['cpu_us_per_sync']:.0f}")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
