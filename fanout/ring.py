"""Shared-memory ring of SSE frame records: one writer process, many lock-free readers.

The Redis subscriber process is the only writer. Every gunicorn worker process reads
every record through its own `RingReader`. The gunicorn master creates the ring before
it forks the workers, so the workers inherit the mapping, and it passes `ring.fd` to the
subscriber with ``subprocess.Popen(..., pass_fds=[ring.fd])``, which calls `Ring.attach`.

This module uses only the standard library. It must import without gevent because the
subscriber process does not run gevent, and workers call it from their own greenlet.

Header layout (the first HEADER_SIZE bytes, little-endian, fixed offsets):

    offset  size  field
         0     4  magic, b"LGR1"
         4     4  layout version (LAYOUT_VERSION)
         8     8  capacity of the data area in bytes
        16     8  reserve_pos: end of the record being written
        24     8  commit_pos: end of the last complete record
        32     4  subscriber_pid
        36     4  subscriber_state (SubscriberState)
        40     8  subscriber_heartbeat, f64 time.time()
        48     8  last_seq: global seq of the last record written
        56    16  epoch, ASCII, NUL padded
        72    16  ring_id, ASCII
        88     8  records_written (PAD records are not counted)
        96    32  unused, so that the slot table starts on its own cache line
       128  2048  MAX_SLOTS reader slots of SLOT_SIZE bytes each:
                    +0 pid u32, +4 unused u32, +8 read_pos u64,
                    +16 heartbeat f64 time.time(), +24 overruns u64
      2176  1920  unused

Record layout (at offset ``pos % capacity`` of the data area, 8-byte aligned):

    offset  size  field
         0     4  length: header + channel + payload bytes, without the alignment padding
         4     4  crc32 (zlib.crc32) of bytes 8 .. length
         8     8  seq: global sequence of the update
        16     8  version: channel version
        24     8  publish_ts_ms
        32     1  kind (RecordKind)
        33     1  reserved, 0
        34     2  channel length in bytes
        36     -  channel (UTF-8), then payload (the SSE frame)

A record occupies its length rounded up to a multiple of 8 and never wraps. When it
does not fit before the end of the data area, the writer fills the tail with a PAD record
and starts again at offset 0. A tail shorter than RECORD_HEADER_SIZE cannot hold a PAD
record, so the writer leaves it unwritten and readers skip it by arithmetic.

Positions are monotonic byte counts (total bytes ever placed, PAD tails included). A u64
position does not wrap in practice, because 2**64 bytes take 584 years at 1 GB/s.
The writer sets reserve_pos to the end of a record before it touches the data bytes, and
sets commit_pos to the same value after. Readers only read below commit_pos. A reader's
copy of the record at ``pos`` is intact if ``reserve_pos <= pos + capacity`` is still true
after the copy, because the writer has then not started to overwrite it.

Memory ordering: a slice assignment or a slice read of an mmap object is one memcpy. On a
little-endian host, CPython's Modules/_struct.c uses its native functions for the '<'
integer codes, and these read and write a field with one fixed-size memcpy. Compilers emit
that as one 8-byte load or store for an aligned '<Q' on x86-64. The 'd' code has no such
fast path, so this module stores f64 fields through their u64 bit pattern.
x86-64 is TSO: stores are not reordered with other stores, and loads are not reordered with
other loads. So a reader that sees a commit_pos also sees the record bytes below it, and a
reader that copied an overwritten byte then also sees the reserve_pos that announced it.
On weaker architectures, such as ARM, neither is guaranteed and the CRC check is what
catches a torn record.
NOTE: only x86-64 has been tested. On ARM a reader may miss a reserve_pos update and
return a complete newer record in place of the one at its position, which the CRC cannot
catch.
"""

from __future__ import annotations

import enum
import logging
import math
import mmap
import os
import secrets
import struct
import time
import zlib
from collections.abc import Iterable
from typing import NamedTuple

logger = logging.getLogger(__name__)

MAGIC = b"LGR1"
LAYOUT_VERSION = 1
HEADER_SIZE = 4096
MAX_SLOTS = 64
SLOT_SIZE = 32
MIN_CAPACITY = 64 * 1024
RECORD_ALIGNMENT = 8
RECORD_HEADER_SIZE = 36
EPOCH_SIZE = 16
RING_ID_SIZE = 16
RING_SIZE_SETTING = "LIVEGATE_RING_SIZE_MB"

# read_available() copies at most this many records per call by default, which bounds the
# time one call keeps a gevent worker's event loop busy.
DEFAULT_MAX_RECORDS = 1024

_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_U16_MAX = 0xFFFF

