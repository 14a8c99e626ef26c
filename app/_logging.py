"""Log lines that say which process wrote them; JSON objects with ``BRAID_LOG_JSON=1``."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["setup_logging"]

_CONTEXT = ("job", "step", "service", "task_id")


class StepContext(logging.Filter):
    """Adds the running step's job, step, service and task_id to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        from app._hooks import LOG_CONTEXT

        for key, value in (LOG_CONTEXT.get() or {}).items():
            setattr(record, key, value)
        return True


class _Json(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "process": self.process, "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: getattr(record, k) for k in _CONTEXT if hasattr(record, k)})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(process: str, level: str = "INFO", as_json: bool = False) -> None:
    """Send every log record of this process to stderr, prefixed with ``process``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(StepContext())
    handler.setFormatter(_Json(process) if as_json else logging.Formatter(
        f"{process:<22}| %(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
