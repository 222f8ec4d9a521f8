"""Output: aligned tables and key/value blocks for people, JSON for scripts."""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from datetime import datetime, timezone
from typing import Any, Iterable, TextIO

SERVICE_SUFFIX = ".googleapis.com"

# Characters a terminal acts on rather than shows: C0 and C1 controls (escape sequences,
# bell, carriage return, backspace), line and paragraph separators, and the bidi controls
# that reorder what follows them. API-supplied text (object names, messages) may hold any.
_UNSEEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def visible(text: str) -> str:
    """`text` with every character a terminal would act on written out (\\x1b, \\u202e, \\n),
    so people's output shows what an API sent and cannot recolour, hide or reorder it."""
    return _UNSEEN.sub(_escape, text)


def _escape(match: re.Match) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


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
        ("eta", eta(op)),
        ("items", _items(op.get("items"))),
        ("error", _error(op.get("error"))),
        ("last error", _error(op.get("last_error"))),
        ("cancel", _cancel(cancel)),
        ("labels", ", ".join(f"{k}={v}" for k, v in (op.get("labels") or {}).items()) or None),
        ("correlation id", op.get("correlation_id")),
        ("started", op.get("started_at")),  # by its API, when before the submission (README "eta")
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
        return visible(f"{head}  cancel {event.get('outcome')}" + (f" (API answered {api.get('code')})" if api else ""))
    change = f"{event.get('previous_state') or '?'} → {event.get('state')}"
    extra = [f"provider {event['provider_state']}"] if event.get("provider_state") else []
    if event.get("progress_percent") is not None:
        extra.append(_percent(event["progress_percent"]))
    if event.get("eta"):
        extra.append(eta(event, _time(event.get("observed_at"))))
    if event.get("items"):
        extra.append(_items(event["items"]))
    if event.get("error"):
        extra.append(_error(event["error"]))
    return visible(f"{head}  {change}" + (f"  ({'; '.join(extra)})" if extra else ""))


def wait_line(records: list[dict], elapsed_s: float) -> str:
    """The live line of `wait`/`watch`: state, progress, elapsed time and lrowatch's polls."""
    clock = f"{int(elapsed_s) // 60}m{int(elapsed_s) % 60:02d}s elapsed"
    if len(records) == 1:
        op = records[0]
        parts = [op.get("id", "")[:12], str(op.get("state"))]
        if op.get("progress_percent") is not None:
            parts.append(_percent(op["progress_percent"]))
        if op.get("eta"):
            parts.append(eta(op))
        if (op.get("items") or {}).get("failed"):
            parts.append(f"{op['items']['failed']} failed")
        return visible("  ".join(parts + [clock, f"{op.get('polls') or 0} polls"]))
    states: dict[str, int] = {}
    for op in records:
        states[str(op.get("state"))] = states.get(str(op.get("state")), 0) + 1
    done = sum(1 for op in records if op.get("done"))
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return visible(f"{done}/{len(records)} done ({counts})  {clock}")


def failed_items_note(op: dict, target_flag: str = "") -> str | None:
    """`7 of 40 items failed: lrowatch items ID --failed`, for the end of a wait (on stderr): a
    batch can succeed with failed items, and its exit code and table do not say so."""
    items = op.get("items") or {}
    if not items.get("failed"):
        return None
    command = f"lrowatch items {op.get('id')} --failed{target_flag}"
    return visible(f"{items['failed']} of {items.get('total', '?')} items failed: {command}")


class LiveLine:
    """One line on a terminal, rewritten in place; nothing at all when not a terminal
    (logs and pipes get only the final output)."""

    def __init__(self, out: TextIO | None = None):
        self._out = out or sys.stderr
        self._live = bool(getattr(self._out, "isatty", lambda: False)())
        self._shown = False

    def show(self, text: str) -> None:
        if self._live:
            self._out.write(f"\r\033[K{text}")
            self._out.flush()
            self._shown = True

    def close(self) -> None:
        if self._shown:
            self._out.write("\n")
            self._out.flush()
            self._shown = False


def short_service(service: str | None) -> str | None:
    return service[: -len(SERVICE_SUFFIX)] if service and service.endswith(SERVICE_SUFFIX) else service


def _percent(value: Any) -> str | None:
    return None if value is None else f"{value}%"


def _items(items: dict | None) -> str | None:
    if not items:
        return None
    text = f"{items.get('total', '?')} items, {items.get('failed', 0)} failed"
    if items.get("failed_kept") is not None:
        text += f" (first {items['failed_kept']} kept)"
    return text