_MAGIC_OFFSET = 0
_LAYOUT_VERSION_OFFSET = 4
_CAPACITY_OFFSET = 8
_RESERVE_POS_OFFSET = 16
_COMMIT_POS_OFFSET = 24
_SUBSCRIBER_PID_OFFSET = 32
_SUBSCRIBER_STATE_OFFSET = 36
_SUBSCRIBER_HEARTBEAT_OFFSET = 40
_LAST_SEQ_OFFSET = 48
_EPOCH_OFFSET = 56
_RING_ID_OFFSET = 72
_RECORDS_WRITTEN_OFFSET = 88
_SLOTS_OFFSET = 128

_SLOT_PID_OFFSET = 0
_SLOT_READ_POS_OFFSET = 8
_SLOT_HEARTBEAT_OFFSET = 16
_SLOT_OVERRUNS_OFFSET = 24

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
# The pid field of every reader slot, from the pid of slot 0 on. One unpack_from reads
# them all, and still reads each pid with one fixed-size load (see "Memory ordering").
_SLOT_PIDS = struct.Struct("<" + f"I{SLOT_SIZE - 4}x" * MAX_SLOTS)
_RECORD_HEADER = struct.Struct("<IIQQQBBH")
_CRC_START = 8

# Maximum number of reads of the 16-byte epoch until two consecutive reads are equal.
_EPOCH_READ_ATTEMPTS = 4

assert _RECORD_HEADER.size == RECORD_HEADER_SIZE
assert _SLOTS_OFFSET + MAX_SLOTS * SLOT_SIZE <= HEADER_SIZE


class RecordKind(enum.IntEnum):
    """Kind byte of a ring record."""

    FRAME_SNAPSHOT = 1
    FRAME_DELTA = 2
    # Readers must send a snapshot of the channel to its clients. The payload is empty.
    RESYNC_CHANNEL = 3
    # Readers must resynchronise every client, for example after an epoch change.
    # The channel is empty.
    RESYNC_ALL = 4
    # Internal filler of the data area's tail. Readers skip to the next multiple of the
    # capacity and never return it.
    PAD = 5
    # An alias changed: the channel is the alias, the payload its new target
    # in UTF-8 (empty once the alias is removed).
    ALIAS = 6


FRAME_SNAPSHOT = RecordKind.FRAME_SNAPSHOT
FRAME_DELTA = RecordKind.FRAME_DELTA
RESYNC_CHANNEL = RecordKind.RESYNC_CHANNEL
RESYNC_ALL = RecordKind.RESYNC_ALL
PAD = RecordKind.PAD
ALIAS = RecordKind.ALIAS

_PUBLIC_KINDS = frozenset((FRAME_SNAPSHOT, FRAME_DELTA, RESYNC_CHANNEL, RESYNC_ALL, ALIAS))


class SubscriberState(enum.IntEnum):
    """Connection state of the Redis subscriber process, as it last reported it."""

    STARTING = 0
    CONNECTED = 1
    DISCONNECTED = 2


SUBSCRIBER_STARTING = SubscriberState.STARTING
SUBSCRIBER_CONNECTED = SubscriberState.CONNECTED
SUBSCRIBER_DISCONNECTED = SubscriberState.DISCONNECTED


class RingLayoutError(ValueError):
    """Memory that is not a ring of this layout version, or a header field out of range."""


class RecordTooLargeError(ValueError):
    """Record that is larger than a quarter of the ring capacity."""


class CorruptRecordError(ValueError):
    """Record bytes that fail validation: bad length, CRC, kind or channel encoding."""


_RECORD_KINDS = {kind.value: kind for kind in RecordKind}


class Record(NamedTuple):
    """One record read from the ring, or decoded by `decode_record`."""

    seq: int
    version: int
    publish_ts_ms: int
    kind: RecordKind
    channel: str
    payload: bytes
    # Start position of the record: total bytes placed in the ring before it.
    pos: int = 0


class SubscriberStatus(NamedTuple):
    """Subscriber fields of the ring header."""

    pid: int
    state: SubscriberState
    heartbeat: float
    last_seq: int
    epoch: str


class SlotStatus(NamedTuple):
    """Fields of one reader slot. A pid of 0 means the slot is free."""

    index: int
    pid: int
    read_pos: int
    heartbeat: float
    overruns: int


