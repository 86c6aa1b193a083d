"""Bounded polling helpers for tests that wait on other processes."""

import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: Optional[str] = None,
) -> T:
    """Call `predicate` every `interval` seconds until it returns a truthy value.

    Returns that value. Raises TimeoutError after `timeout` seconds, naming `message`
    (or the predicate) and the last falsy value it returned. The predicate is
    always called at least once, and once more at the deadline, so a slow machine does
    not lose a result that became true during the last sleep.
    """
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
    if interval <= 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval}")

    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))

    description = message or getattr(predicate, "__name__", repr(predicate))
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {description}. Last result: {result!r}")
