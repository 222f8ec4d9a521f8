"""Use cases behind `handle`: completion/error work and cancel commands.

Every effect is claimed first (a conditional write keyed by what makes it
unique), completed with its result, and released if it fails, so that a
redelivery retries it and a duplicate delivery does nothing. A delivery's
work is one outer claim (serialising duplicates that arrive together) around
inner claims, one per external effect (error log, notify_topic, notify_url,
:cancel): when a later step fails, the redelivery skips the steps already done.

Claims expire (Firestore TTL); the record itself is the lasting dedupe: a
completion or cancel outcome recorded on it is never redone.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable, Mapping

from functions.config import Settings
from functions.domain import events
from functions.domain.errors import InvalidArgument, TransientError
from functions.domain.names import build_ref, is_operation_id
from functions.domain.record import Record, rfc3339, utcnow
from functions.domain.states import State
from functions.ports import Claims, OperationsApi, Publisher, RecordStore

log = logging.getLogger(__name__)

# An in-progress claim may be taken over once handle's timeout (LRO_HANDLER_TIMEOUT_S) has
# passed, plus this margin: an instance may run on briefly past its timeout, so a live
# holder keeps its claim, and a crashed one's is free soon after.
CLAIM_MARGIN_S = 60.0
# Completed claims outlive Pub/Sub's longest redelivery window (7 days' retention).
CLAIM_KEEP_DAYS = 8
# Terminal states that page someone: one ERROR log entry each.
ALERTING = frozenset({State.FAILED, State.EXPIRED, State.TIMED_OUT})
# Cancel outcomes after which a new cancel request calls the API again.
RETRYABLE_CANCELS = frozenset({"refused", "not_found"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
# Message types on our topics that handle does not act on.
SKIPPED = frozenset({events.CANCEL_OUTCOME, "lro.notification"})


class PoisonMessage(Exception):
    """The message can never be handled: acknowledge it and log why."""


class UnknownType(PoisonMessage):
    """The message's `type` is not one handle knows."""


class UnreadableMessage(PoisonMessage):
    """The message lacks or garbles a field its type requires."""


class UnknownOperation(PoisonMessage):
    """The message names an operation lrowatch does not track."""


class ConflictingEvent(PoisonMessage):
    """The event's state contradicts the stored record at the same sequence."""


class EffectBusy(TransientError):
    """Another delivery holds this effect's claim: retry later."""


class RecordBehind(TransientError):
    """The event is newer than the stored record: retry once the record has caught up."""


