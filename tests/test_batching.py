"""Unit tests of fanout.batching.BatchWindow: the subscriber's pause after a batch."""

from __future__ import annotations

import pytest

from fanout.batching import BatchWindow


def steady(window: BatchWindow, rate: float, seconds: float) -> float:
    """Feed ``rate`` updates per second in batches of one for ``seconds``; return the last pause."""
    pause = 0.0
    now = 0.0
    for _ in range(int(rate * seconds)):
        now += 1 / rate
        pause = window.after_batch(1, now)
    return pause


def test_first_isolated_update_pauses_little():
    window = BatchWindow(0.040, full_rate=200)

    assert window.after_batch(1, 100.0) == pytest.approx(0.040 / 200)


def test_steady_rate_is_estimated():
    window = BatchWindow(0.040, full_rate=200)

    steady(window, 50, 10)

    assert window.rate == pytest.approx(50, rel=0.05)


def test_pause_grows_with_rate():
    pauses = [steady(BatchWindow(0.040, full_rate=200), rate, 10) for rate in (10, 50, 100)]

    assert pauses == sorted(pauses)
    assert pauses[0] == pytest.approx(0.002, rel=0.1)
    assert pauses[2] == pytest.approx(0.020, rel=0.1)


def test_pause_capped_at_longest():
    window = BatchWindow(0.040, full_rate=200)

    assert steady(window, 1000, 5) == 0.040
    assert window.after_batch(500, 6.0) == 0.040


def test_rate_decays_when_quiet():
    window = BatchWindow(0.040, full_rate=200)
    steady(window, 1000, 5)

    pause = window.after_batch(1, 5.0 + 10.0)

    assert pause < 0.001


def test_zero_window_never_pauses():
    window = BatchWindow(0.0, full_rate=200)

    assert steady(window, 1000, 2) == 0.0
    assert window.rate > 0


def test_backwards_clock_keeps_rate():
    window = BatchWindow(0.040, full_rate=200)
    window.after_batch(1, 10.0)

    window.after_batch(1, 9.0)

    assert window.rate == pytest.approx(2.0)


@pytest.mark.parametrize("arguments", [(-0.01, 200), (0.04, 0), (0.04, -1)])
def test_invalid_window_rejected(arguments):
    with pytest.raises(ValueError, match="invalid batch window"):
        BatchWindow(*arguments)
