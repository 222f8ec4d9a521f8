"""Per-item results of a batch: how many items there were, and which ones failed.

Pure. The APIs that report per-item results:
- Document AI: `metadata.individualProcessStatuses[]`, each with
  `inputGcsSource`, `status` (a google.rpc.Status) and `humanReviewStatus`;
- Vision product-set import: `response.statuses[]`, one per line of the input
  CSV (line 0 first), and `response.referenceImages[]`; an image is paired
  with its status only when the API lists one image per status.

The record keeps the first failed items, at most MAX_KEPT, in at most
KEPT_BYTES of stored text (compact JSON in UTF-8, as the record stores it:
Firestore counts a string's UTF-8 bytes). An input is cut at INPUT_LIMIT
bytes, a message at MESSAGE_LIMIT. The bound: all of the first 1,000 are kept
whenever they average at most AVERAGE_ITEM_BYTES (600) bytes each, which a
Document AI item with a 200-byte URI, a 200-byte message and its review state
is well within (about 500, non-ASCII names included). Items of the largest
shape cannot all fit one Firestore document: of Document AI items with a
1,024-byte input and capped messages (about 1,650 bytes) about 365 are kept, of
Vision items, whose reference image repeats the URI (about 3,400), about 176.
The summary always has the true counts, and `failed_kept` when not all are kept.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from functions.domain.errors import InvalidArgument

MAX_KEPT = 1000
AVERAGE_ITEM_BYTES = 600
# Each item with its comma, and the list's brackets: the first MAX_KEPT always fit when they
# average AVERAGE_ITEM_BYTES. The rest of the record stays within RECORD_LIMIT beside them
# (errors ≤ ~90 KiB each, other fields ≤ 32 KiB): record.within_limits drops the API's
# response, then its metadata (which the items were read from) when all don't fit.
KEPT_BYTES = MAX_KEPT * (AVERAGE_ITEM_BYTES + 1) + 2
INPUT_LIMIT = 1024  # bytes: a GCS object name's limit
MESSAGE_LIMIT = 256  # bytes; Document AI's per-document messages are one sentence
STATE_LIMIT = 64  # bytes: an enum name
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


def stored_text(value: Any) -> str:
    """Compact JSON in UTF-8, as the record stores its failed items: an é is 2 bytes there,
    not the 6 of a \\u00e9 escape. Text with a lone surrogate (never from _capped), which UTF-8
    cannot hold, keeps the escapes."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text


def _collect(entries: list, item_of) -> Results:
    failed = review_errors = 0
    kept: list[dict] = []
    kept_bytes, full = 2, False  # the list's brackets
    for index, entry in enumerate(entries):
        review = entry.get("humanReviewStatus")
        if isinstance(review, Mapping) and review.get("state") == "ERROR":
            review_errors += 1
        if not _failed(entry.get("status")):
            continue
        failed += 1
        if not full:  # the first items that fit, so pages never have gaps
            item = item_of(index, entry)
            size = len(stored_text(item).encode()) + 1  # and its comma
            full = kept_bytes + size > KEPT_BYTES
            if not full:
                kept.append(item)
                kept_bytes += size
                full = len(kept) == MAX_KEPT
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
    message = status.get("message")
    return {"code": code if isinstance(code, int) and not isinstance(code, bool) else 2,
            "message": _capped(message if isinstance(message, str) else str(message or ""), MESSAGE_LIMIT) or ""}


def _document_item(index: int, entry: Mapping[str, Any]) -> dict:
    item = {"index": index, "input": _capped(entry.get("inputGcsSource"), INPUT_LIMIT),
            "status": _status(entry["status"])}
    review = entry.get("humanReviewStatus")
    state = _capped(review.get("state"), STATE_LIMIT) if isinstance(review, Mapping) else None
    if state:
        item["human_review_status"] = {"state": state}
        # Only an ERROR's message says something ("see state_message for details"); the others
        # repeat boilerplate ("HumanReviewConfig is not enabled.") on every document.
        message = _capped(review.get("stateMessage"), MESSAGE_LIMIT)
        if state == "ERROR" and message:
            item["human_review_status"]["message"] = message
    return item


def _import_item(index: int, entry: Mapping[str, Any]) -> dict:
    image = entry.get("image")
    item = {"index": index, "input": None, "status": _status(entry["status"])}
    if isinstance(image, Mapping):
        item["input"] = _capped(image.get("uri"), INPUT_LIMIT)
        item["reference_image"] = {k: _capped(image.get(k), INPUT_LIMIT) for k in ("name", "uri") if image.get(k)}
    return item


def _capped(value: Any, limit: int) -> str | None:
    """A non-empty string cut to at most `limit` UTF-8 bytes, at a character boundary; else None.
    A lone surrogate (the API's JSON may hold one) becomes "?": UTF-8 and Firestore can't hold it."""
    if not isinstance(value, str) or not value:
        return None
    return value.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore") or None


# ---------------------------------------------------------------- paging (GET /operations/{id}/items)

_RESTART = "list again without page_token"
_TOKEN_CHARS = 256  # far above any token page() makes; bounds the work of reading one


def page(operation_id: str, kept: list[dict] | None, counts: dict | None, params: Mapping[str, str]) -> dict:
    """`?state=failed&page_size=N&page_token=T` over the kept failed items of `operation_id`."""
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
    offset = _offset(params.get("page_token"), operation_id, kept)
    body: dict = {"items": kept[offset:offset + size],
                  "total_size": (counts or {}).get("failed", len(kept)), "kept": len(kept)}
    if offset + size < len(kept):
        body["next_page_token"] = _token(operation_id, offset + size, _served(kept, offset + size))
    return body


def _served(kept: list[dict], offset: int) -> str:
    """A digest of the items before `offset`, those already served: while they are unchanged,
    the next page follows on with nothing skipped or repeated, even if later items changed."""
    return hashlib.sha256(stored_text(kept[:offset]).encode()).hexdigest()[:16]


def _token(operation_id: str, offset: int, served: str) -> str:
    text = f"items:{operation_id}:{offset}:{served}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _offset(token: str | None, operation_id: str, kept: list[dict]) -> int:
    """Where the page of `token` starts. Only a token page() made for this list is accepted:
    one that reads back to itself exactly (no `+2`, ` 3` or `1_0` offsets, no padding)."""
    if not token:
        return 0
    try:
        if len(token) > _TOKEN_CHARS:
            raise ValueError("too long")
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        prefix, rest = text.split(":", 1)
        owner, number, served = rest.rsplit(":", 2)
        offset = int(number)
        if prefix != "items" or offset < 1 or _token(owner, offset, served) != token:
            raise ValueError("not canonical")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"page_token is not one this listing returned; {_RESTART}") from exc
    if owner != operation_id:
        raise InvalidArgument(f"page_token belongs to another operation's items; {_RESTART}")
    if offset > len(kept) or _served(kept, offset) != served:
        raise InvalidArgument(f"the failed items changed since page_token was made; {_RESTART}")
    return offset
