"""Cloud Logging's structured JSON: one object per line on stdout.

Fields passed with `extra=` (operation_id, operation, state, summary …) become
top-level JSON fields that log-based metrics and alerts can filter on.
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone

# The trace of the request being served, set by the entry points.
current_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("lro_trace", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_SECRET_WORDS = ("token", "authorization", "secret", "password", "credential")


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, component: str = "lrowatch"):
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
            "logging.googleapis.com/labels": {"component": self._component},
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = "[redacted]" if any(w in key.lower() for w in _SECRET_WORDS) else value
        trace = current_trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "INFO", component: str = "lrowatch") -> None:
    """Idempotent: route the root logger to stdout as JSON lines."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, CloudLoggingFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(component))
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "google.auth", "google.api_core", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def trace_from_header(header: str | None, project: str) -> str | None:
    """`X-Cloud-Trace-Context: TRACE_ID/SPAN;o=1` or `traceparent` → Cloud Logging's trace field."""
    if not header:
        return None
    if header.startswith("00-"):  # W3C traceparent
        parts = header.split("-")
        trace_id = parts[1] if len(parts) > 2 else ""
    else:
        trace_id = header.split("/")[0]
    if not trace_id or not all(c in "0123456789abcdefABCDEF" for c in trace_id) or len(trace_id) > 32:
        return None
    return f"projects/{project}/traces/{trace_id}"
