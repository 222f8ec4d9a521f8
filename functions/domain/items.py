"""Per-item results of a batch: how many items there were, and which ones failed.

Pure. The APIs that report per-item results:
- Document AI: `metadata.individualProcessStatuses[]`, each with
  `inputGcsSource`, `status` (a google.rpc.Status) and `humanReviewStatus`;
- Vision product-set import: `response.statuses[]`, one per line of the input
  CSV (line 0 first), and `response.referenceImages[]`; an image is paired
  with its status only when the API lists one image per status.

The record keeps the first MAX_KEPT failed items, fewer only if their JSON
passes KEPT_BYTES (the record must fit Firestore's 1 MiB document); the
summary always has the true counts, and `failed_kept` when not all are kept.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Mapping

from functions.domain import jsontext
from functions.domain.errors import InvalidArgument

MAX_KEPT = 1000
KEPT_BYTES = 256 * 1024
MESSAGE_LIMIT = 300
INPUT_LIMIT = 2048  # a gs:// URI: bucket (63) + object name (1,024 bytes) with room to spare
EVENT_FIRST = 5  # failed items an event carries
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
STATES = ("failed",)  # only failed items are kept


@dataclass(frozen=True)
class Results:
    summary: dict | None  # {"total", "failed", ["human_review_errors"], ["failed_kept"]}; None: no per-item results
    failed: list[dict] = field(default_factory=list)  # the kept failed items, in the API's order


def results(metadata: Mapping[str, Any] | None, response: Mapping[str, Any] | None) -> Results:
    if isinstance(metadata, Mapping) and isinstance(metadata.get("individualProcessStatuses"), list):
        entries = [e for e in metadata["individualProcessStatuses"] if isinstance(e, Mapping)]
        return _collect(entries, _document_item)
    if isinstance(response, Mapping) and isinstance(response.get("statuses"), list):
        statuses = response["statuses"]
        images = response.get("referenceImages")
        paired = images if isinstance(images, list) and len(images) == len(statuses) else None
        entries = [{"status": s, "image": paired[i] if paired else None} for i, s in enumerate(statuses)]
        return _collect(entries, _import_item)
    return Results(None)


def summary(metadata: Mapping[str, Any] | None, response: Mapping[str, Any] | None) -> dict | None:
    return results(metadata, response).summary


def first_failed(kept: list[dict] | None) -> list[dict]:
    return list(kept or [])[:EVENT_FIRST]


def _collect(entries: list, item_of) -> Results:
    failed = kept_bytes = review_errors = 0
    kept: list[dict] = []
    for index, entry in enumerate(entries):
        review = entry.get("humanReviewStatus")
        if isinstance(review, Mapping) and review.get("state") == "ERROR":
            review_errors += 1
        if not _failed(entry.get("status")):
            continue
        failed += 1
        if len(kept) < MAX_KEPT:
            item = item_of(index, entry)
            size = len(jsontext.compact(item))
            if kept_bytes + size <= KEPT_BYTES:
                kept.append(item)
                kept_bytes += size
    if not entries:
        return Results(None)
    counts = {"total": len(entries), "failed": failed}
    if review_errors:
        counts["human_review_errors"] = review_errors
    if len(kept) < failed:
        counts["failed_kept"] = len(kept)
    return Results(counts, kept)


def _failed(status: Any) -> bool:
    return isinstance(status, Mapping) and status.get("code", 0) not in (0, None)


def _status(status: Mapping[str, Any]) -> dict:
    code = status.get("code")
    return {"code": code if isinstance(code, int) and not isinstance(code, bool) else 2,
            "message": str(status.get("message") or "")[:MESSAGE_LIMIT]}


def _document_item(index: int, entry: Mapping[str, Any]) -> dict:
    item = {"index": index, "input": _text(entry.get("inputGcsSource"), INPUT_LIMIT),
            "status": _status(entry["status"])}
    review = entry.get("humanReviewStatus")
    if isinstance(review, Mapping) and review.get("state"):
        item["human_review_status"] = {"state": _text(review.get("state"), 64)}
        if _text(review.get("stateMessage"), MESSAGE_LIMIT):
            item["human_review_status"]["message"] = _text(review["stateMessage"], MESSAGE_LIMIT)
    return item


def _import_item(index: int, entry: Mapping[str, Any]) -> dict:
    image = entry.get("image")
    item = {"index": index, "input": None, "status": _status(entry["status"])}
    if isinstance(image, Mapping):
        item["input"] = _text(image.get("uri"), INPUT_LIMIT)
        item["reference_image"] = {k: _text(image.get(k), INPUT_LIMIT) for k in ("name", "uri") if image.get(k)}
    return item


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


# ---------------------------------------------------------------- paging (GET /operations/{id}/items)

def page(kept: list[dict] | None, counts: dict | None, params: Mapping[str, str]) -> dict:
    """`?state=failed&page_size=N&page_token=T` over the kept failed items."""
    unknown = sorted(set(params) - {"state", "page_size", "page_token"})
    if unknown:
        raise InvalidArgument(f"unknown query parameters: {', '.join(unknown)[:200]}")
    state = (params.get("state") or "failed").lower()
    if state not in STATES:
        raise InvalidArgument("state must be failed: lrowatch keeps the failed items only")
    try:
        size = int(params.get("page_size") or DEFAULT_PAGE_SIZE)
    except ValueError as exc:
        raise InvalidArgument("page_size must be a whole number") from exc
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    kept = list(kept or [])
    offset = _offset(params.get("page_token"), len(kept))
    body: dict = {"items": kept[offset:offset + size],
                  "total_size": (counts or {}).get("failed", len(kept)), "kept": len(kept)}
    if offset + size < len(kept):
        body["next_page_token"] = _token(offset + size)
    return body


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"items:{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None, limit: int) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        offset = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument("page_token is not one this listing returned") from exc
    if prefix != "items" or not 0 <= offset <= limit or len(token) > 64:
        raise InvalidArgument("page_token is not one this listing returned")
    return offset
