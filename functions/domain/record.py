"""The tracked-operation record: one Firestore document per operation.

The document schema lives here so that every adapter and service agrees on
it. API-provided JSON (metadata, response, error details) is stored as JSON
text: Firestore maps cannot hold nested arrays and cap nesting depth, and a
string's size is easy to bound under the 1 MiB document limit.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any, Mapping

from functions.domain import items, jsontext
from functions.domain.names import OperationRef
from functions.domain.policy import Policy
from functions.domain.states import State

# The record keeps API JSON up to this size each (metadata, response);
# larger payloads are dropped and flagged truncated.
RECORD_JSON_LIMIT = 256 * 1024
# A google.rpc.Status keeps at most this many details, of at most this many bytes in all.
ERROR_DETAILS_MAX = 20
ERROR_DETAILS_LIMIT = 64 * 1024
# Firestore holds at most 1 MiB a document; the record stays well under it, with room
# for field names and Firestore's own per-field overhead.
RECORD_LIMIT = 900 * 1024
# Everything but the JSON fields is bounded at submit (name ≤ 1,500 bytes, ≤ 64 labels …).
OTHER_FIELDS_LIMIT = 32 * 1024
_JSON_FIELDS = ("metadata", "response", "error", "last_error", "items", "cancel", "completion",
                "failed_items", "progress_samples")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Record:
    id: str
    name: str
    service: str
    api_version: str
    endpoint: str
    submitted_at: datetime
    next_poll_at: datetime
    deadline_at: datetime
    shard: int = 0
    policy: dict = field(default_factory=dict)
    quota_project: str | None = None
    labels: dict = field(default_factory=dict)
    correlation_id: str | None = None
    notify_topic: str | None = None
    notify_url: str | None = None
    source: str = "submit"
    state: State = State.PENDING
    sequence: int = 0
    done: bool = False
    provider_state: str | None = None
    progress_percent: int | None = None
    error: dict | None = None
    items: dict | None = None
    failed_items: list | None = None  # the first failed items (functions.domain.items), served by GET …/items
    progress_samples: list | None = None  # [[epoch_s, percent], …] for the ETA (functions.domain.eta)
    eta: datetime | None = None
    eta_low: datetime | None = None
    eta_high: datetime | None = None
    eta_basis: str | None = None  # progress | history | both
    started_at: datetime | None = None  # when its API says it was created, if believable (learning.believable_start)
    metadata: dict | None = None
    response: dict | None = None
    truncated: bool = False
    polls: int = 0
    seen: bool = False
    consecutive_errors: int = 0
    permanent_errors: int = 0  # permanent API errors since the last good answer
    last_error: dict | None = None
    last_polled_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    lease_owner: str | None = None
    cancel: dict | None = None
    completion: dict | None = None
    expire_at: datetime | None = None

    @property
    def ref(self) -> OperationRef:
        return OperationRef(self.name, self.service, self.api_version, self.endpoint)

    @property
    def url(self) -> str:
        return self.ref.url

    @property
    def started(self) -> datetime:
        """When the operation began: its API's own creation time when known, else its submission."""
        return self.started_at or self.submitted_at

    @property
    def poll_policy(self) -> Policy:
        return Policy.parsed(self.policy)

    def with_changes(self, **changes: Any) -> "Record":
        """A copy with these fields changed. Not dataclasses.replace: a frozen dataclass's __init__
        sets each of its 40-odd fields through object.__setattr__, and a poll makes several copies."""
        unknown = changes.keys() - _FIELD_SET
        if unknown:
            raise TypeError(f"Record has no field(s) {', '.join(sorted(unknown))}")
        copy = object.__new__(type(self))
        fields_of = copy.__dict__
        fields_of.update(self.__dict__)
        fields_of.update(changes)
        return copy

    # Firestore document form -------------------------------------------------
    def to_doc(self) -> dict:
        return {name: _encoded(name, getattr(self, name)) for name in _FIELD_NAMES}

    def doc_changes(self, before: "Record") -> dict:
        """The document fields in which this version differs from `before`: all that a write
        guarded by `before`'s version needs to send (less to encode, less on the wire)."""
        old = before.__dict__  # a dataclass's fields, in order: cheaper than a getattr per field
        return {name: _encoded(name, value) for name, value in self.__dict__.items() if value != old[name]}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> "Record":
        """The record a document holds. Built as with_changes builds copies, not through __init__
        (a due page makes hundreds); a document missing a required field goes through __init__,
        which says which."""
        fields_of = dict(_TEMPLATE)  # the defaults, in field order
        fields_of.update((k, v) for k, v in doc.items() if k in _FIELD_SET)
        if any(fields_of[name] is _REQUIRED for name in _REQUIRED_NAMES):
            return cls(**{k: v for k, v in fields_of.items() if v is not _REQUIRED and v is not _FRESH})
        for name in _JSON_FIELDS:
            if isinstance(fields_of[name], str):
                fields_of[name] = json.loads(fields_of[name])
        for name, factory in _FACTORIES:
            if fields_of[name] is _FRESH:
                fields_of[name] = factory()
        fields_of["state"] = State(fields_of["state"])
        record = object.__new__(cls)
        record.__dict__.update(fields_of)
        return record

    def to_list_json(self) -> dict:
        """The view in GET /operations lists: without metadata and response, which may be
        up to 256 KiB each (contract §4); GET /operations/{id} has them."""
        return {k: v for k, v in self.to_json().items() if k not in ("metadata", "response")}

    def to_json(self) -> dict:
        """The public view served by GET /operations/{id} (no lease internals)."""
        return {
            "id": self.id,
            "name": self.name,
            "service": self.service,
            "api_version": self.api_version,
            "url": self.url,
            "state": self.state.value,
            "done": self.done,
            "sequence": self.sequence,
            "provider_state": self.provider_state,
            "progress_percent": self.progress_percent,
            "error": self.error,
            "items": self.items,
            **self.eta_json(),
            "metadata": self.metadata,
            "response": self.response,
            "truncated": self.truncated,
            "labels": self.labels,
            "correlation_id": self.correlation_id,
            "quota_project": self.quota_project,
            "notify_topic": self.notify_topic,
            "notify_url": self.notify_url,
            "policy": self.policy,
            "source": self.source,
            "polls": self.polls,
            "consecutive_errors": self.consecutive_errors,
            "permanent_errors": self.permanent_errors,
            "last_error": self.last_error,
            "cancel": self.cancel,
            "completion": self.completion,
            "submitted_at": rfc3339(self.submitted_at),
            "started_at": rfc3339(self.started_at),
            "updated_at": rfc3339(self.updated_at),
            "last_polled_at": rfc3339(self.last_polled_at),
            "next_poll_at": None if self.state.terminal else rfc3339(self.next_poll_at),
            "deadline_at": rfc3339(self.deadline_at),
            "completed_at": rfc3339(self.completed_at),
        }

    def eta_json(self) -> dict:
        """The completion estimate's public fields; none of them when there is no estimate."""
        if self.eta is None:
            return {}
        return {"eta": rfc3339(self.eta), "eta_low": rfc3339(self.eta_low), "eta_high": rfc3339(self.eta_high),
                "eta_basis": self.eta_basis}