def capacity_from_mib(size_mib: float) -> int:
    """Convert the LIVEGATE_RING_SIZE_MB setting to a data capacity in bytes.

    The result is rounded down to a multiple of RECORD_ALIGNMENT. Raises ValueError
    naming the value if it is not a finite number or gives less than MIN_CAPACITY.
    """
    if isinstance(size_mib, bool) or not isinstance(size_mib, (int, float)):
        raise ValueError(
            f"{RING_SIZE_SETTING}={size_mib!r} is invalid: expected a number of MiB."
        )
    if not math.isfinite(size_mib):
        raise ValueError(
            f"{RING_SIZE_SETTING}={size_mib!r} is invalid: expected a finite number of MiB."
        )

    capacity = int(size_mib * 1024 * 1024)
    capacity -= capacity % RECORD_ALIGNMENT
    if capacity < MIN_CAPACITY:
        raise ValueError(
            f"{RING_SIZE_SETTING}={size_mib!r} is too small: the ring needs at least "
            f"{MIN_CAPACITY // 1024} KiB ({MIN_CAPACITY / (1024 * 1024)} MiB)."
        )
    return capacity


def _align(size: int) -> int:
    return (size + RECORD_ALIGNMENT - 1) & ~(RECORD_ALIGNMENT - 1)


def _validate_capacity(capacity: int) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise ValueError(f"ring capacity {capacity!r} is invalid: expected an int of bytes.")
    if capacity < MIN_CAPACITY:
        raise ValueError(
            f"ring capacity of {capacity} bytes is too small: the minimum is "
            f"{MIN_CAPACITY} bytes (64 KiB). Increase {RING_SIZE_SETTING}."
        )
    if capacity % RECORD_ALIGNMENT:
        raise ValueError(
            f"ring capacity of {capacity} bytes is invalid: it must be a multiple of "
            f"{RECORD_ALIGNMENT} so that every record starts aligned."
        )


def _is_u32(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U32_MAX


def _validate_u64(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name}={value!r} is invalid: expected an int in 0..2**64-1.")


def _validate_kind(kind: int) -> RecordKind:
    try:
        # A dict lookup, as in decode_record: about 20 ns, against 320 ns for the enum call.
        record_kind = _RECORD_KINDS.get(kind)
    except TypeError:
        record_kind = None
    if record_kind not in _PUBLIC_KINDS:
        valid = ", ".join(f"{k.name}={k.value}" for k in sorted(_PUBLIC_KINDS))
        kind_text = int(kind) if isinstance(kind, int) else repr(kind)
        raise ValueError(f"record kind {kind_text} is invalid: expected one of {valid}.")
    return record_kind


def _encode_channel(channel: str) -> bytes:
    if not isinstance(channel, str):
        raise ValueError(f"channel {channel!r} is invalid: expected a str.")
    try:
        channel_bytes = channel.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"channel {channel!r} cannot be encoded as UTF-8: {exc}") from exc
    if len(channel_bytes) > _U16_MAX:
        raise ValueError(
            f"channel of {len(channel_bytes)} UTF-8 bytes is too long: the maximum is "
            f"{_U16_MAX} bytes."
        )
    return channel_bytes


def _validate_kind_fields(kind: RecordKind, channel_bytes: bytes, payload: bytes) -> None:
    if kind == RESYNC_ALL:
        if channel_bytes:
            raise ValueError(
                "a RESYNC_ALL record applies to every channel, so its channel must be empty."
            )
        return
    if not channel_bytes:
        raise ValueError(f"a {kind.name} record needs a channel, but the channel is empty.")
    if kind == RESYNC_CHANNEL and len(payload):
        raise ValueError(
            f"a RESYNC_CHANNEL record must have an empty payload, not {len(payload)} bytes."
        )


def _build_record(
    kind: RecordKind,
    channel_bytes: bytes,
    payload: bytes,
    seq: int,
    version: int,
    publish_ts_ms: int,
) -> bytes:
    length = RECORD_HEADER_SIZE + len(channel_bytes) + len(payload)
    if length > _U32_MAX:
        raise RecordTooLargeError(
            f"record of {length} bytes is too large: the u32 length field cannot exceed "
            f"{_U32_MAX}."
        )

    # The alignment padding is zero-filled so that no stale bytes of older records remain.
    buffer = bytearray(_align(length))
    channel_end = RECORD_HEADER_SIZE + len(channel_bytes)
    buffer[RECORD_HEADER_SIZE:channel_end] = channel_bytes
    buffer[channel_end:length] = payload
    _RECORD_HEADER.pack_into(
        buffer, 0, length, 0, seq, version, publish_ts_ms, kind, 0, len(channel_bytes)
    )
    with memoryview(buffer) as view:
        crc = zlib.crc32(view[_CRC_START:length])
    _U32.pack_into(buffer, 4, crc)
    return bytes(buffer)


