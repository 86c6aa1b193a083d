"""Running CPU-heavy steps off a gevent worker's event loop.

Computing the patch between two large documents takes pure-Python time
in proportion to their size, and while it runs no stream of the worker
is written. Above a size threshold such a step runs in gevent's native
thread pool instead; the interpreter switches threads every few
milliseconds (``sys.getswitchinterval``), so the event loop keeps serving
streams while the patch is computed. Only pure computations go there:
code that does I/O through gevent-patched sockets must stay on the loop.
"""

from __future__ import annotations

from typing import Any, Callable

import gevent


def run_in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` in the hub's thread pool and wait for it cooperatively."""
    return gevent.get_hub().threadpool.apply(function, args)
