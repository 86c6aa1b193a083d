"""Compress the replayed match's stream offline at each gzip window size.

Builds the frames that one stream receives during the replay workload,
without a gateway: the first document as a snapshot, then a delta per
change, with ids of the usual length. It passes them through one
compressor per setting, flushed after each frame as the gateway does. Per
setting it prints the body bytes, their share of full documents at every
change, the memory one compressor allocates (traced by tracemalloc, since
CPython's zlib module allocates through PyMem_RawMalloc) and the time per
frame. The match data is found as for the replay workload
(``bench.workloads.shared_data_dir``).

    .venv/bin/python -m bench.compression

The figures here leave out the HTTP chunk framing and what the gateway
adds around the compressor; ``python -m bench run --only replay`` measures
the stream end to end.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import zlib

from bench.workloads import REPLAY_CHANNEL, replay_documents
from ingest.diff import diff
from ingest.publisher import canonical_json
from livegate.compression import (
    COMPRESSION_LEVEL, MAX_WINDOW_BITS, MIN_WINDOW_BITS, mem_level,
)
from livegate.frames import delta_data, encode_frame, snapshot_data

# Compressors allocated at once to measure one; their mean smooths the
# allocator's rounding.
MEMORY_SAMPLE = 100
EPOCH = "0123456789ab"
FIRST_SEQ = 100_000


def replay_frames() -> tuple[list[bytes], int]:
    """Return the replayed stream's frames and the bytes of a full snapshot at every change."""
    frames: list[bytes] = []
    full_bytes = 0
    previous = None
    previous_json = b""
    for document in replay_documents():
        document_json = canonical_json(document)
        if document_json == previous_json:
            continue
        version = len(frames) + 1
        event_id = f"{EPOCH}-{FIRST_SEQ + version}"
        snapshot = encode_frame(b"snapshot", snapshot_data(REPLAY_CHANNEL, version, document_json),
                                event_id)
        full_bytes += len(snapshot)
        if previous is None:
            frames.append(snapshot)
        else:
            patch = canonical_json(diff(previous, document))
            frames.append(encode_frame(b"delta", delta_data(REPLAY_CHANNEL, version, patch),
                                       event_id))
        previous, previous_json = document, document_json
    return frames, full_bytes


def compressor(level: int, window_bits: int):
    return zlib.compressobj(level, zlib.DEFLATED, 16 + window_bits, mem_level(window_bits))


def measure(frames: list[bytes], level: int, window_bits: int) -> dict:
    """Compress ``frames`` with one stream's settings; return bytes, memory and time per frame."""
    stream = compressor(level, window_bits)
    started = time.perf_counter()
    compressed = 0
    for frame in frames:
        compressed += len(stream.compress(frame) + stream.flush(zlib.Z_SYNC_FLUSH))
    seconds = time.perf_counter() - started

    tracemalloc.start()
    compressors = [compressor(level, window_bits) for _ in range(MEMORY_SAMPLE)]
    allocated, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del compressors
    return {"level": level, "window_bits": window_bits, "mem_level": mem_level(window_bits),
            "bytes": compressed, "memory_bytes": allocated / MEMORY_SAMPLE,
            "microseconds_per_frame": seconds / len(frames) * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compression", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    try:
        frames, full_bytes = replay_frames()
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1
    plain = sum(len(frame) for frame in frames)
    print(f"{len(frames)} frames, {plain:,} bytes uncompressed "
          f"({plain / full_bytes:.1%} of {full_bytes:,} bytes of full documents per change)")
    print()
    print("| level | window bits | memLevel | bytes | share of full documents "
          "| memory per compressor (KiB) | µs per frame |")
    print("|---|---|---|---|---|---|---|")
    settings = [(COMPRESSION_LEVEL, bits) for bits in range(MIN_WINDOW_BITS, MAX_WINDOW_BITS + 1)]
    settings += [(level, 10) for level in (1, 9)]
    for level, window_bits in settings:
        row = measure(frames, level, window_bits)
        print(f"| {row['level']} | {row['window_bits']} | {row['mem_level']} | {row['bytes']:,} "
              f"| {row['bytes'] / full_bytes:.1%} | {row['memory_bytes'] / 1024:.1f} "
              f"| {row['microseconds_per_frame']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