@dataclass(frozen=True)
class Versioned:
    """A record with the store's version of it (its write time): the precondition of the next write."""

    record: Record
    version: Any


_FIELD_NAMES = tuple(f.name for f in fields(Record))
_FIELD_SET = frozenset(_FIELD_NAMES)
# What from_doc starts from: each field's default; a marker where the document must say, or
# where a default is built afresh for each record (a dict of its own).
_REQUIRED, _FRESH = object(), object()
_TEMPLATE = {f.name: (f.default if f.default is not MISSING else _FRESH if f.default_factory is not MISSING
                      else _REQUIRED) for f in fields(Record)}
_REQUIRED_NAMES = tuple(name for name, value in _TEMPLATE.items() if value is _REQUIRED)
_FACTORIES = tuple((f.name, f.default_factory) for f in fields(Record) if f.default_factory is not MISSING)


def _encoded(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return None if value is None else _json_text(name, value)
    return value.value if isinstance(value, State) else value


def _json_text(name: str, value: Any) -> str:
    # The failed items are stored in UTF-8 (their text was made valid when kept), so that
    # non-ASCII object names cost their bytes, not 6 a character; the rest of the API's JSON
    # may hold lone surrogates (its answers aren't checked for them) and stays \u-escaped ASCII.
    return items.stored_text(value) if name == "failed_items" else jsontext.compact(value)


def _stored_bytes(name: str, value: Any) -> int:
    """What a JSON field costs in the document: Firestore counts a string's UTF-8 bytes. The
    other fields are escaped to ASCII, so their length is their size: no copy on every poll."""
    if name != "failed_items" or value is None:
        return _size(value)
    return len(items.stored_text(value).encode())


def fits(value: Any, limit: int = RECORD_JSON_LIMIT) -> bool:
    return _size(value) <= limit


def _size(value: Any) -> int:
    return 0 if value is None else len(jsontext.compact(value))


def bounded_status(status: dict | None) -> tuple[dict | None, bool]:
    """A google.rpc.Status with its details capped in count and bytes: (status, truncated).
    Details are kept from the first on, as many whole ones as fit."""
    details = (status or {}).get("details")
    if not isinstance(details, list):
        return status, False
    kept, size = [], 0
    for detail in details[:ERROR_DETAILS_MAX]:
        size += _size(detail) + 1
        if size > ERROR_DETAILS_LIMIT:
            break
        kept.append(detail)
    if len(kept) == len(details):
        return status, False
    return {**status, "details": kept}, True


def within_limits(record: Record) -> Record:
    """The record cut down to what Firestore can hold, `truncated` set if anything was cut.

    Error details are capped; metadata and response are each kept only if they fit
    RECORD_JSON_LIMIT; if the whole is still too large, response then metadata go.
    """
    error, cut_error = bounded_status(record.error)
    last_error, cut_last = bounded_status(record.last_error)
    changes: dict[str, Any] = {"error": error, "last_error": last_error}
    sizes = {name: _stored_bytes(name, getattr(record, name)) for name in _JSON_FIELDS}
    sizes.update(error=_size(error), last_error=_size(last_error))
    for name in ("metadata", "response"):
        if sizes[name] > RECORD_JSON_LIMIT:
            changes[name], sizes[name] = None, 0
    for name in ("response", "metadata"):
        if sum(sizes.values()) + OTHER_FIELDS_LIMIT > RECORD_LIMIT:
            changes[name], sizes[name] = None, 0
    cut = cut_error or cut_last or any(changes.get(n, getattr(record, n)) is not getattr(record, n)
                                       for n in ("metadata", "response"))
    if not cut:  # nothing to cut (every poll but a few): the record as it is, not a copy
        return record
    return replace(record, **changes, truncated=True)
