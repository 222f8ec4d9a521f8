"""States (contract §5) and how a google.longrunning.Operation maps onto them."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from functions.domain import items


class State(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def rank(self) -> int:
        return _RANK[self]


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED, State.EXPIRED, State.TIMED_OUT})
ACTIVE = (State.PENDING, State.RUNNING, State.CANCELLING)
_RANK = {State.PENDING: 0, State.RUNNING: 1, State.CANCELLING: 2, **{s: 3 for s in TERMINAL}}

# Provider states (Vision, Document AI, Vertex/commonMetadata …) by meaning.
_PROVIDER_SUCCESS = {"SUCCEEDED", "SUCCESSFUL", "DONE", "SUCCESS", "COMPLETED"}
_PROVIDER_FAILED = {"FAILED", "FAILURE", "ERROR"}
_PROVIDER_CANCELLED = {"CANCELLED", "CANCELED"}
_PROVIDER_CANCELLING = {"CANCELLING", "CANCELING"}

CODE_CANCELLED = 1
CODE_UNKNOWN = 2


@dataclass(frozen=True)
class Observation:
    """What one GET said, normalised."""

    state: State
    done: bool
    provider_state: str | None
    progress_percent: int | None
    error: dict | None
    items: dict | None
    metadata: dict | None
    response: dict | None
    failed_items: list = field(default_factory=list)  # the first failed items (functions.domain.items)


def advance(current: State, observed: State) -> State:
    """A state never moves backwards; a terminal state is final."""
    if current.terminal:
        return current
    return observed if observed.rank >= current.rank else current


PROVIDER_STATE_MAX = 100

# Where APIs keep their own state, in the order looked at (the metadata shapes met across the catalog):
# Vision and Document AI at the top; Vertex AI in commonMetadata / genericMetadata; Firestore and
# Datastore admin in operationState; Dataproc cluster operations in status.state.
_STATE_HOLDERS = ("commonMetadata", "genericMetadata", "status")
_STATE_KEYS = ("state", "operationState")
# Progress as a percentage: progressPercent (Speech, Data Labeling), progressPercentage (Firestore
# import/export, Service Management, Text-to-Speech), either in proto spelling, and Spanner's and
# Bigtable's nested OperationProgress ("progress": {"progressPercent": …}).
_PERCENT_KEYS = ("progressPercent", "progressPercentage", "progress_percent", "progress_percentage")
# Progress as work done of work estimated (Firestore/Datastore: int64 counters, JSON strings).
_WORK_KEYS = ("progressDocuments", "progressEntities", "progressBytes")


def provider_state_of(metadata: Mapping[str, Any] | None) -> str | None:
    """The provider's own state word; anything but a short printable string is none
    (it is stored as a field of its own, and a lone surrogate can't be stored)."""
    if not isinstance(metadata, Mapping):
        return None
    for holder in (metadata, *(metadata.get(h) for h in _STATE_HOLDERS)):
        if isinstance(holder, Mapping):
            for key in _STATE_KEYS:
                if isinstance(holder.get(key), str):
                    state = holder[key]
                    return state if len(state) <= PROVIDER_STATE_MAX and state.isprintable() else None
    return None


# When the API says the operation was created or started, in the order looked at (the metadata shapes
# met across the catalog): createTime in most metadata; startTime (Speech, Firestore admin, Service
# Management); submitTime (Vision batch, Translation); nested in Vertex AI's genericMetadata /
# commonMetadata, Datastore admin's common, Spanner's progress.
_START_KEYS = ("createTime", "startTime", "submitTime")
_START_HOLDERS = ("genericMetadata", "commonMetadata", "common", "progress")
TIMESTAMP_MAX = 64  # characters: RFC 3339 with nanoseconds is 30


def start_of(metadata: Mapping[str, Any] | None) -> datetime | None:
    """The first RFC 3339 timestamp (with its offset) found under a start key; anything else is none."""
    if not isinstance(metadata, Mapping):
        return None
    for holder in (metadata, *(metadata.get(h) for h in _START_HOLDERS)):
        if isinstance(holder, Mapping):
            for key in _START_KEYS:
                when = _timestamp(holder.get(key))
                if when is not None:
                    return when
    return None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > TIMESTAMP_MAX:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.utcoffset() is not None else None  # RFC 3339 always says its offset


def _number(value: Any) -> float | None:
    """JSON numbers, and int64 fields that proto3 JSON renders as strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return float(value)
    return None


def _clamped(value: float) -> int:
    return int(max(0, min(100, value)))


def progress_of(metadata: Mapping[str, Any] | None) -> int | None:
    if not isinstance(metadata, Mapping):
        return None
    nested = metadata.get("progress")
    for holder in (metadata, nested if isinstance(nested, Mapping) else {}):
        for key in _PERCENT_KEYS:
            value = holder.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return _clamped(value)
    progresses = metadata.get("annotationProgress")  # Video Intelligence: one per input
    if isinstance(progresses, list):
        values = [p.get("progressPercent", 0) for p in progresses if isinstance(p, Mapping)]
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return _clamped(sum(values) / len(values))
    for key in _WORK_KEYS:
        work = metadata.get(key)
        if isinstance(work, Mapping):
            done, estimated = _number(work.get("completedWork")), _number(work.get("estimatedWork"))
            if done is not None and estimated:
                return _clamped(100 * done / estimated)
    return None


def items_of(metadata: Mapping[str, Any] | None, response: Mapping[str, Any] | None) -> dict | None:
    """Per-item outcome summary: Document AI statuses, Vision import statuses (functions.domain.items),
    else success/failure counters."""
    return items.summary(metadata, response) or _counted_items(metadata)


def _counted_items(metadata: Mapping[str, Any] | None) -> dict | None:
    """Import/purge metadata that counts items instead of listing them (Discovery Engine, Retail,
    Vertex AI Search): successCount / failureCount, with totalCount when known."""
    if not isinstance(metadata, Mapping):
        return None
    success, failure = _number(metadata.get("successCount")), _number(metadata.get("failureCount"))
    if success is None and failure is None:
        return None
    failed = int(failure or 0)
    total = _number(metadata.get("totalCount"))
    return {"total": max(int(total) if total is not None else 0, int(success or 0) + failed), "failed": failed}


def _as_status(error: Any) -> dict:
    if isinstance(error, Mapping):
        code = error.get("code")
        status = {
            "code": code if isinstance(code, int) and not isinstance(code, bool) else CODE_UNKNOWN,
            "message": str(error.get("message", ""))[:4096],
        }
        if isinstance(error.get("details"), list):
            status["details"] = error["details"]
        return status
    return {"code": CODE_UNKNOWN, "message": "operation error was not a google.rpc.Status"}


def normalise(operation: Mapping[str, Any]) -> Observation:
    """Map a google.longrunning.Operation JSON to an Observation (contract §5)."""
    metadata = operation.get("metadata") if isinstance(operation.get("metadata"), Mapping) else None
    response = operation.get("response") if isinstance(operation.get("response"), Mapping) else None
    provider_state = provider_state_of(metadata)
    upper = (provider_state or "").upper()
    progress = progress_of(metadata)
    per_item = items.results(metadata, response)
    done = operation.get("done") is True
    error = None
    if not done:
        state = State.CANCELLING if upper in _PROVIDER_CANCELLING else State.RUNNING
    elif "error" in operation and operation["error"] is not None:
        error = _as_status(operation["error"])
        state = State.CANCELLED if error["code"] == CODE_CANCELLED else State.FAILED
    elif upper in _PROVIDER_FAILED:
        state = State.FAILED
        error = {"code": CODE_UNKNOWN, "message": f"provider state {provider_state}"}
    elif upper in _PROVIDER_CANCELLED:
        state = State.CANCELLED
        error = {"code": CODE_CANCELLED, "message": f"provider state {provider_state}"}
    elif response is not None or upper in _PROVIDER_SUCCESS:
        state = State.SUCCEEDED
    else:
        # Never a silent success: done with nothing to show is an error (api-core does the same).
        state = State.FAILED
        error = {"code": CODE_UNKNOWN, "message": "operation finished with neither response nor error"}
    if state is State.SUCCEEDED:
        progress = 100
    return Observation(state, done, provider_state, progress, error, per_item.summary or _counted_items(metadata),
                       metadata, response, per_item.failed)
