"""How long the subscriber pauses after writing a batch into the ring.

Every batch wakes every worker once, and a wake-up costs each worker and
the subscriber the same whatever the batch holds. Pausing after a batch
lets the updates that arrive meanwhile share the next one. The pause
grows with the recent update rate: a quiet pod writes each update at
once, and a busy one pauses up to the longest window, where updates come
fast enough that each wake-up carries several of them.

The rate is a moving estimate with a time constant of ``time_constant``
seconds: each batch adds its updates, and the estimate decays
exponentially between batches. At a steady rate it averages that rate.
"""

from __future__ import annotations

import math

# Time constant of the rate estimate, in seconds: an update's weight in it
# falls by a factor of e per time constant.
RATE_TIME_CONSTANT = 1.0


class BatchWindow:
    """Pause after each batch, from the recent update rate.

    Not thread-safe, because only the subscriber's loop uses it.
    """

    __slots__ = ("longest", "full_rate", "time_constant", "rate", "_last_batch")

    def __init__(self, longest: float, full_rate: float,
                 time_constant: float = RATE_TIME_CONSTANT):
        if longest < 0 or full_rate <= 0 or time_constant <= 0:
            raise ValueError(
                f"invalid batch window: longest={longest!r} s must be >= 0, "
                f"full_rate={full_rate!r} and time_constant={time_constant!r} must be > 0")
        # Seconds: the pause at ``full_rate`` updates per second and above.
        self.longest = longest
        self.full_rate = full_rate
        self.time_constant = time_constant
        # Updates per second, the moving estimate.
        self.rate = 0.0
        self._last_batch: float | None = None

    def after_batch(self, updates: int, now: float) -> float:
        """Count a batch of ``updates`` written at ``now`` (monotonic seconds) and return the pause.

        The pause is ``longest`` scaled by the estimated rate over
        ``full_rate``, at most ``longest``.
        """
        if self._last_batch is not None:
            elapsed = max(0.0, now - self._last_batch)
            self.rate *= math.exp(-elapsed / self.time_constant)
        self._last_batch = now
        self.rate += updates / self.time_constant
        if not self.longest:
            return 0.0
        return self.longest * min(1.0, self.rate / self.full_rate)
