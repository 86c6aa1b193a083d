"""Logging setup for livegate's processes.

Only entry points (gunicorn hooks, the subscriber and ingest commands)
call ``configure_logging``; modules just use ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from livegate.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    """Send every logger's records to stderr in the configured format and level."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "livegate_handler", False):
            root.removeHandler(existing)
    handler.livegate_handler = True
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # redis-py and urllib3 are chatty at debug level; keep them at warning
    # unless livegate itself runs at debug.
    if settings.log_level != "debug":
        for name in ("urllib3", "redis"):
            logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger(__name__).debug("logging configured pid=%s", os.getpid())
