"""Multiprocess stress test of the ring: one writer process and three reader processes.

The ring is small, so the data wraps many times, and one reader stalls now and then,
so the writer overtakes it. Every record's content is derived from its seq, so each
reader checks every byte it gets. Every wait has a deadline counted from the start of
the test, so a hung child fails the test after about 19 s instead of hanging it.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import time

import pytest

from fanout.ring import (
    FRAME_DELTA,
    FRAME_SNAPSHOT,
    RECORD_HEADER_SIZE,
    RESYNC_CHANNEL,
    Ring,
    RingReader,
)

pytestmark = pytest.mark.slow

CAPACITY = 256 * 1024
MAX_RECORD_SIZE = CAPACITY // 8
# Channels are "room:0" .. "room:12", at most 7 bytes.
MAX_PAYLOAD_SIZE = MAX_RECORD_SIZE - RECORD_HEADER_SIZE - 7
MIN_PAYLOAD_SIZE = 3

WRITER_MAX_RECORDS = 12000
WRITER_MAX_SECONDS = 6.0
# Deadlines in seconds after the start of the test. CLOCK_MONOTONIC, which
# time.monotonic() reads on Linux, is the same clock in every process.
START_DEADLINE = 5.0
WRITER_DEADLINE = 10.0
READER_DEADLINE = 15.0
REPORT_DEADLINE = 16.0
JOIN_DEADLINE = 17.0
# The writer sleeps after every WRITER_BURST records, so that the fast readers can
# mostly keep up on a 2-core machine while the slow reader cannot.
WRITER_BURST = 8
WRITER_PAUSE_SECONDS = 0.001
# The slow reader stalls for this long after every SLOW_READER_STALL_EVERY records it
# has read. The writer fills the ring many times over in that time.
SLOW_READER_STALL_SECONDS = 0.05
SLOW_READER_STALL_EVERY = 200
MAX_REPORTED_ERRORS = 5


def expected_record(seq: int) -> tuple[int, str, bytes, int, int]:
    """Return the (kind, channel, payload, version, publish_ts_ms) written for `seq`."""
    generator = random.Random(seq)
    channel = f"room:{seq % 13}"
    if seq % 50 == 0:
        return RESYNC_CHANNEL, channel, b"", 0, 1_700_000_000_000 + seq

    kind = FRAME_SNAPSHOT if seq % 10 == 0 else FRAME_DELTA
    payload = generator.randbytes(generator.randint(MIN_PAYLOAD_SIZE, MAX_PAYLOAD_SIZE))
    return kind, channel, payload, seq * 3, 1_700_000_000_000 + seq


def run_writer(ring: Ring, test_started: float, start_barrier, results) -> None:
    start_barrier.wait(max(0.0, test_started + START_DEADLINE - time.monotonic()))
    started = time.monotonic()
    stop_at = min(started + WRITER_MAX_SECONDS, test_started + WRITER_DEADLINE)
    written = 0
    for seq in range(1, WRITER_MAX_RECORDS + 1):
        if time.monotonic() > stop_at:
            break
        kind, channel, payload, version, publish_ts_ms = expected_record(seq)
        ring.write(kind, channel, payload, seq, version, publish_ts_ms)
        written = seq
        if seq % WRITER_BURST == 0:
            time.sleep(WRITER_PAUSE_SECONDS)

    results.put(
        {
            "name": "writer",
            "written": written,
            "commit_pos": ring.commit_pos,
            "seconds": time.monotonic() - started,
        }
    )


def check_record(record, previous, gap_allowed: bool) -> str | None:
    """Return a description of what is wrong with `record`, or None if it is as written."""
    if previous is not None:
        if record.pos <= previous.pos or record.pos % 8:
            return f"seq {record.seq}: position {record.pos} after {previous.pos}"
        if gap_allowed and record.seq <= previous.seq:
            return f"seq {record.seq} after seq {previous.seq} across an overrun"
        if not gap_allowed and record.seq != previous.seq + 1:
            return f"seq {record.seq} after seq {previous.seq} without an overrun"

    kind, channel, payload, version, publish_ts_ms = expected_record(record.seq)
    if record.kind != kind:
        return f"seq {record.seq}: kind {record.kind!r}, expected {kind!r}"
    if record.channel != channel:
        return f"seq {record.seq}: channel {record.channel!r}, expected {channel!r}"
    if record.version != version or record.publish_ts_ms != publish_ts_ms:
        return f"seq {record.seq}: version or publish_ts_ms differ"
    if record.payload != payload:
        return f"seq {record.seq}: payload of {len(record.payload)} bytes differs"
    return None


def run_reader(
    ring: Ring,
    name: str,
    test_started: float,
    attach: bool,
    stall_every: int | None,
    max_records: int,
    start_barrier,
    writer_done,
    results,
) -> None:
    if attach:
        ring = Ring.attach(ring.fd, close_fd=False)
    reader = RingReader(ring, start_pos=0)
    verified = 0
    errors: list[str] = []
    previous = None
    gap_allowed = False
    timed_out = True
    read_since_stall = 0

    start_barrier.wait(max(0.0, test_started + START_DEADLINE - time.monotonic()))
    while time.monotonic() < test_started + READER_DEADLINE:
        # Read commit_pos before the last read, so that a reader that then finds nothing
        # more has read everything the writer wrote.
        done = writer_done.is_set()
        final_commit = ring.commit_pos
        records = reader.read_available(max_records=max_records)
        read_since_stall += len(records)

        for record in records:
            error = check_record(record, previous, gap_allowed)
            if error is None:
                verified += 1
            elif len(errors) < MAX_REPORTED_ERRORS:
                errors.append(error)
            previous = record
            gap_allowed = False

        if reader.overrun:
            gap_allowed = True
            reader.clear_overrun()

        if done and reader.position >= final_commit:
            timed_out = False
            break
        if stall_every is not None and read_since_stall >= stall_every:
            read_since_stall = 0
            time.sleep(SLOW_READER_STALL_SECONDS)
        elif not records:
            time.sleep(0.0005)

    results.put(
        {
            "name": name,
            "verified": verified,
            "overruns": reader.overruns,
            "corrupt_records": reader.corrupt_records,
            "errors": errors,
            "timed_out": timed_out,
            "last_seq": previous.seq if previous is not None else None,
        }
    )
    if attach:
        ring.close()


def test_ring_one_writer_three_readers():
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_barrier = context.Barrier(4)
    writer_done = context.Event()
    ring = Ring.create(CAPACITY)
    started = time.monotonic()

    readers = [
        ("fast", False, None, 1024),
        ("fast-attached", True, None, 1024),
        ("slow", False, SLOW_READER_STALL_EVERY, 8),
    ]
    processes = [
        context.Process(
            target=run_reader,
            args=(
                ring,
                name,
                started,
                attach,
                stall_every,
                max_records,
                start_barrier,
                writer_done,
                results,
            ),
            name=f"ring-reader-{name}",
        )
        for name, attach, stall_every, max_records in readers
    ]
    writer = context.Process(
        target=run_writer, args=(ring, started, start_barrier, results), name="ring-writer"
    )
    processes.append(writer)

    reports = {}
    started_processes = []
    try:
        for process in processes:
            process.start()
            started_processes.append(process)

        writer.join(timeout=max(0.0, started + WRITER_DEADLINE + 1 - time.monotonic()))
        writer_done.set()
        while len(reports) < len(processes):
            remaining = started + REPORT_DEADLINE - time.monotonic()
            if remaining <= 0:
                break
            try:
                report = results.get(timeout=remaining)
            except queue.Empty:
                break
            reports[report["name"]] = report
    finally:
        writer_done.set()
        for process in started_processes:
            process.join(timeout=max(0.0, started + JOIN_DEADLINE - time.monotonic()))
        for process in started_processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=1)
        ring.close()

    elapsed = time.monotonic() - started
    for process in processes:
        assert process.exitcode == 0, f"{process.name} exited with {process.exitcode}"
    assert set(reports) == {"writer", "fast", "fast-attached", "slow"}, reports

    writer_report = reports["writer"]
    print(f"\nstress: {writer_report} in {elapsed:.1f} s")
    assert writer_report["written"] >= 1000
    assert writer_report["commit_pos"] // CAPACITY >= 10

    for name in ("fast", "fast-attached", "slow"):
        report = reports[name]
        print(f"stress: reader {report}")
        assert report["errors"] == [], name
        assert report["corrupt_records"] == 0, name
        assert report["timed_out"] is False, name
        assert report["verified"] > 0, name
        assert report["last_seq"] <= writer_report["written"], name

    assert reports["slow"]["overruns"] > 0
    assert reports["slow"]["verified"] >= SLOW_READER_STALL_EVERY
    assert reports["fast"]["verified"] >= writer_report["written"] // 10
    assert reports["fast-attached"]["verified"] >= writer_report["written"] // 10
    assert elapsed < 20