def encode_record(
    kind: int,
    channel: str,
    payload: bytes,
    seq: int,
    version: int,
    publish_ts_ms: int,
) -> bytes:
    """Encode a record, padded with zero bytes to a multiple of RECORD_ALIGNMENT.

    Raises ValueError naming the field for any of these:
    - a kind other than FRAME_SNAPSHOT, FRAME_DELTA, RESYNC_CHANNEL or RESYNC_ALL,
    - an integer outside the u64 range,
    - a channel longer than 65535 UTF-8 bytes,
    - an empty channel on any kind but RESYNC_ALL, or a channel on RESYNC_ALL,
    - a payload on RESYNC_CHANNEL.
    """
    record_kind = _validate_kind(kind)
    channel_bytes = _encode_channel(channel)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ValueError(f"payload of type {type(payload).__name__} is invalid: expected bytes.")
    _validate_u64("seq", seq)
    _validate_u64("version", version)
    _validate_u64("publish_ts_ms", publish_ts_ms)
    _validate_kind_fields(record_kind, channel_bytes, payload)
    return _build_record(record_kind, channel_bytes, payload, seq, version, publish_ts_ms)


def _encode_pad_record() -> bytes:
    return _build_record(PAD, b"", b"", 0, 0, 0)


def decode_record(buf: bytes, pos: int = 0) -> Record:
    """Decode the record at the start of `buf`, which may extend past the record.

    `pos` becomes `Record.pos`. Raises CorruptRecordError if the length field is out of
    range, the CRC does not match, the kind is unknown or the channel is not UTF-8.
    PAD records decode like any other record.
    """
    if len(buf) < RECORD_HEADER_SIZE:
        raise CorruptRecordError(
            f"record at position {pos} is truncated: {len(buf)} bytes is less than the "
            f"{RECORD_HEADER_SIZE}-byte header."
        )

    length, crc, seq, version, publish_ts_ms, kind, _reserved, channel_length = (
        _RECORD_HEADER.unpack_from(buf, 0)
    )
    if not RECORD_HEADER_SIZE + channel_length <= length <= len(buf):
        raise CorruptRecordError(
            f"record at position {pos} has an invalid length {length}: the header and "
            f"a {channel_length}-byte channel need at least "
            f"{RECORD_HEADER_SIZE + channel_length}, and {len(buf)} bytes are available."
        )

    with memoryview(buf) as view:
        actual_crc = zlib.crc32(view[_CRC_START:length])
        if actual_crc != crc:
            raise CorruptRecordError(
                f"record at position {pos} failed the CRC check: stored {crc:#010x}, "
                f"computed {actual_crc:#010x}."
            )

        # A dict lookup takes about 20 ns, calling the enum about 320 ns per record.
        record_kind = _RECORD_KINDS.get(kind)
        if record_kind is None:
            raise CorruptRecordError(
                f"record at position {pos} has an unknown kind {kind}."
            )

        channel_end = RECORD_HEADER_SIZE + channel_length
        try:
            channel = str(view[RECORD_HEADER_SIZE:channel_end], "utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptRecordError(
                f"record at position {pos} has a channel that is not valid UTF-8: {exc}"
            ) from exc
        payload = bytes(view[channel_end:length])

    return Record(seq, version, publish_ts_ms, record_kind, channel, payload, pos)


def _validate_ascii_field(name: str, value: str, size: int) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{name} {value!r} is invalid: expected a str.")
    try:
        encoded = value.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{name} {value!r} is invalid: it must be ASCII.") from None
    if len(encoded) > size or b"\0" in encoded:
        raise ValueError(
            f"{name} {value!r} is invalid: it must be at most {size} characters "
            f"without NUL characters."
        )
    return encoded


