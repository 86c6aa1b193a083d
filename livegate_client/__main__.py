"""``python -m livegate_client tail URL CHANNEL...``: watch channels from a shell.

Prints one JSON object per line on stdout, flushed per line:

- ``--changes`` (default): each event as received, a snapshot as
  ``{"event": "snapshot", "channel", "version", "id", "data"}`` and a delta as
  ``{"event": "delta", "channel", "version", "id", "patch"}``;
- ``--documents``: the whole current document after each event, as
  ``{"channel", "version", "id", "data"}``.

Reconnects, resumes and resynchronisations are logged on stderr. Exit
status: 0 after --max-events or --timeout, 1 when the gateway rejects the
stream, 2 for invalid arguments, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import threading
import time
from typing import Optional, Sequence, TextIO

from livegate_client.subscription import (
    DEFAULT_READ_TIMEOUT,
    MAX_BACKOFF_SECONDS,
    StreamRejected,
    Subscription,
    Update,
    stream_url,
)

log = logging.getLogger("livegate_client")


def change_line(update: Update) -> dict:
    line = {"event": update.event, "channel": update.channel, "version": update.version, "id": update.id}
    if update.event == "snapshot":
        line["data"] = update.document
    else:
        line["patch"] = update.patch
    return line


def document_line(update: Update) -> dict:
    return {"channel": update.channel, "version": update.version, "id": update.id, "data": update.document}


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m livegate_client",
                                     description="Client of a livegate gateway's SSE stream.")
    commands = parser.add_subparsers(dest="command", required=True)
    tail = commands.add_parser(
        "tail", help="print the changes or documents of channels as JSON lines",
        description="Stream CHANNELs from the gateway at URL, apply each patch, resume after "
                    "a disconnect, and print one JSON line per event.")
    tail.add_argument("url", metavar="URL",
                      help="gateway base URL (http://127.0.0.1:8000) or its /v1/stream endpoint")
    tail.add_argument("channels", metavar="CHANNEL", nargs="+",
                      help="channel name or pattern; * is one whole segment, a final ** one or more")

    output = tail.add_mutually_exclusive_group()
    output.add_argument("--changes", dest="output", action="store_const", const="changes",
                        help="print each snapshot and delta as received (default)")
    output.add_argument("--documents", dest="output", action="store_const", const="documents",
                        help="print the whole current document of the channel after each event")
    tail.set_defaults(output="changes")

    tail.add_argument("--max-events", type=positive_int, metavar="N",
                      help="stop after printing N lines")
    tail.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                      help="stop after this many seconds")
    tail.add_argument("--read-timeout", type=positive_float, default=DEFAULT_READ_TIMEOUT,
                      metavar="SECONDS",
                      help="seconds without a byte after which the connection counts as lost "
                           f"(default {DEFAULT_READ_TIMEOUT:g}; keep it above the heartbeat interval)")
    tail.add_argument("--max-backoff", type=positive_float, default=MAX_BACKOFF_SECONDS,
                      metavar="SECONDS",
                      help=f"maximum delay between reconnect attempts (default {MAX_BACKOFF_SECONDS:g})")
    tail.add_argument("--quiet", action="store_true",
                      help="log only warnings and errors on stderr, not reconnects")
    return parser


def _read_updates(subscription: Subscription, updates: queue.Queue) -> None:
    """Feed ``updates`` from the subscription; runs in a daemon thread."""
    try:
        for update in subscription:
            updates.put(update)
    except BaseException as error:  # handed to the main thread, which reports it
        updates.put(error)
    else:
        updates.put(None)


def tail(arguments: argparse.Namespace, out: TextIO) -> int:
    subscription = Subscription(arguments.url, arguments.channels,
                                read_timeout=arguments.read_timeout,
                                max_backoff=arguments.max_backoff)
    # The stream is read in a thread, so that --timeout ends the command on
    # time even while a read is blocked waiting for the gateway.
    updates: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_read_updates, args=(subscription, updates),
                              name="livegate-stream", daemon=True)
    reader.start()
    deadline = None if arguments.timeout is None else time.monotonic() + arguments.timeout
    format_line = document_line if arguments.output == "documents" else change_line
    printed = 0
    try:
        while arguments.max_events is None or printed < arguments.max_events:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                log.info("stopping: --timeout of %g s reached after %d lines", arguments.timeout, printed)
                break
            try:
                item = updates.get(timeout=remaining)
            except queue.Empty:
                continue
            if isinstance(item, StreamRejected):
                log.error("%s", item)
                return 1
            if isinstance(item, BaseException):
                raise item
            if item is None:
                break
            out.write(json.dumps(format_line(item), ensure_ascii=False, separators=(",", ":")) + "\n")
            out.flush()
            printed += 1
    finally:
        subscription.close()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.WARNING if arguments.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    # httpx logs every request at INFO, which repeats this client's own connection lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        stream_url(arguments.url)
    except ValueError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    try:
        return tail(arguments, sys.stdout)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of stdout (head, a closed pager) went away: stop quietly.
        return 0


if __name__ == "__main__":
    sys.exit(main())
