"""Use cases behind `handle`: completion/error work and cancel commands.

Each effect is claimed first (a conditional write keyed by what makes it
unique), completed with its result, and released if it fails, so that a
redelivery retries it and a duplicate delivery does nothing.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping

from functions.config import Settings
from functions.domain import events
from functions.domain.errors import InvalidArgument, TransientError
from functions.domain.names import build_ref
from functions.domain.record import Record, utcnow
from functions.domain.states import State

log = logging.getLogger(__name__)

CLAIM_EXPIRES_S = 300.0
CLAIM_KEEP_DAYS = 7


class PoisonMessage(Exception):
    """The message can never be handled: acknowledge it and log why."""


class HandleService:
    def __init__(self, settings: Settings, store, claims, api, publisher, notifier=None, *,
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
            raise PoisonMessage("message data is not a JSON object")
        kind = data.get("type")
        if kind == events.STATE_CHANGED:
            return self._on_state_changed(data)
        if kind == events.CANCEL_COMMAND:
            return self._on_cancel(data)
        if kind in (events.CANCEL_OUTCOME, "lro.notification"):
            return "skipped"  # our own outcome events: nothing to do
        raise PoisonMessage(f"unknown message type {str(kind)[:80]!r}")

    # Effects ---------------------------------------------------------------
    def _once(self, key: str, effect: Callable[[], dict]) -> tuple[dict, bool]:
        """(result, fresh): run `effect` unless it already ran; its stored result otherwise."""
        status = self._claims.claim(key, self._clock(), CLAIM_EXPIRES_S)
        if status == "done":
            return (self._claims.get(key) or {}).get("result") or {}, False
        if status == "busy":
            raise TransientError(f"effect {key} is in progress elsewhere")
        try:
            result = effect()
        except BaseException:
            self._claims.release(key)
            raise
        self._claims.complete(key, result, self._clock(), CLAIM_KEEP_DAYS)
        return result, True

    # State changes -----------------------------------------------------------
    def _on_state_changed(self, data: Mapping) -> str:
        operation_id = _operation_id(data)
        state = data.get("state")
        if state not in State.__members__ or not isinstance(data.get("sequence"), int):
            raise PoisonMessage("state-change event without a valid state and sequence")
        if not State(state).terminal:
            return "ignored"
        record = self._store.get(operation_id)
        if record is None:
            raise PoisonMessage(f"event for unknown operation {operation_id}")
        if record.sequence > data["sequence"] and record.completion:
            return "stale"
        _, fresh = self._once(f"complete-{data.get('event_id') or operation_id}",
                              lambda: self._complete(record, data))
        return "completed" if fresh else "duplicate"

    def _complete(self, record: Record, data: Mapping) -> dict:
        now = self._clock()
        completion: dict = {"event_id": data.get("event_id"), "handled_at": now.isoformat(),
                            "state": record.state.value}
        if record.state is not State.SUCCEEDED:
            log.error("operation ended %s", record.state.value, extra={
                "operation_id": record.id, "operation": record.name, "state": record.state.value,
                "service": record.service, "labels": record.labels, "error": record.error})
        if self._notifier is not None:
            completion.update(self._notifier.notify(record, data.get("event_id") or record.id))
        completion["duration_s"] = round((record.completed_at or now).timestamp()
                                         - record.submitted_at.timestamp(), 3)
        self._store.update_fields(record.id, {"completion": _json(completion), "updated_at": now})
        return {"outcome": "completed", **completion}

    # Cancellation --------------------------------------------------------------
    def _on_cancel(self, data: Mapping) -> str:
        operation_id = _operation_id(data)
        record = self._store.get(operation_id)
        if record is None:
            raise PoisonMessage(f"cancel for unknown operation {operation_id}")
        # One :cancel per operation, however often the command is repeated or redelivered.
        key = f"cancel-{record.id}"
        outcome, fresh = self._once(key, lambda: self._call_cancel(record, data))
        if not fresh and (self._claims.get(key) or {}).get("published"):
            return "duplicate"
        # Recording and publishing are idempotent, so a redelivery after a crash redoes them.
        now = self._clock()
        changes = {"cancel": _json(outcome), "updated_at": now}
        if not record.state.terminal:
            changes["next_poll_at"] = now  # observe CANCELLING/CANCELLED soon
        self._store.update_fields(record.id, changes)
        message = events.cancel_outcome(record.with_changes(cancel=outcome), outcome, now)
        self._publisher.publish_one(self._settings.topic_path(self._settings.events_topic), message)
        self._claims.mark(key, {"published": True})
        log.info("cancel %s", outcome["outcome"], extra={"operation_id": record.id, "operation": record.name})
        return outcome["outcome"] if fresh else "duplicate"

    def _call_cancel(self, record: Record, data: Mapping) -> dict:
        if record.state.terminal:
            outcome = {"outcome": "already_finished", "api_status": None}  # no API call
        else:
            result = self._api.cancel(record.ref, record.quota_project)  # ApiUnavailable → retried
            outcome = {"outcome": result.outcome, "api_status": result.api_status}
        return {**outcome, "reason": data.get("reason"), "requested_by": data.get("requested_by"),
                "at": self._clock().isoformat()}


def _operation_id(data: Mapping) -> str:
    operation = data.get("operation")
    operation_id = data.get("id") or (operation.get("id") if isinstance(operation, Mapping) else None)
    if not isinstance(operation_id, str) or len(operation_id) != 32:
        if data.get("name") and data.get("service"):
            try:
                return build_ref(data["name"], data["service"]).id
            except InvalidArgument as exc:
                raise PoisonMessage(str(exc)) from exc
        raise PoisonMessage("message names no operation id")
    return operation_id


def _json(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
