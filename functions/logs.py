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
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Mapping

# The trace of the request being served (`projects/P/traces/T`), set by `traced`.
current_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("lro_trace", default=None)


@dataclass(frozen=True)
class TraceContext:
    """W3C trace context of the work being done: which trace, which span, sampled or not."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str | None  # 16 lowercase hex digits
    sampled: bool

    def traceparent(self) -> str:
        """The `traceparent` that continues this trace in the next hop (an event's attribute)."""
        span = self.span_id or secrets.token_hex(8)
        return f"00-{self.trace_id}-{span}-{'01' if self.sampled else '00'}"


_context: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar("lro_trace_context", default=None)

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
            context = _context.get()
            if context and context.span_id:
                entry["logging.googleapis.com/spanId"] = context.span_id
            if context:
                entry["logging.googleapis.com/trace_sampled"] = context.sampled
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


def parse_trace_header(header: str | None) -> TraceContext | None:
    """`traceparent` (00-TRACE-SPAN-FLAGS) or `X-Cloud-Trace-Context` (TRACE/SPAN_DECIMAL;o=1),
    parsed strictly: anything malformed is no trace at all."""
    if not header:
        return None
    if header.startswith("00-"):  # W3C traceparent
        parts = header.split("-")
        if len(parts) < 3:
            return None
        trace_id, span_id = parts[1], parts[2]
        flags = parts[3] if len(parts) > 3 else "00"
        sampled = _hex(flags, 2) and bool(int(flags, 16) & 1)
        span = span_id.lower() if _hex(span_id, 16) and span_id.strip("0") else None
    else:
        trace_id, _, rest = header.partition("/")
        span_text, _, options = rest.partition(";")
        sampled = options.strip() == "o=1"
        span = format(int(span_text), "016x") if span_text.isdigit() and 0 < int(span_text) < 2**64 else None
    if not trace_id or not _hex(trace_id, None) or len(trace_id) > 32 or not trace_id.strip("0"):
        return None  # all zeros is the W3C "invalid trace"
    return TraceContext(trace_id.lower(), span, bool(sampled))


def _hex(text: str, length: int | None) -> bool:
    return bool(text) and (length is None or len(text) == length) and all(c in "0123456789abcdefABCDEF" for c in text)


def trace_from_header(header: str | None, project: str) -> str | None:
    """`X-Cloud-Trace-Context: TRACE_ID/SPAN;o=1` or `traceparent` → Cloud Logging's trace field."""
    context = parse_trace_header(header)
    if context is None or not project:
        return None
    return f"projects/{project}/traces/{context.trace_id}"


def context_of(headers: Mapping[str, str] | None) -> TraceContext | None:
    """The trace of a request's headers (or a message's attributes): W3C `traceparent`
    first, then Google's own header."""
    if not headers:
        return None
    return parse_trace_header(headers.get("traceparent")) or parse_trace_header(headers.get("X-Cloud-Trace-Context"))


def trace_of(headers: Mapping[str, str] | None, project: str) -> str | None:
    """The trace of a request's headers, as Cloud Logging's trace field."""
    context = context_of(headers)
    return f"projects/{project}/traces/{context.trace_id}" if context and project else None


def outgoing_traceparent() -> str | None:
    """`traceparent` for a message published while serving a traced request (None otherwise)."""
    context = _context.get()
    return context.traceparent() if context else None


@contextlib.contextmanager
def traced(headers: Mapping[str, str] | None, project: str) -> Iterator[str | None]:
    """Tag every log line written while serving this request with its trace and span,
    and let messages published meanwhile carry the trace on (`outgoing_traceparent`)."""
    context = context_of(headers) if project else None
    token = current_trace.set(f"projects/{project}/traces/{context.trace_id}" if context else None)
    context_token = _context.set(context)
    try:
        yield current_trace.get()
    finally:
        _context.reset(context_token)
        current_trace.reset(token)