class HandleService:
    def __init__(self, settings: Settings, store: RecordStore, claims: Claims, api: OperationsApi,
                 publisher: Publisher, notifier=None, *,
                 clock: Callable = utcnow):
        self._settings = settings
        self._store = store
        self._claims = claims
        self._api = api
        self._publisher = publisher
        self._notifier = notifier
        self._clock = clock

    def handle(self, data: Any) -> str:
        """Dispatch one decoded message; returns what was done (for logs and tests)."""
        if not isinstance(data, Mapping):
            raise UnreadableMessage("message data is not a JSON object")
        kind = data.get("type")
        if kind == events.STATE_CHANGED:
            return self._on_state_changed(data)
        if kind == events.CANCEL_COMMAND:
            return self._on_cancel(data)
        if kind in SKIPPED:
            return "skipped"
        raise UnknownType(f"unknown message type {str(kind)[:80]!r}")

    # Effects ---------------------------------------------------------------
    def _once(self, key: str, effect: Callable[[], dict]) -> tuple[dict, bool]:
        """(result, fresh): run `effect` unless it already ran; its stored result otherwise."""
        status = self._claims.claim(key, self._clock(), self._settings.handler_timeout_s + CLAIM_MARGIN_S)
        if status == "done":
            return self._claims.result(key) or {}, False
        if status == "busy":
            raise EffectBusy(f"effect {key} is in progress elsewhere")
        try:
            result = effect()
        except BaseException:
            try:
                self._claims.release(key)
            except Exception:  # the claim then expires on its own; keep the original error
                log.warning("could not release a claim", extra={"claim": key}, exc_info=True)
            raise
        self._claims.complete(key, result, self._clock(), CLAIM_KEEP_DAYS)
        return result, True

    # State changes -----------------------------------------------------------
    def _on_state_changed(self, data: Mapping) -> str:
        operation_id = _operation_id(data)
        state, sequence = data.get("state"), data.get("sequence")
        if state not in State.__members__ or type(sequence) is not int or sequence < 1:
            raise UnreadableMessage("state-change event without a valid state and sequence")
        if not State(state).terminal:
            return "ignored"  # poll owns the record's state; only completion is handle's
        eid = events.event_id(operation_id, sequence)
        result, fresh = self._once(f"complete-{eid}",
                                   lambda: self._complete(operation_id, sequence, State(state), eid))
        return result.get("outcome", "completed") if fresh else "duplicate"

    def _complete(self, operation_id: str, sequence: int, state: State, eid: str) -> dict:
        record = self._get(operation_id)
        if sequence < record.sequence:
            return {"outcome": "stale"}  # an older event changes nothing
        if sequence > record.sequence or not record.state.terminal:
            raise RecordBehind(f"event {eid} is ahead of the record (sequence {record.sequence})")
        if state is not record.state:
            raise ConflictingEvent(f"event {eid} says {state.value}, the record {record.state.value}")
        if (record.completion or {}).get("event_id") == eid:
            return {"outcome": "duplicate"}  # completed by a delivery whose claim has since expired
        self._once(f"log-{eid}", lambda: _log_terminal(record, eid))
        completion: dict = {"event_id": eid, "state": record.state.value}
        for channel in self._notifier.channels(record) if self._notifier else []:
            completion[channel], _ = self._once(
                f"{channel}-{eid}", lambda c=channel: self._notifier.send(c, record, eid))
        now = self._clock()
        end = record.completed_at or now
        completion.update(completed_at=rfc3339(end), handled_at=rfc3339(now),
                          duration_s=round(end.timestamp() - record.started.timestamp(), 3))
        self._store.update_fields(record.id, {"completion": _json(completion), "updated_at": now})
        return {"outcome": "completed", **completion}

    # Cancellation --------------------------------------------------------------
    def _on_cancel(self, data: Mapping) -> str:
        operation_id = _operation_id(data)
        attempt = _cancel_attempt(self._get(operation_id), _request_id(data))
        # One outcome per attempt, however often its commands are repeated or redelivered.
        key = f"cancel-{operation_id}" if attempt == 1 else f"cancel-{operation_id}-{attempt}"
        result, fresh = self._once(key, lambda: self._cancel(operation_id, data, attempt))
        return result.get("outcome", "duplicate") if fresh else "duplicate"

    def _cancel(self, operation_id: str, data: Mapping, attempt: int) -> dict:
        record = self._get(operation_id)
        call_key = _call_key(operation_id, attempt)
        if record.cancel is not None and record.cancel.get("attempt", 1) >= attempt \
                and self._claims.get(call_key) is None:
            return {"outcome": "duplicate"}  # recorded long ago; its claims have expired
        outcome, _ = self._once(call_key, lambda: self._call_cancel(record, data, attempt))
        # Recording and publishing are idempotent: a redelivery after a crash here redoes them.
        now = self._clock()
        changes = {"cancel": _json(outcome), "updated_at": now}
        if not record.state.terminal:
            changes["next_poll_at"] = now  # observe CANCELLING/CANCELLED soon
        self._store.update_fields(record.id, changes)
        message = events.cancel_outcome(record.with_changes(cancel=outcome), outcome, now)
        self._publisher.publish_one(self._settings.topic_path(self._settings.events_topic), message)
        log.info("cancel %s", outcome["outcome"], extra={
            "operation_id": record.id, "operation": record.name, "service": record.service,
            "cancel_outcome": outcome["outcome"], "api_status": outcome.get("api_status")})
        return outcome

    def _call_cancel(self, record: Record, data: Mapping, attempt: int) -> dict:
        unsupported = record.ref.cannot("cancel")
        if record.state.terminal:
            outcome = {"outcome": "already_finished", "api_status": None}  # no API call
        elif unsupported:  # a command that bypassed submit's check: never sent, not the API's refusal
            outcome = {"outcome": "unsupported",
                       "api_status": {"code": 400, "status": "FAILED_PRECONDITION", "message": unsupported}}
        else:
            result = self._api.cancel(record.ref, record.quota_project)  # ApiUnavailable → retried
            outcome = {"outcome": result.outcome, "api_status": result.api_status}
        return {**outcome, "reason": data.get("reason"), "requested_by": data.get("requested_by"),
                "at": rfc3339(self._clock()), "attempt": attempt, "request_id": data.get("request_id")}

    def _get(self, operation_id: str) -> Record:
        record = self._store.get(operation_id)
        if record is None:
            raise UnknownOperation(f"no tracked operation {operation_id}")
        return record


def _log_terminal(record: Record, eid: str) -> dict:
    """One structured entry per terminal state; ERROR for those that alert."""
    level = logging.ERROR if record.state in ALERTING else logging.INFO
    log.log(level, "operation %s %s", record.name, record.state.value, extra={
        "event": "lro.terminal", "event_id": eid, "operation_id": record.id, "operation": record.name,
        "service": record.service, "state": record.state.value, "labels": record.labels,
        "correlation_id": record.correlation_id, "error": record.error})
    return {"level": logging.getLevelName(level)}


def _operation_id(data: Mapping) -> str:
    operation = data.get("operation")
    operation_id = data.get("id") or (operation.get("id") if isinstance(operation, Mapping) else None)
    if is_operation_id(operation_id):  # also safe as a claim key
        return operation_id
    if data.get("name") and data.get("service"):
        try:
            return build_ref(data["name"], data["service"]).id
        except InvalidArgument as exc:
            raise UnreadableMessage(str(exc)) from exc
    raise UnreadableMessage("message names no operation id")


def _request_id(data: Mapping) -> str | None:
    """The command's request id (one per POST …:cancel); None for commands without one."""
    request = data.get("request_id")
    if request is None:
        return None
    if not isinstance(request, str) or not _REQUEST_ID.match(request):
        raise UnreadableMessage("request_id must be 1-64 letters, digits, - or _")
    return request


def _cancel_attempt(record: Record, request: str | None) -> int:
    """Which :cancel of the operation a command is: the first, or, for a new request after
    one that ended refused or not_found, the next (the API may accept it now). Any other
    command is the recorded attempt again, which its claims turn into a duplicate."""
    if record.cancel is None:
        return 1
    attempt = record.cancel.get("attempt", 1)
    if request not in (None, record.cancel.get("request_id")) and record.cancel.get("outcome") in RETRYABLE_CANCELS:
        return attempt + 1
    return attempt


def _call_key(operation_id: str, attempt: int) -> str:
    return f"cancel-call-{operation_id}" if attempt == 1 else f"cancel-call-{operation_id}-{attempt}"


def _json(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
