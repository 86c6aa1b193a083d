"""Unit tests of livegate.compression: Accept-Encoding negotiation and the gzip compressor."""

from __future__ import annotations

import zlib

import pytest
from werkzeug.http import parse_accept_header

from livegate.compression import accepts_gzip, mem_level, new_gzip_compressor

FRAMES = [
    b"retry: 3150\n\n",
    b'event: snapshot\ndata: {"channel":"a/1","version":1,"data":{"score":[0,0]}}\n'
    b"id: 0123456789ab-1\n\n",
    b'event: delta\ndata: {"channel":"a/1","version":2,"patch":[{"op":"replace",'
    b'"path":"/score/0","value":1}]}\nid: 0123456789ab-2\n\n',
    b": heartbeat\n\n",
]


class TestAcceptsGzip:
    @pytest.mark.parametrize("header", [
        "gzip", "gzip, deflate", "GZIP", "gzip;q=0.001", "br;q=1, gzip;q=0.5", "*",
        "deflate, *;q=0.1",
    ])
    def test_accepted(self, header):
        assert accepts_gzip(parse_accept_header(header)) is True

    @pytest.mark.parametrize("header", [
        "", "identity", "deflate", "br", "gzip;q=0", "gzip;q=0.0", "gzip;q=0, *", "*;q=0",
        "x-gzip",
    ])
    def test_rejected(self, header):
        assert accepts_gzip(parse_accept_header(header)) is False


class TestCompressor:
    @pytest.mark.parametrize("window_bits", range(9, 16))
    def test_each_flush_decodes_at_once(self, window_bits):
        compressor = new_gzip_compressor(window_bits)
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)

        for frame in FRAMES:
            piece = compressor.compress(frame) + compressor.flush(zlib.Z_SYNC_FLUSH)
            assert decoder.decompress(piece) == frame
        tail = compressor.flush(zlib.Z_FINISH)

        assert decoder.decompress(tail) == b""
        assert decoder.eof
        assert decoder.unused_data == b""

    def test_gzip_header(self):
        compressor = new_gzip_compressor(10)

        body = compressor.compress(FRAMES[0]) + compressor.flush(zlib.Z_FINISH)

        assert body[:3] == b"\x1f\x8b\x08", "gzip magic and the deflate method"
        assert zlib.decompress(body, 16 + zlib.MAX_WBITS) == FRAMES[0]

    def test_repeated_framing_compresses(self):
        compressor = new_gzip_compressor(10)
        sizes = [len(compressor.compress(FRAMES[2]) + compressor.flush(zlib.Z_SYNC_FLUSH))
                 for _ in range(5)]

        assert sizes[-1] < len(FRAMES[2]) / 4

    @pytest.mark.parametrize("window_bits", [0, 8, 16, 31])
    def test_window_bits_outside_range(self, window_bits):
        with pytest.raises(ValueError, match="outside 9 to 15"):
            new_gzip_compressor(window_bits)

    @pytest.mark.parametrize("window_bits, expected", [(9, 2), (10, 3), (12, 5), (15, 8)])
    def test_mem_level(self, window_bits, expected):
        assert mem_level(window_bits) == expected
