"""gzip content coding of SSE streams: negotiation and the per-stream compressor.

No I/O here. A compressed stream's body is one gzip member (RFC 1952)
produced by one zlib compressor. Every write is flushed with
``Z_SYNC_FLUSH``, which ends the deflate data on a byte boundary, so a
client can decode each event as soon as its bytes arrive. The end of a
clean stream is flushed with ``Z_FINISH``, which adds the gzip trailer.
"""

from __future__ import annotations

import zlib

from werkzeug.datastructures import Accept

# Frames are a few hundred bytes and the output is flushed after each, so
# levels above 6 found nothing more on a replayed match, and level 1 sent
# about 10 % more bytes at the same speed (python -m bench.compression).
COMPRESSION_LEVEL = 6
MIN_WINDOW_BITS = 9
MAX_WINDOW_BITS = 15
# zlib's defaults pair a 2**15-byte window with memLevel 8, that is a hash
# table with one entry per window position. The same ratio at smaller
# windows keeps the hash table, and the memory it takes, in step with the
# window. memLevel must be 1 to 9.
_MEM_LEVEL_OFFSET = 7


def mem_level(window_bits: int) -> int:
    """Return the zlib memLevel that livegate pairs with ``window_bits``."""
    return max(1, min(9, window_bits - _MEM_LEVEL_OFFSET))


def new_gzip_compressor(window_bits: int):
    """Create the zlib compressor of one stream: a gzip wrapper around a ``2**window_bits`` window.

    Raises ValueError when ``window_bits`` is outside 9 to 15.
    """
    if not MIN_WINDOW_BITS <= window_bits <= MAX_WINDOW_BITS:
        raise ValueError(f"window_bits {window_bits} is outside {MIN_WINDOW_BITS} to "
                         f"{MAX_WINDOW_BITS}")
    # 16 + window_bits selects the gzip header and trailer instead of zlib's.
    return zlib.compressobj(COMPRESSION_LEVEL, zlib.DEFLATED, 16 + window_bits,
                            mem_level(window_bits))


def accepts_gzip(accept_encodings: Accept) -> bool:
    """Return whether an ``Accept-Encoding`` header, parsed by werkzeug, allows gzip.

    werkzeug matches ``*`` too, and a listed ``gzip`` wins over ``*``, so
    ``gzip;q=0, *`` rejects gzip. A q-value of 0 means "not acceptable"
    (RFC 9110, section 12.5.3).
    """
    return accept_encodings["gzip"] > 0