class Ring:
    """Shared-memory ring: HEADER_SIZE header bytes followed by `capacity` data bytes.

    Build one with `Ring.create` or `Ring.attach`. Only one process, the subscriber,
    may call `write`, because writes take no lock. Any number of processes may read.
    """

    def __init__(self, fd: int, mapping: mmap.mmap, *, close_fd: bool) -> None:
        self._fd = fd
        self._mmap = mapping
        self._close_fd = close_fd
        self._closed = False
        self.capacity: int = self._load_u64(_CAPACITY_OFFSET)
        # A quarter of the capacity, so that a PAD tail wastes less than a quarter of a lap.
        self.max_record_size: int = min(self.capacity // 4, _U32_MAX)
        self.ring_id: str = self._load_ascii(_RING_ID_OFFSET, RING_ID_SIZE)

    @classmethod
    def create(cls, size_bytes: int) -> Ring:
        """Create a ring with `size_bytes` of data capacity in a new memfd.

        The fd is not inheritable across exec, so a child process gets it only when it
        is passed explicitly with ``subprocess.Popen(..., pass_fds=[ring.fd])``. Forked
        children inherit the fd and the shared mapping. Raises ValueError naming
        `size_bytes` if it is less than MIN_CAPACITY or not a multiple of RECORD_ALIGNMENT.
        """
        _validate_capacity(size_bytes)

        total = HEADER_SIZE + size_bytes
        # Flags 0 would leave the fd inheritable by every program the master executes,
        # and pass_fds makes a non-inheritable fd inheritable in that one child.
        fd = os.memfd_create("livegate-ring", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, total)
            mapping = mmap.mmap(fd, total, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise

        # ftruncate zero-fills, so positions, counters and slots start at 0 and the
        # subscriber state at STARTING.
        _U32.pack_into(mapping, _LAYOUT_VERSION_OFFSET, LAYOUT_VERSION)
        _U64.pack_into(mapping, _CAPACITY_OFFSET, size_bytes)
        ring_id = secrets.token_hex(RING_ID_SIZE // 2).encode("ascii")
        mapping[_RING_ID_OFFSET : _RING_ID_OFFSET + RING_ID_SIZE] = ring_id
        mapping[_MAGIC_OFFSET : _MAGIC_OFFSET + len(MAGIC)] = MAGIC
        return cls(fd, mapping, close_fd=True)

    @classmethod
    def attach(cls, fd: int, *, close_fd: bool = True) -> Ring:
        """Map the ring in an existing fd, such as one received through pass_fds.

        If `close_fd` is true, `close()` also closes `fd`. Raises RingLayoutError if the
        magic, the layout version, the capacity or the size of the fd do not match.
        """
        size = os.fstat(fd).st_size
        if size < HEADER_SIZE:
            raise RingLayoutError(
                f"fd {fd} is not a livegate ring: its size of {size} bytes is less than "
                f"the {HEADER_SIZE}-byte header. Pass the fd of Ring.create()."
            )

        mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            _validate_header(fd, mapping, size)
        except BaseException:
            mapping.close()
            raise
        return cls(fd, mapping, close_fd=close_fd)

    @property
    def fd(self) -> int:
        """File descriptor of the memfd that backs the ring."""
        return self._fd

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Unmap the ring and close the fd if this object owns it. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._mmap.close()
        if self._close_fd:
            os.close(self._fd)

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Single loads and stores of aligned fields, see "Memory ordering" in the module docstring.

    def _load_u32(self, offset: int) -> int:
        return _U32.unpack_from(self._mmap, offset)[0]

    def _store_u32(self, offset: int, value: int) -> None:
        _U32.pack_into(self._mmap, offset, value)

    def _load_u64(self, offset: int) -> int:
        return _U64.unpack_from(self._mmap, offset)[0]

    def _store_u64(self, offset: int, value: int) -> None:
        _U64.pack_into(self._mmap, offset, value)

    def _load_f64(self, offset: int) -> float:
        return _F64.unpack(_U64.pack(self._load_u64(offset)))[0]

    def _store_f64(self, offset: int, value: float) -> None:
        self._store_u64(offset, _U64.unpack(_F64.pack(value))[0])

    def _load_ascii(self, offset: int, size: int) -> str:
        return self._mmap[offset : offset + size].rstrip(b"\0").decode("ascii", "replace")

    # Positions and counters

    @property
    def commit_pos(self) -> int:
        """End position of the last complete record."""
        return self._load_u64(_COMMIT_POS_OFFSET)

    @property
    def reserve_pos(self) -> int:
        """End position of the record being written. It equals commit_pos between writes."""
        return self._load_u64(_RESERVE_POS_OFFSET)

    @property
    def records_written(self) -> int:
        """Number of records written since the ring was created, PAD records excluded."""
        return self._load_u64(_RECORDS_WRITTEN_OFFSET)

    # Writer

    def write(
        self,
        kind: int,
        channel: str,
        payload: bytes,
        seq: int,
        version: int,
        publish_ts_ms: int,
    ) -> int:
        """Append one record and return the new commit_pos.

        Only one process may write, because the writer takes no lock. Raises
        RecordTooLargeError for a record larger than `max_record_size`, and ValueError
        for the invalid fields listed in `encode_record`.
        """
        record = encode_record(kind, channel, payload, seq, version, publish_ts_ms)
        size = len(record)
        if size > self.max_record_size:
            raise RecordTooLargeError(
                f"record of {size} bytes for channel {channel!r} (seq {seq}) is larger than "
                f"the limit of {self.max_record_size} bytes, a quarter of the ring capacity. "
                f"Increase {RING_SIZE_SETTING} to accept records of this size."
            )

        commit = self._load_u64(_COMMIT_POS_OFFSET)
        offset = commit % self.capacity
        tail = self.capacity - offset
        start = commit
        if size > tail:
            start = commit + tail
        end = start + size

        # A writer that crashed between its reserve and its commit may have left
        # reserve_pos above commit_pos, with bytes of the previous lap already overwritten
        # up to it. Lowering it would let readers accept those bytes as the older record.
        reserve = max(end, self._load_u64(_RESERVE_POS_OFFSET))
        self._store_u64(_RESERVE_POS_OFFSET, reserve)

        data_offset = HEADER_SIZE + start % self.capacity
        if start != commit and tail >= RECORD_HEADER_SIZE:
            pad_offset = HEADER_SIZE + offset
            pad = _encode_pad_record()
            self._mmap[pad_offset : pad_offset + len(pad)] = pad
        self._mmap[data_offset : data_offset + size] = record

        self._store_u64(_COMMIT_POS_OFFSET, end)
        self._store_u64(_RECORDS_WRITTEN_OFFSET, self._load_u64(_RECORDS_WRITTEN_OFFSET) + 1)
        self._store_u64(_LAST_SEQ_OFFSET, seq)
        return end

    def write_many(self, records: Iterable[tuple[int, str, bytes, int, int, int]]) -> int:
        """Append records given as `write` argument tuples and return the new commit_pos.

        Each record is committed on its own, so readers may see a prefix of the batch.
        A record that raises stops the batch after the records before it were committed.
        """
        commit = self.commit_pos
        for kind, channel, payload, seq, version, publish_ts_ms in records:
            commit = self.write(kind, channel, payload, seq, version, publish_ts_ms)
        return commit

    # Subscriber status

    def subscriber_status(self) -> SubscriberStatus:
        """Read the subscriber fields of the header.

        Each numeric field is one aligned load, so it is never torn, but the fields are
        read one by one and may come from different updates.
        """
        state = self._load_u32(_SUBSCRIBER_STATE_OFFSET)
        try:
            subscriber_state = SubscriberState(state)
        except ValueError:
            raise RingLayoutError(
                f"ring {self.ring_id} has an invalid subscriber state {state}."
            ) from None
        return SubscriberStatus(
            pid=self._load_u32(_SUBSCRIBER_PID_OFFSET),
            state=subscriber_state,
            heartbeat=self._load_f64(_SUBSCRIBER_HEARTBEAT_OFFSET),
            last_seq=self._load_u64(_LAST_SEQ_OFFSET),
            epoch=self._load_epoch(),
        )

    def _load_epoch(self) -> str:
        # The 16-byte epoch is one memcpy, not one store, so a read that overlaps a change
        # can return a mix of both values. Two equal consecutive reads mean that no change
        # overlapped the second one.
        previous = self._mmap[_EPOCH_OFFSET : _EPOCH_OFFSET + EPOCH_SIZE]
        for _ in range(_EPOCH_READ_ATTEMPTS - 1):
            current = self._mmap[_EPOCH_OFFSET : _EPOCH_OFFSET + EPOCH_SIZE]
            if current == previous:
                break
            previous = current
        return previous.rstrip(b"\0").decode("ascii", "replace")

    def set_subscriber_status(
        self,
        *,
        pid: int | None = None,
        state: SubscriberState | int | None = None,
        heartbeat: float | None = None,
        last_seq: int | None = None,
        epoch: str | None = None,
    ) -> None:
        """Store the given subscriber fields and leave the fields passed as None unchanged.

        Only the subscriber process calls this. `epoch` is at most 16 ASCII characters.
        All arguments are validated before any field is stored.
        """
        if pid is not None and not _is_u32(pid):
            raise ValueError(f"subscriber pid {pid!r} is invalid: expected an int in 0..2**32-1.")
        if state is not None:
            try:
                state = SubscriberState(state)
            except ValueError:
                raise ValueError(
                    f"subscriber state {state!r} is invalid: expected 0 (STARTING), "
                    f"1 (CONNECTED) or 2 (DISCONNECTED)."
                ) from None
        if heartbeat is not None and not isinstance(heartbeat, (int, float)):
            raise ValueError(f"heartbeat {heartbeat!r} is invalid: expected a time.time() float.")
        if last_seq is not None:
            _validate_u64("last_seq", last_seq)
        encoded_epoch = None
        if epoch is not None:
            encoded_epoch = _validate_ascii_field("epoch", epoch, EPOCH_SIZE)
            encoded_epoch = encoded_epoch.ljust(EPOCH_SIZE, b"\0")

        if pid is not None:
            self._store_u32(_SUBSCRIBER_PID_OFFSET, pid)
        if state is not None:
            self._store_u32(_SUBSCRIBER_STATE_OFFSET, state)
        if heartbeat is not None:
            self._store_f64(_SUBSCRIBER_HEARTBEAT_OFFSET, float(heartbeat))
        if last_seq is not None:
            self._store_u64(_LAST_SEQ_OFFSET, last_seq)
        if encoded_epoch is not None:
            self._mmap[_EPOCH_OFFSET : _EPOCH_OFFSET + EPOCH_SIZE] = encoded_epoch

    # Reader slots. The gunicorn master assigns each worker its slot index, so claiming
    # needs no compare-and-swap: only the master writes a slot's pid, and only the worker
    # that owns a slot writes its read_pos, heartbeat and overruns.

    def _slot_offset(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_SLOTS:
            raise IndexError(f"reader slot index {index!r} is out of range 0..{MAX_SLOTS - 1}.")
        return _SLOTS_OFFSET + index * SLOT_SIZE

    def claim_slot(self, index: int, pid: int) -> None:
        """Assign slot `index` to the worker `pid`, resetting its fields.

        Any previous owner is overwritten. read_pos starts at the current commit_pos.
        """
        if not _is_u32(pid) or pid == 0:
            raise ValueError(f"reader pid {pid!r} is invalid: expected an int in 1..2**32-1.")
        offset = self._slot_offset(index)
        self._store_u64(offset + _SLOT_READ_POS_OFFSET, self.commit_pos)
        self._store_f64(offset + _SLOT_HEARTBEAT_OFFSET, time.time())
        self._store_u64(offset + _SLOT_OVERRUNS_OFFSET, 0)
        self._store_u32(offset + _SLOT_PID_OFFSET, pid)

    def release_slot(self, index: int) -> None:
        """Mark slot `index` as free and zero its fields."""
        offset = self._slot_offset(index)
        self._store_u32(offset + _SLOT_PID_OFFSET, 0)
        self._store_u64(offset + _SLOT_READ_POS_OFFSET, 0)
        self._store_f64(offset + _SLOT_HEARTBEAT_OFFSET, 0.0)
        self._store_u64(offset + _SLOT_OVERRUNS_OFFSET, 0)

    def slot_status(self, index: int) -> SlotStatus:
        """Read the fields of slot `index`, one aligned load each."""
        offset = self._slot_offset(index)
        return SlotStatus(
            index=index,
            pid=self._load_u32(offset + _SLOT_PID_OFFSET),
            read_pos=self._load_u64(offset + _SLOT_READ_POS_OFFSET),
            heartbeat=self._load_f64(offset + _SLOT_HEARTBEAT_OFFSET),
            overruns=self._load_u64(offset + _SLOT_OVERRUNS_OFFSET),
        )

    def active_slots(self) -> list[tuple[int, int]]:
        """Return (index, pid) of every slot with a nonzero pid, in index order."""
        # The subscriber calls this after every batch it writes, so it reads the slot
        # table in one call instead of one call per slot.
        pids = _SLOT_PIDS.unpack_from(self._mmap, _SLOTS_OFFSET + _SLOT_PID_OFFSET)
        return [(index, pid) for index, pid in enumerate(pids) if pid]

    def update_slot(self, index: int, read_pos: int, heartbeat: float | None = None) -> None:
        """Store the owner's read position and heartbeat, `time.time()` if None."""
        offset = self._slot_offset(index)
        _validate_u64("read_pos", read_pos)
        if heartbeat is None:
            heartbeat = time.time()
        self._store_u64(offset + _SLOT_READ_POS_OFFSET, read_pos)
        self._store_f64(offset + _SLOT_HEARTBEAT_OFFSET, float(heartbeat))

    def add_slot_overrun(self, index: int) -> int:
        """Increment the overrun count of slot `index` and return the new count.

        This is a plain read-modify-write, correct only because the slot's owner is the
        one process that calls it.
        """
        offset = self._slot_offset(index)
        overruns = self._load_u64(offset + _SLOT_OVERRUNS_OFFSET) + 1
        self._store_u64(offset + _SLOT_OVERRUNS_OFFSET, overruns)
        return overruns


def _validate_header(fd: int, mapping: mmap.mmap, size: int) -> None:
    magic = mapping[_MAGIC_OFFSET : _MAGIC_OFFSET + len(MAGIC)]
    if magic != MAGIC:
        raise RingLayoutError(
            f"fd {fd} is not a livegate ring: its magic is {magic!r}, expected {MAGIC!r}. "
            f"Pass the fd of Ring.create()."
        )

    version = _U32.unpack_from(mapping, _LAYOUT_VERSION_OFFSET)[0]
    if version != LAYOUT_VERSION:
        raise RingLayoutError(
            f"ring in fd {fd} has layout version {version}, but this code reads version "
            f"{LAYOUT_VERSION}. Run the same livegate version in the master, the "
            f"workers and the subscriber."
        )

    capacity = _U64.unpack_from(mapping, _CAPACITY_OFFSET)[0]
    if capacity < MIN_CAPACITY or capacity % RECORD_ALIGNMENT:
        raise RingLayoutError(
            f"ring in fd {fd} has an invalid capacity of {capacity} bytes: expected a "
            f"multiple of {RECORD_ALIGNMENT} of at least {MIN_CAPACITY}."
        )
    if size != HEADER_SIZE + capacity:
        raise RingLayoutError(
            f"ring in fd {fd} is {size} bytes, but its header gives {HEADER_SIZE} + "
            f"{capacity} = {HEADER_SIZE + capacity} bytes. The fd was truncated or resized."
        )


class RingReader:
    """Lock-free reader of one process. It never writes to the ring.

    `overrun` becomes true when the writer overtook the reader, which then skips to
    the commit_pos of that moment. The caller must then resynchronise its clients with
    snapshots and call `clear_overrun()`. `overruns` counts every overrun.
    `corrupt_records` counts records that failed validation although the writer had not
    overwritten them. It stays 0 on x86-64 unless there is a bug or a second writer.
    """

    def __init__(self, ring: Ring, start_pos: int | None = None) -> None:
        self._ring = ring
        commit = ring.commit_pos
        if start_pos is None:
            start_pos = commit
        elif (
            isinstance(start_pos, bool)
            or not isinstance(start_pos, int)
            or not 0 <= start_pos <= commit
            or start_pos % RECORD_ALIGNMENT
        ):
            raise ValueError(
                f"start_pos {start_pos!r} is invalid: expected a record start, a multiple "
                f"of {RECORD_ALIGNMENT} in 0..{commit} (the current commit_pos)."
            )
        self._position = start_pos
        self.overrun = False
        self.overruns = 0
        self.corrupt_records = 0

    @property
    def position(self) -> int:
        """Start position of the next record to read."""
        return self._position

    def lag_bytes(self) -> int:
        """Return the number of committed bytes the reader has not read yet."""
        return max(0, self._ring.commit_pos - self._position)

    def clear_overrun(self) -> None:
        self.overrun = False

    def read_available(self, max_records: int = DEFAULT_MAX_RECORDS) -> list[Record]:
        """Copy up to `max_records` complete records in order, without blocking.

        Never returns a PAD record or a record that fails decode_record. Records that the
        writer may have started to overwrite are discarded, under the memory-ordering
        assumption in the module docstring. On an overrun it returns the records copied
        so far, sets `overrun` and moves `position` to the current commit_pos.
        """
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
            raise ValueError(f"max_records={max_records!r} is invalid: expected an int >= 1.")

        ring = self._ring
        capacity = ring.capacity
        data = ring._mmap
        records: list[Record] = []
        position = self._position
        commit = ring.commit_pos

        if position + capacity < ring.reserve_pos:
            self._report_overrun(position)
            return records

        while position < commit and len(records) < max_records:
            offset = position % capacity
            tail = capacity - offset
            if tail < RECORD_HEADER_SIZE:
                position += tail
                continue

            base = HEADER_SIZE + offset
            length = _U32.unpack_from(data, base)[0]
            if RECORD_HEADER_SIZE <= length <= tail:
                copy = data[base : base + length]
            else:
                # A length that cannot be right means the writer overwrote the record
                # or something is corrupt. The reserve_pos check below decides which.
                copy = b""

            if ring.reserve_pos > position + capacity:
                self._report_overrun(position)
                return records

            try:
                record = decode_record(copy, position)
            except CorruptRecordError as exc:
                self.corrupt_records += 1
                logger.error(
                    "ring %s: skipping to commit_pos after a corrupt record that the writer "
                    "had not overwritten: %s",
                    ring.ring_id,
                    exc if copy else f"invalid length {length} at position {position}",
                )
                self._report_overrun(position)
                return records

            if record.kind == PAD:
                position += tail
                continue

            records.append(record)
            position += _align(length)

        self._position = position
        return records

    def _report_overrun(self, position: int) -> None:
        commit = self._ring.commit_pos
        self.overrun = True
        self.overruns += 1
        self._position = commit
        logger.warning(
            "ring %s: reader in pid %d was overtaken at position %d and skipped %d bytes "
            "to commit_pos %d. Its clients need snapshots.",
            self._ring.ring_id,
            os.getpid(),
            position,
            commit - position,
            commit,
        )
