"""CloudEvents 1.0, HTTP binary mode: the headers of a webhook notification.

The body stays the notification JSON (Content-Type: application/json); the
context attributes travel as `ce-*` headers, so a standard receiver
(functions-framework's `@cloud_event`, the `cloudevents` SDK) accepts it.
"""
from __future__ import annotations

from urllib.parse import quote

SPEC_VERSION = "1.0"
# Header values are printable ASCII; the HTTP binding percent-encodes the rest, and '"' and '%'.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"%')


def source(project: str, collection: str) -> str:
    """`ce-source`: which lrowatch deployment sent it (its project and collection)."""
    return f"//lrowatch/projects/{project}/collections/{collection}"


def binary_headers(data: dict, source_uri: str) -> dict[str, str]:
    """ce-specversion, ce-id (= event_id), ce-type, ce-source, ce-subject (= the operation
    name) and ce-time (= when lrowatch observed the terminal state) for a notification."""
    headers = {
        "ce-specversion": SPEC_VERSION,
        "ce-id": data["event_id"],
        "ce-type": data["type"],
        "ce-source": source_uri,
        "ce-subject": (data.get("operation") or {}).get("name"),
        "ce-time": data.get("observed_at") or data.get("completed_at"),
        "Content-Type": "application/json",
    }
    return {key: quote(value, safe=_HEADER_SAFE) for key, value in headers.items() if value}
