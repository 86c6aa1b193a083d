"""Unit tests of livegate.ids: event id tokens EPOCH-SEQ."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from livegate.ids import (
    MAX_EPOCH_LENGTH,
    EventId,
    format_event_id,
    is_valid_epoch,
    parse_event_id,
)

EPOCH_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
MAX_SEQ = 2**63 - 1

epochs = st.text(alphabet=EPOCH_ALPHABET, min_size=1, max_size=MAX_EPOCH_LENGTH)
seqs = st.integers(min_value=0, max_value=MAX_SEQ)


class TestRoundTrip:
    @settings(max_examples=200, deadline=None)
    @given(epochs, seqs)
    def test_format_then_parse(self, epoch, seq):
        token = format_event_id(epoch, seq)

        assert parse_event_id(token) == EventId(epoch, seq)

    def test_format(self):
        assert format_event_id("a1b2c3", 42) == "a1b2c3-42"

    def test_parse_max_lengths(self):
        epoch = "z" * MAX_EPOCH_LENGTH
        token = f"{epoch}-{MAX_SEQ}"

        assert parse_event_id(token) == EventId(epoch, MAX_SEQ)

    def test_parse_leading_zeros(self):
        assert parse_event_id("abc-007") == EventId("abc", 7)

    def test_parse_returns_named_fields(self):
        parsed = parse_event_id("abc-5")

        assert parsed.epoch == "abc"
        assert parsed.seq == 5


class TestMalformed:
    @pytest.mark.parametrize(
        "token",
        [
            None,
            "",
            "-",
            "abc",
            "12345",
            "abc-",
            "-12",
            "ab_c-12",
            "ab.c-12",
            "ab c-12",
            "ab-c-12",
            "ABC-12",
            "Abc-12",
            "\u00e9t\u00e9-12",
            "z" * (MAX_EPOCH_LENGTH + 1) + "-1",
            "abc-12a",
            "abc-1.5",
            "abc--12",
            "abc-+12",
            "abc- 12",
            "abc-12 ",
            "abc-1_000",
            "abc-0x10",
            "abc-\u0661\u0662",
            "abc-\u00b2",
            "abc-\uff11",
            "abc-" + "9" * 20,
            "abc-" + "1" * 1000,
            "abc-12\n",
            "abc\n-12",
            "abc-12\x00",
        ],
    )
    def test_returns_none(self, token):
        assert parse_event_id(token) is None


class TestEpoch:
    @pytest.mark.parametrize("epoch", ["a", "0", "a1b2c3d4e5f6", "z" * MAX_EPOCH_LENGTH])
    def test_valid(self, epoch):
        assert is_valid_epoch(epoch) is True

    @pytest.mark.parametrize(
        "epoch",
        ["", "A", "a-b", "a b", "z" * (MAX_EPOCH_LENGTH + 1), "\u00e9", None, 12, b"abc"],
    )
    def test_invalid(self, epoch):
        assert is_valid_epoch(epoch) is False
