"""Unit tests of the shared-memory ring: layout, records, writer, reader and header fields."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from fanout import ring as ring_module
from fanout.ring import (
    FRAME_DELTA,
    FRAME_SNAPSHOT,
    HEADER_SIZE,
    MAX_SLOTS,
    MIN_CAPACITY,
    PAD,
    RECORD_HEADER_SIZE,
    RESYNC_ALL,
    RESYNC_CHANNEL,
    CorruptRecordError,
    Record,
    RecordKind,
    RecordTooLargeError,
    Ring,
    RingLayoutError,
    RingReader,
    SubscriberState,
    capacity_from_mib,
    decode_record,
    encode_record,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
CHANNEL = "room:1"


@pytest.fixture
def ring():
    ring = Ring.create(MIN_CAPACITY)
    yield ring
    ring.close()


def payload_for_size(record_size: int, channel: str = CHANNEL) -> bytes:
    """Return a payload that makes a record of exactly `record_size` bytes, a multiple of 8."""
    assert record_size % 8 == 0
    return bytes(record_size - RECORD_HEADER_SIZE - len(channel.encode()))


def write_sized(ring: Ring, record_size: int, seq: int) -> int:
    return ring.write(FRAME_DELTA, CHANNEL, payload_for_size(record_size), seq, seq, 1000 + seq)


def read_all(reader: RingReader) -> list[Record]:
    records = []
    for _ in range(1000):
        batch = reader.read_available(max_records=64)
        if not batch:
            return records
        records.extend(batch)
    raise AssertionError("reader returned records for 1000 calls without draining")


# Memory


def test_create_and_attach_share_memory(ring):
    attached = Ring.attach(ring.fd, close_fd=False)
    try:
        assert attached.capacity == MIN_CAPACITY
        assert attached.ring_id == ring.ring_id
        assert len(ring.ring_id) == 16
        assert os.fstat(ring.fd).st_size == HEADER_SIZE + MIN_CAPACITY

        reader = RingReader(attached, start_pos=0)
        commit = ring.write(FRAME_SNAPSHOT, CHANNEL, b"data: {}\n\n", 7, 3, 1234)

        assert attached.commit_pos == commit
        records = reader.read_available()
        assert records == [Record(7, 3, 1234, FRAME_SNAPSHOT, CHANNEL, b"data: {}\n\n", 0)]
    finally:
        attached.close()

    # close_fd=False left the creator's fd open.
    assert ring.commit_pos == commit


def test_create_sets_fd_not_inheritable(ring):
    assert os.get_inheritable(ring.fd) is False


def test_ring_ids_differ(ring):
    with Ring.create(MIN_CAPACITY) as other:
        assert other.ring_id != ring.ring_id


def test_close_is_idempotent_and_closes_fd():
    ring = Ring.create(MIN_CAPACITY)
    fd = ring.fd
    ring.close()
    ring.close()

    assert ring.closed
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.parametrize(
    ("size_bytes", "message"),
    [
        (MIN_CAPACITY - 8, "65528"),
        (0, "too small"),
        (MIN_CAPACITY + 4, "multiple of 8"),
        (float(MIN_CAPACITY), "65536.0"),
        (True, "True"),
    ],
)
def test_create_rejects_invalid_capacity(size_bytes, message):
    with pytest.raises(ValueError, match=message):
        Ring.create(size_bytes)


def test_capacity_from_mib_converts():
    assert capacity_from_mib(1) == 1024 * 1024
    assert capacity_from_mib(16) == 16 * 1024 * 1024
    assert capacity_from_mib(0.0625) == MIN_CAPACITY
    assert capacity_from_mib(0.1) % 8 == 0


@pytest.mark.parametrize("size_mib", [0, 0.01, -1, float("nan"), float("inf"), "16", None])
def test_capacity_from_mib_rejects_invalid(size_mib):
    with pytest.raises(ValueError, match="LIVEGATE_RING_SIZE_MB") as error:
        capacity_from_mib(size_mib)

    assert repr(size_mib) in str(error.value)


def test_attach_rejects_wrong_magic(ring):
    os.pwrite(ring.fd, b"XXXX", 0)

    with pytest.raises(RingLayoutError, match="magic is b'XXXX'"):
        Ring.attach(ring.fd, close_fd=False)


def test_attach_rejects_wrong_layout_version(ring):
    os.pwrite(ring.fd, struct.pack("<I", 99), 4)

    with pytest.raises(RingLayoutError, match="layout version 99"):
        Ring.attach(ring.fd, close_fd=False)


def test_attach_rejects_wrong_size(ring):
    os.ftruncate(ring.fd, HEADER_SIZE + MIN_CAPACITY + 4096)

    with pytest.raises(RingLayoutError, match="truncated or resized"):
        Ring.attach(ring.fd, close_fd=False)


def test_attach_rejects_invalid_capacity(ring):
    os.pwrite(ring.fd, struct.pack("<Q", 1000), 8)

    with pytest.raises(RingLayoutError, match="invalid capacity of 1000 bytes"):
        Ring.attach(ring.fd, close_fd=False)


def test_attach_rejects_short_fd():
    fd = os.memfd_create("not-a-ring", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, 100)
        with pytest.raises(RingLayoutError, match="size of 100 bytes"):
            Ring.attach(fd, close_fd=False)
    finally:
        os.close(fd)


def test_layout_error_is_value_error():
    assert issubclass(RingLayoutError, ValueError)
    assert issubclass(RecordTooLargeError, ValueError)
    assert issubclass(CorruptRecordError, ValueError)


def test_module_imports_without_gevent():
    # Load the file by path so that fanout/__init__.py and its imports play no part.
    module_path = str(REPOSITORY_ROOT / "fanout" / "ring.py")
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("ring", {module_path!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert "gevent" not in sys.modules, sorted(m for m in sys.modules if "gevent" in m)
        assert "redis" not in sys.modules
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 0, result.stderr


def test_subprocess_writes_through_passed_fd(ring):
    code = textwrap.dedent(
        """
        import sys
        from fanout.ring import FRAME_DELTA, Ring, SubscriberState
        ring = Ring.attach(int(sys.argv[1]))
        ring.set_subscriber_status(pid=4242, state=SubscriberState.CONNECTED, epoch="e1")
        ring.write(FRAME_DELTA, "room:9", b"data: child\\n\\n", 11, 2, 99)
        ring.close()
        """
    )
    reader = RingReader(ring)
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code, str(ring.fd)],
        pass_fds=[ring.fd],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    expected = Record(11, 2, 99, FRAME_DELTA, "room:9", b"data: child\n\n", 0)
    assert reader.read_available() == [expected]
    status = ring.subscriber_status()
    assert status.pid == 4242
    assert status.state == SubscriberState.CONNECTED
    assert status.epoch == "e1"
    assert status.last_seq == 11


# Record encoding


def test_encode_decode_round_trip():
    encoded = encode_record(FRAME_SNAPSHOT, "room:ü", b"event: snapshot\ndata: 1\n\n", 5, 6, 7)

    assert len(encoded) % 8 == 0
    length = struct.unpack_from("<I", encoded, 0)[0]
    assert length == RECORD_HEADER_SIZE + len("room:ü".encode()) + 25
    assert encoded[length:] == bytes(len(encoded) - length)
    assert decode_record(encoded, pos=80) == Record(
        5, 6, 7, FRAME_SNAPSHOT, "room:ü", b"event: snapshot\ndata: 1\n\n", 80
    )


@st.composite
def record_fields(draw):
    kind = draw(st.sampled_from([FRAME_SNAPSHOT, FRAME_DELTA, RESYNC_CHANNEL, RESYNC_ALL]))
    if kind == RESYNC_ALL:
        channel = ""
    else:
        channel = draw(st.text(min_size=1, max_size=100))
    if kind == RESYNC_CHANNEL:
        payload = b""
    else:
        payload = draw(st.binary(max_size=2000))
    u64 = st.integers(min_value=0, max_value=2**64 - 1)
    return kind, channel, payload, draw(u64), draw(u64), draw(u64)


@given(record_fields(), st.integers(min_value=0, max_value=2**64 - 1))
def test_encode_decode_property(fields, pos):
    kind, channel, payload, seq, version, publish_ts_ms = fields

    encoded = encode_record(kind, channel, payload, seq, version, publish_ts_ms)
    record = decode_record(encoded, pos)

    assert len(encoded) % 8 == 0
    assert record == Record(seq, version, publish_ts_ms, kind, channel, payload, pos)
    assert isinstance(record.kind, RecordKind)


@given(record_fields(), st.data())
def test_decode_detects_any_flipped_bit(fields, data):
    encoded = bytearray(encode_record(*fields))
    length = struct.unpack_from("<I", encoded, 0)[0]
    # Bytes 0-3 are the length. A flipped length bit changes the CRC range or the bounds,
    # and every later bit up to the length is covered by the CRC.
    index = data.draw(st.integers(min_value=4, max_value=length - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    encoded[index] ^= 1 << bit

    with pytest.raises(CorruptRecordError):
        decode_record(bytes(encoded))


def test_decode_rejects_truncated_record():
    encoded = encode_record(FRAME_DELTA, CHANNEL, b"x" * 100, 1, 1, 1)

    with pytest.raises(CorruptRecordError, match="truncated"):
        decode_record(encoded[:20])
    with pytest.raises(CorruptRecordError, match="invalid length"):
        decode_record(encoded[:100])


def test_decode_rejects_unknown_kind():
    encoded = bytearray(encode_record(FRAME_DELTA, CHANNEL, b"x", 1, 1, 1))
    length = struct.unpack_from("<I", encoded, 0)[0]
    encoded[32] = 9
    struct.pack_into("<I", encoded, 4, zlib.crc32(encoded[8:length]))

    with pytest.raises(CorruptRecordError, match="unknown kind 9"):
        decode_record(bytes(encoded))


def test_decode_rejects_invalid_utf8_channel():
    encoded = bytearray(encode_record(FRAME_DELTA, "ab", b"x", 1, 1, 1))
    length = struct.unpack_from("<I", encoded, 0)[0]
    encoded[RECORD_HEADER_SIZE] = 0xFF
    struct.pack_into("<I", encoded, 4, zlib.crc32(encoded[8:length]))

    with pytest.raises(CorruptRecordError, match="not valid UTF-8"):
        decode_record(bytes(encoded))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((PAD, "", b"", 1, 1, 1), "record kind 5 is invalid"),
        ((0, CHANNEL, b"", 1, 1, 1), "record kind 0 is invalid"),
        ((RESYNC_CHANNEL, CHANNEL, b"x", 1, 1, 1), "empty payload"),
        ((RESYNC_ALL, CHANNEL, b"", 1, 1, 1), "channel must be empty"),
        ((FRAME_DELTA, "", b"x", 1, 1, 1), "channel is empty"),
        ((FRAME_DELTA, "a" * 65536, b"", 1, 1, 1), "65536 UTF-8 bytes"),
        ((FRAME_DELTA, "\ud800", b"", 1, 1, 1), "UTF-8"),
        ((FRAME_DELTA, 5, b"", 1, 1, 1), "expected a str"),
        ((FRAME_DELTA, CHANNEL, "text", 1, 1, 1), "expected bytes"),
        ((FRAME_DELTA, CHANNEL, b"", -1, 1, 1), "seq=-1"),
        ((FRAME_DELTA, CHANNEL, b"", 1, 2**64, 1), "version="),
        ((FRAME_DELTA, CHANNEL, b"", 1, 1, 1.5), "publish_ts_ms=1.5"),
    ],
)
def test_encode_rejects_invalid_fields(arguments, message):
    with pytest.raises(ValueError, match=message):
        encode_record(*arguments)


def test_resync_all_may_carry_payload():
    record = decode_record(encode_record(RESYNC_ALL, "", b"reason", 3, 0, 4))

    assert record.kind == RESYNC_ALL
    assert record.channel == ""
    assert record.payload == b"reason"


# Writer and reader


def test_reader_defaults_to_new_records_only(ring):
    write_sized(ring, 64, 1)
    reader = RingReader(ring)

    assert reader.position == ring.commit_pos
    assert reader.read_available() == []

    write_sized(ring, 64, 2)
    records = reader.read_available()
    assert [record.seq for record in records] == [2]
    assert records[0].pos == 64


def test_reader_returns_records_in_order_and_respects_max(ring):
    reader = RingReader(ring, start_pos=0)
    for seq in range(1, 11):
        write_sized(ring, 48, seq)

    assert reader.lag_bytes() == 480
    first = reader.read_available(max_records=4)
    rest = reader.read_available()

    assert [record.seq for record in first] == [1, 2, 3, 4]
    assert [record.seq for record in rest] == [5, 6, 7, 8, 9, 10]
    assert [record.pos for record in first + rest] == [48 * i for i in range(10)]
    assert reader.lag_bytes() == 0
    assert reader.position == 480
    assert reader.overrun is False


@pytest.mark.parametrize("start_pos", [-8, 4, 8, True, "0"])
def test_reader_rejects_invalid_start_pos(ring, start_pos):
    with pytest.raises(ValueError, match="start_pos"):
        RingReader(ring, start_pos=start_pos)


@pytest.mark.parametrize("max_records", [0, -1, 1.5, True])
def test_read_available_rejects_invalid_max(ring, max_records):
    reader = RingReader(ring)

    with pytest.raises(ValueError, match="max_records"):
        reader.read_available(max_records=max_records)


def test_write_updates_counters(ring):
    commit = ring.write(FRAME_SNAPSHOT, CHANNEL, b"abc", 41, 1, 1)
    commit = ring.write(RESYNC_ALL, "", b"", 42, 0, 2)

    assert commit == ring.commit_pos
    assert ring.reserve_pos == commit
    assert ring.records_written == 2
    assert ring.subscriber_status().last_seq == 42


def test_write_many_writes_each_record(ring):
    reader = RingReader(ring)

    commit = ring.write_many(
        [
            (RESYNC_ALL, "", b"", 1, 0, 10),
            (FRAME_SNAPSHOT, CHANNEL, b"snapshot", 2, 5, 11),
            (RESYNC_CHANNEL, CHANNEL, b"", 3, 0, 12),
        ]
    )

    assert commit == ring.commit_pos
    records = reader.read_available()
    assert [(record.kind, record.seq) for record in records] == [
        (RESYNC_ALL, 1),
        (FRAME_SNAPSHOT, 2),
        (RESYNC_CHANNEL, 3),
    ]
    assert ring.write_many([]) == commit


def test_wrap_writes_pad_record(ring):
    reader = RingReader(ring, start_pos=0)
    # Three records of the 16384-byte limit and one of 15384 bytes leave a tail of 1000.
    for seq in range(1, 4):
        write_sized(ring, 16384, seq)
    write_sized(ring, 15384, 4)
    assert ring.commit_pos == MIN_CAPACITY - 1000
    # Record 5 goes to offset 0 and overwrites record 1, so read 1 to 4 first.
    records = read_all(reader)

    commit = write_sized(ring, 2000, 5)

    assert commit == MIN_CAPACITY + 2000
    pad = os.pread(ring.fd, RECORD_HEADER_SIZE, HEADER_SIZE + MIN_CAPACITY - 1000)
    assert decode_record(pad).kind == PAD
    records += read_all(reader)
    assert [record.seq for record in records] == [1, 2, 3, 4, 5]
    assert records[-1].pos == MIN_CAPACITY
    assert ring.records_written == 5
    assert reader.overrun is False


def test_wrap_skips_tail_shorter_than_header(ring):
    reader = RingReader(ring, start_pos=0)
    # A 16-byte tail cannot hold a PAD record, so readers skip it by arithmetic.
    for seq in range(1, 4):
        write_sized(ring, 16384, seq)
    write_sized(ring, 16368, 4)
    assert ring.commit_pos == MIN_CAPACITY - 16
    os.pwrite(ring.fd, b"\xff" * 16, HEADER_SIZE + MIN_CAPACITY - 16)
    records = read_all(reader)

    commit = write_sized(ring, 48, 5)

    assert commit == MIN_CAPACITY + 48
    records += read_all(reader)
    assert [record.seq for record in records] == [1, 2, 3, 4, 5]
    assert records[-1].pos == MIN_CAPACITY
    assert reader.overrun is False


def test_exact_fit_needs_no_pad(ring):
    reader = RingReader(ring, start_pos=0)
    for seq in range(1, 5):
        write_sized(ring, 16384, seq)

    assert ring.commit_pos == MIN_CAPACITY
    records = read_all(reader)
    write_sized(ring, 48, 5)

    records += read_all(reader)
    assert [record.pos for record in records] == [0, 16384, 32768, 49152, MIN_CAPACITY]


def test_reader_follows_many_wraps(ring):
    reader = RingReader(ring, start_pos=0)
    seen = []
    for seq in range(1, 2001):
        size = 48 + (seq * 7919) % 8000 // 8 * 8
        write_sized(ring, size, seq)
        if seq % 3 == 0:
            seen.extend(record.seq for record in reader.read_available())
    seen.extend(record.seq for record in read_all(reader))

    assert ring.commit_pos // MIN_CAPACITY >= 10
    assert seen == list(range(1, 2001))
    assert reader.overruns == 0


def test_write_rejects_record_above_limit(ring):
    limit = MIN_CAPACITY // 4
    ring.write(FRAME_DELTA, CHANNEL, payload_for_size(limit), 1, 1, 1)

    with pytest.raises(RecordTooLargeError) as error:
        ring.write(FRAME_DELTA, CHANNEL, payload_for_size(limit + 8), 2, 1, 1)

    message = str(error.value)
    assert str(limit + 8) in message
    assert str(limit) in message
    assert "LIVEGATE_RING_SIZE_MB" in message
    assert ring.records_written == 1


def test_write_never_lowers_reserve_pos(ring):
    write_sized(ring, 64, 1)
    # A writer that crashed after reserving 4096 bytes left reserve_pos above commit_pos.
    os.pwrite(ring.fd, struct.pack("<Q", 64 + 4096), 16)

    commit = write_sized(ring, 64, 2)

    assert commit == 128
    assert ring.reserve_pos == 64 + 4096


# Overruns


def test_overtaken_reader_reports_overrun(ring):
    reader = RingReader(ring, start_pos=0)
    for seq in range(1, 11):
        write_sized(ring, 8192, seq)

    records = reader.read_available()

    assert records == []
    assert reader.overrun is True
    assert reader.overruns == 1
    assert reader.position == ring.commit_pos

    write_sized(ring, 64, 11)
    assert [record.seq for record in reader.read_available()] == [11]
    assert reader.overrun is True
    reader.clear_overrun()
    assert reader.overrun is False
    assert reader.overruns == 1


def test_overrun_returns_records_copied_before(ring, monkeypatch):
    reader = RingReader(ring, start_pos=0)
    for seq in range(1, 4):
        write_sized(ring, 64, seq)
    real_reserve_pos = Ring.reserve_pos
    loads = []

    def reserve_pos_with_writer_running(self):
        # Load 1 is the check before the loop and load 2 the check of record 1. Before
        # load 3, after the copy of record 2, the writer runs a whole lap and overwrites
        # records 2 and 3, as a concurrent writer process could.
        loads.append(1)
        if len(loads) == 3:
            for seq in range(100, 106):
                write_sized(self, 16384, seq)
        return real_reserve_pos.fget(self)

    monkeypatch.setattr(Ring, "reserve_pos", property(reserve_pos_with_writer_running))
    records = reader.read_available()
    monkeypatch.undo()

    assert [record.seq for record in records] == [1]
    assert reader.overrun is True
    assert reader.position == ring.commit_pos
    assert reader.corrupt_records == 0


def test_reader_rejects_record_being_overwritten(ring):
    for seq in range(1, 4):
        write_sized(ring, 16384, seq)
    write_sized(ring, 16376, 4)
    reader = RingReader(ring, start_pos=0)
    # The writer reserved the next 128 bytes, which wrap onto record 1, and has copied
    # half of them when the reader looks. commit_pos has not moved.
    commit = ring.commit_pos
    os.pwrite(ring.fd, struct.pack("<Q", commit + 8 + 128), 16)
    os.pwrite(ring.fd, b"\xab" * 64, HEADER_SIZE)

    records = reader.read_available()

    assert records == []
    assert reader.overrun is True
    assert reader.corrupt_records == 0


def test_reserve_affects_only_overlapped_records(ring):
    for seq in range(1, 4):
        write_sized(ring, 16384, seq)
    write_sized(ring, 16376, 4)
    behind = RingReader(ring, start_pos=0)
    ahead = RingReader(ring, start_pos=16384)
    # The writer reserved a 16384-byte record that wraps onto record 1 and no further.
    os.pwrite(ring.fd, struct.pack("<Q", ring.commit_pos + 8 + 16384), 16)

    assert behind.read_available() == []
    assert behind.overrun is True
    assert [record.seq for record in ahead.read_available()] == [2, 3, 4]
    assert ahead.overrun is False


def test_reader_skips_corrupt_committed_record(ring, caplog):
    reader = RingReader(ring, start_pos=0)
    for seq in range(1, 4):
        write_sized(ring, 64, seq)
    # Flip one payload byte of record 2, which the writer never overwrote.
    byte = os.pread(ring.fd, 1, HEADER_SIZE + 64 + 50)
    os.pwrite(ring.fd, bytes([byte[0] ^ 1]), HEADER_SIZE + 64 + 50)

    records = reader.read_available()

    assert [record.seq for record in records] == [1]
    assert reader.overrun is True
    assert reader.corrupt_records == 1
    assert reader.position == ring.commit_pos
    assert "CRC" in caplog.text


def test_reader_skips_record_with_invalid_length(ring, caplog):
    reader = RingReader(ring, start_pos=0)
    write_sized(ring, 64, 1)
    os.pwrite(ring.fd, struct.pack("<I", 3), HEADER_SIZE)

    assert reader.read_available() == []
    assert reader.corrupt_records == 1
    assert "invalid length 3" in caplog.text


# Header fields


def test_subscriber_status_defaults(ring):
    status = ring.subscriber_status()

    assert status.pid == 0
    assert status.state == SubscriberState.STARTING
    assert status.heartbeat == 0.0
    assert status.last_seq == 0
    assert status.epoch == ""


def test_set_subscriber_status_leaves_none_unchanged(ring):
    now = time.time()
    ring.set_subscriber_status(
        pid=1234,
        state=SubscriberState.CONNECTED,
        heartbeat=now,
        last_seq=77,
        epoch="0123456789abcdef",
    )
    ring.set_subscriber_status(state=SubscriberState.DISCONNECTED)

    status = ring.subscriber_status()
    assert status.pid == 1234
    assert status.state == SubscriberState.DISCONNECTED
    assert status.heartbeat == now
    assert status.last_seq == 77
    assert status.epoch == "0123456789abcdef"

    ring.set_subscriber_status(epoch="short")
    assert ring.subscriber_status().epoch == "short"


def test_subscriber_state_aliases():
    assert ring_module.SUBSCRIBER_STARTING == 0
    assert ring_module.SUBSCRIBER_CONNECTED == 1
    assert ring_module.SUBSCRIBER_DISCONNECTED == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"epoch": "x" * 17}, "at most 16"),
        ({"epoch": "é"}, "ASCII"),
        ({"epoch": "a\0b"}, "NUL"),
        ({"state": 3}, "subscriber state 3"),
        ({"pid": -1}, "subscriber pid -1"),
        ({"pid": 2**32}, "subscriber pid"),
        ({"last_seq": -1}, "last_seq=-1"),
        ({"heartbeat": "now"}, "heartbeat 'now'"),
    ],
)
def test_set_subscriber_status_rejects_invalid(ring, arguments, message):
    ring.set_subscriber_status(pid=5, epoch="before")
    valid_and_invalid = {"last_seq": 9, "heartbeat": 5.0, **arguments}

    with pytest.raises(ValueError, match=message):
        ring.set_subscriber_status(**valid_and_invalid)

    # Validation runs before any store, so the valid fields were not stored either.
    status = ring.subscriber_status()
    assert status.last_seq == 0
    assert status.heartbeat == 0.0
    assert status.pid == 5
    assert status.state == SubscriberState.STARTING
    assert status.epoch == "before"


def test_slots_claim_update_release(ring):
    write_sized(ring, 64, 1)
    before = time.time()

    ring.claim_slot(0, 1000)
    ring.claim_slot(63, 1063)

    assert ring.active_slots() == [(0, 1000), (63, 1063)]
    status = ring.slot_status(0)
    assert status.index == 0
    assert status.pid == 1000
    assert status.read_pos == 64
    assert status.heartbeat >= before
    assert status.overruns == 0

    ring.update_slot(0, 128, heartbeat=12345.5)
    assert ring.add_slot_overrun(0) == 1
    assert ring.add_slot_overrun(0) == 2
    status = ring.slot_status(0)
    assert status.read_pos == 128
    assert status.heartbeat == 12345.5
    assert status.overruns == 2

    ring.update_slot(0, 192)
    assert ring.slot_status(0).heartbeat >= before

    ring.release_slot(0)
    assert ring.active_slots() == [(63, 1063)]
    assert ring.slot_status(0) == (0, 0, 0, 0.0, 0)


def test_claim_slot_resets_previous_owner(ring):
    ring.claim_slot(5, 1)
    ring.add_slot_overrun(5)

    ring.claim_slot(5, 2)

    assert ring.slot_status(5).pid == 2
    assert ring.slot_status(5).overruns == 0


@pytest.mark.parametrize("index", [-1, MAX_SLOTS, True, "0"])
def test_slot_index_out_of_range(ring, index):
    with pytest.raises(IndexError, match="out of range 0..63"):
        ring.slot_status(index)
    with pytest.raises(IndexError):
        ring.claim_slot(index, 10)


@pytest.mark.parametrize("pid", [0, -5, 2**32, 1.0])
def test_claim_slot_rejects_invalid_pid(ring, pid):
    with pytest.raises(ValueError, match="reader pid"):
        ring.claim_slot(0, pid)
