"""Cloud Logging's structured JSON: one object per line on stdout.

Fields passed with `extra=` (operation_id, operation, state, summary …) become
top-level JSON fields that log-based metrics and alerts can filter on.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
from datetime import datetime, timezone
from typing import Iterator, Mapping

# The trace of the request being served (`projects/P/traces/T`), set by `traced`.
current_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("lro_trace", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_SECRET_WORDS = ("token", "authorization", "secret", "password", "credential")
# Secrets that could hide inside free text (a message, an exception, a URL):
# bearer headers, JWTs (Google ID/access tokens), OAuth access tokens, secret query values.
_SECRET_TEXT = re.compile(
    r"(?P<bearer>Bearer\s+)[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|ya29\.[A-Za-z0-9._-]+"
    r"|(?P<query>[?&](?:access_token|id_token|token|key|api_key|apikey|sig|signature|password)=)[^&#\s\"'\\]+",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def scrub(value):
    """`value` with secrets in its text replaced, recursively through dicts and lists."""
    if isinstance(value, str):
        return _SECRET_TEXT.sub(lambda m: (m["bearer"] or m["query"] or "") + REDACTED, value)
    if isinstance(value, dict):
        return {k: REDACTED if _secret_key(k) else scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def _secret_key(key) -> bool:
    return isinstance(key, str) and any(w in key.lower() for w in _SECRET_WORDS)


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, component: str = "lrowatch"):
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": scrub(record.getMessage()),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
            "logging.googleapis.com/labels": {"component": self._component},
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = REDACTED if _secret_key(key) else scrub(value)
        trace = current_trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        # default=str may reveal an object's text: scrub the line as a whole too.
        return scrub(json.dumps(entry, default=str))


def setup(level: str = "INFO", component: str | None = None) -> None:
    """Idempotent: route the root logger to stdout as JSON lines.

    The component label defaults to the function being served (functions-framework
    sets FUNCTION_TARGET), so one filter in Cloud Logging picks one function.
    """
    component = component or os.environ.get("FUNCTION_TARGET") or "lrowatch"
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
    if not header or not project:
        return None
    if header.startswith("00-"):  # W3C traceparent
        parts = header.split("-")
        trace_id = parts[1] if len(parts) > 2 else ""
    else:
        trace_id = header.split("/")[0]
    if not trace_id or not all(c in "0123456789abcdefABCDEF" for c in trace_id) or len(trace_id) > 32:
        return None
    if not trace_id.strip("0"):  # all zeros is the W3C "invalid trace"
        return None
    return f"projects/{project}/traces/{trace_id.lower()}"


def trace_of(headers: Mapping[str, str] | None, project: str) -> str | None:
    """The trace of a request's headers: W3C `traceparent` first, then Google's own header."""
    if not headers:
        return None
    return (trace_from_header(headers.get("traceparent"), project)
            or trace_from_header(headers.get("X-Cloud-Trace-Context"), project))


@contextlib.contextmanager
def traced(headers: Mapping[str, str] | None, project: str) -> Iterator[str | None]:
    """Tag every log line written while serving this request with its trace."""
    token = current_trace.set(trace_of(headers, project))
    try:
        yield current_trace.get()
    finally:
        current_trace.reset(token)
