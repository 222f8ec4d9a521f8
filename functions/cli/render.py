"""Output: aligned tables and key/value blocks for people, JSON for scripts."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable, TextIO

SERVICE_SUFFIX = ".googleapis.com"


def as_json(value: Any, out: TextIO | None = None) -> None:
    print(json.dumps(value, indent=2, sort_keys=True), file=out or sys.stdout)


def table(rows: Iterable[dict], columns: list[tuple[str, str]], out: TextIO | None = None) -> None:
    """columns: (header, key). Cells are str()-ed; None shows as "-"."""
    cells = [[_cell(row.get(key)) for _, key in columns] for row in rows]
    headers = [header for header, _ in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    for line in [headers, *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip(), file=out or sys.stdout)


def fields(pairs: list[tuple[str, Any]], out: TextIO | None = None) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        if value in (None, {}, []):
            continue
        print(f"{key.ljust(width)}  {_cell(value)}", file=out or sys.stdout)


def operation_row(op: dict) -> dict:
    """A record (GET /operations/{id}) flattened for the list table."""
    return {
        "id": op.get("id"),
        "state": op.get("state"),
        "service": short_service(op.get("service")),
        "progress": _percent(op.get("progress_percent")),
        "updated": op.get("updated_at") or op.get("submitted_at"),
        "name": op.get("name"),
    }


LIST_COLUMNS = [("ID", "id"), ("STATE", "state"), ("SERVICE", "service"), ("PROGRESS", "progress"),
                ("UPDATED", "updated"), ("NAME", "name")]


def record(op: dict, out: TextIO | None = None) -> None:
    """One tracked operation, the parts a person looks at first."""
    cancel = op.get("cancel")
    fields([
        ("id", op.get("id")),
        ("name", op.get("name")),
        ("service", op.get("service")),
        ("url", op.get("url")),
        ("state", op.get("state") + (f" (provider: {op['provider_state']})" if op.get("provider_state") else "")),
        ("progress", _percent(op.get("progress_percent"))),
        ("items", _items(op.get("items"))),
        ("error", _error(op.get("error"))),
        ("last error", _error(op.get("last_error"))),
        ("cancel", _cancel(cancel)),
        ("labels", ", ".join(f"{k}={v}" for k, v in (op.get("labels") or {}).items()) or None),
        ("correlation id", op.get("correlation_id")),
        ("submitted", op.get("submitted_at")),
        ("updated", op.get("updated_at")),
        ("next poll", op.get("next_poll_at")),
        ("completed", op.get("completed_at")),
        ("polls", op.get("polls")),
    ], out)


def event_line(event: dict) -> str:
    """One event as a line of `watch` output."""
    operation = event.get("operation") or {}
    time = event.get("observed_at") or ""
    head = f"{time}  {operation.get('id', '')[:12]}  #{event.get('sequence', '-')}"
    if event.get("type") == "lro.cancel_outcome":
        api = event.get("api_status") or {}
        return f"{head}  cancel {event.get('outcome')}" + (f" (API answered {api.get('code')})" if api else "")
    change = f"{event.get('previous_state') or '?'} → {event.get('state')}"
    extra = [f"provider {event['provider_state']}"] if event.get("provider_state") else []
    if event.get("progress_percent") is not None:
        extra.append(_percent(event["progress_percent"]))
    if event.get("items"):
        extra.append(_items(event["items"]))
    if event.get("error"):
        extra.append(_error(event["error"]))
    return f"{head}  {change}" + (f"  ({'; '.join(extra)})" if extra else "")


def short_service(service: str | None) -> str | None:
    return service[: -len(SERVICE_SUFFIX)] if service and service.endswith(SERVICE_SUFFIX) else service


def _percent(value: Any) -> str | None:
    return None if value is None else f"{value}%"


def _items(items: dict | None) -> str | None:
    if not items:
        return None
    return f"{items.get('total', '?')} items, {items.get('failed', 0)} failed"


def _error(error: dict | None) -> str | None:
    if not error:
        return None
    label = " ".join(str(p) for p in (error.get("code", "?"), error.get("status")) if p)
    return f"{label}: {error.get('message')}" if error.get("message") else label


def _cancel(cancel: dict | None) -> str | None:
    """`sent (API 200) at …, reason "…", by …`"""
    if not cancel:
        return None
    text = str(cancel.get("outcome"))
    if (cancel.get("api_status") or {}).get("code"):
        text += f" (API {cancel['api_status']['code']})"
    if cancel.get("at"):
        text += f" at {cancel['at']}"
    if cancel.get("reason"):
        text += f", reason {cancel['reason']!r}"
    if cancel.get("requested_by"):
        text += f", by {cancel['requested_by']}"
    return text


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
