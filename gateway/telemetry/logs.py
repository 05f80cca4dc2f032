"""Logging: plain text or JSON lines, every record of a request tagged with its request id.

No prompt or completion text is ever logged by the gateway; the access line carries counts and timings only.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import orjson

from gateway.telemetry.context import current_request

LogFormat = Literal["text", "json"]
ACCESS_LOGGER = "gateway.access"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (or "-") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Tag the record; never drops it."""
        context = current_request()
        record.request_id = context.request_id if context is not None else "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message, and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise a record."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """`time level logger [request id] message key=value ...`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Serialise a record, with its `fields` appended."""
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return text


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Install one stderr handler on the root logger (uvicorn's loggers propagate to it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