def eta(op: dict, now: datetime | None = None) -> str | None:
    """`~12 min left, 8–20`: the estimate's point and 80 % interval, from `now` (default: the clock)."""
    point, low, high = (_time(op.get(k)) for k in ("eta", "eta_low", "eta_high"))
    if point is None:
        return None
    now = now or datetime.now(timezone.utc)
    left = [(t - now).total_seconds() if t else None for t in (point, low, high)]
    if left[2] is not None and left[2] <= 0:
        return "past its estimate"
    if left[0] <= 0:
        return f"any moment now, up to {_span(left[2])}" if left[2] else "any moment now"
    unit, size = _unit(left[0])
    text = f"~{_amount(left[0] / size)} {unit} left"
    if left[1] is not None and left[2] is not None:
        text += f", {_amount(max(left[1], 0) / size)}–{_amount(left[2] / size)}"
    return text


_UNITS = (("s", 1.0, 90.0), ("min", 60.0, 90 * 60.0), ("h", 3600.0, 48 * 3600.0), ("days", 86400.0, float("inf")))


def _unit(seconds: float) -> tuple[str, float]:
    return next((unit, size) for unit, size, below in _UNITS if seconds < below)


def _span(seconds: float) -> str:
    unit, size = _unit(seconds)
    return f"~{_amount(seconds / size)} {unit}"


def _amount(value: float) -> str:
    """Whole numbers, with one decimal between 1 and 10 ("1.4–3.9 h")."""
    if 1 <= value < 10 and abs(value - round(value)) >= 0.05:
        return f"{value:.1f}"
    return str(max(round(value), 0))


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# ---------------------------------------------------------------- failed items (`lrowatch items`)

ITEM_COLUMNS = ("index", "input", "code", "message", "human_review_state")


# google.rpc.Code, for the item statuses that carry only the number.
RPC_CODE_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
                  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


def items_plain(items: list[dict], out: TextIO | None = None) -> None:
    for item in items:
        print(failed_item_line(item), file=out or sys.stdout)


def failed_item_line(item: dict) -> str:
    """One failed item as `items` prints it: its input, ready to resubmit; or, for an item that
    names none (a Vision product-set import reports each line of its CSV, inputs of successes
    only), `csv line 5: 5 NOT_FOUND: …`, counted from 1 as editors and `sed -n 5p` count."""
    if item.get("input"):
        return visible(item["input"])
    index, status = item.get("index"), item.get("status") or {}
    code = status.get("code")
    name = RPC_CODE_NAMES[code] if isinstance(code, int) and 0 <= code < len(RPC_CODE_NAMES) else None
    line = index + 1 if isinstance(index, int) else "?"
    return visible(f"csv line {line}: {_error({'code': code, 'status': name, 'message': status.get('message')})}")


def items_notes(items: list[dict]) -> list[str]:
    """What a person should know about items_plain's lines (for stderr: stdout stays one item a line)."""
    notes = []
    escaped = sum(1 for item in items if item.get("input") and visible(item["input"]) != item["input"])
    if escaped:
        notes.append(f"{escaped} input(s) hold control characters, shown escaped (\\x1b, \\u202e); "
                     "--json has them exact")
    missing = sum(1 for item in items if not item.get("input"))
    if missing:
        notes.append(f"{missing} failed item(s) name no input (a Vision import reports lines of its CSV): "
                     "shown as 'csv line N', counted from 1; the index in --csv and --json is N-1")
    return notes


# A spreadsheet reads a cell that starts with one of these as a formula (=HYPERLINK(…),
# @SUM(…), +cmd…): OWASP's CSV-injection list, with NUL from ASVS 1.2.10.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\0")


def items_csv(items: list[dict], out: TextIO | None = None) -> None:
    """The failed items as CSV; a text cell a spreadsheet would run as a formula gets a leading '."""
    out = out or sys.stdout
    out.write(_csv_line(ITEM_COLUMNS))
    for item in items:
        status = item.get("status") or {}
        review = item.get("human_review_status") or {}
        row = [item.get("index"), item.get("input"), status.get("code"), status.get("message"), review.get("state")]
        out.write(_csv_line([spreadsheet_safe(cell) for cell in row]))


def _csv_line(row: Iterable) -> str:
    """One CSV row ending in "\n". The writer quotes only cells holding a character of its line
    terminator: with "\r\n" a lone CR inside a message is quoted too, where a spreadsheet would
    otherwise start a new row (and a new first cell) at it."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(row)
    return buffer.getvalue()[:-2] + "\n"


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text. Numbers stay numbers (-3 is no formula);
    text starting with a formula trigger gets the single quote spreadsheets read as "text"."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_TRIGGERS) else text


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
        return json.dumps(value, separators=(",", ":"))  # escapes every control character itself
    return visible(str(value))
