"""Structured logs for the daemon: one JSON object per line on stderr, so an operator can grep or
ship them (`jq 'select(.event == "cycle_end")'`). Fields passed as `extra={...}` become keys.

URLs in messages and tracebacks are cut to their origin (contracts.urls.redact_urls): an RPC or feed
URL may carry an API key in its path or query, and log files get shared."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from contracts.urls import redact_urls

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_urls(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = redact_urls(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the evolve and apscheduler loggers (and everything else)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Quiet chatty libraries; their warnings still come through.
    for name in ("httpx", "httpcore", "urllib3", "web3", "filelock", "PIL", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
