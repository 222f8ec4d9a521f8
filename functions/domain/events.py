"""The messages lrowatch publishes: state-change events, cancel outcomes, commands.

This module is the event schema (contract §6, §7); docs/schemas/ mirrors it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from functions.domain import items, jsontext
from functions.domain.record import Record, rfc3339

STATE_CHANGED = "lro.state_changed"
CANCEL_OUTCOME = "lro.cancel_outcome"
CANCEL_COMMAND = "cancel"

# Pub/Sub limits: attribute values ≤ 1,024 bytes. Events carry API JSON up to
# this size; past it metadata/response are left out and `truncated` is set.
ATTRIBUTE_LIMIT = 1024
EVENT_PAYLOAD_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Message:
    """A Pub/Sub message ready to publish (or to park in the outbox).

    `data` is JSON-encoded once (`json_text`): the outbox entry and the publish payload
    share that text. `data` is never changed once the message is built.
    """

    data: dict
    attributes: dict = field(default_factory=dict)
    ordering_key: str = ""
    # `data` as JSON text, when already encoded (see json_text).
    encoded_data: str | None = field(default=None, compare=False, repr=False)

    @property
    def json_text(self) -> str:
        if self.encoded_data is None:  # frozen, but a cache of its own data is no change
            object.__setattr__(self, "encoded_data", jsontext.compact(self.data))
        return self.encoded_data  # type: ignore[return-value]

    def encoded(self) -> bytes:
        return self.json_text.encode()

    def to_doc(self) -> dict:
        return {"data": self.json_text, "attributes": self.attributes, "ordering_key": self.ordering_key}

    @classmethod
    def from_doc(cls, doc: dict) -> "Message":
        """From its outbox entry: published again as the very text that was stored."""
        text = doc["data"]
        return cls(json.loads(text), dict(doc.get("attributes") or {}), doc.get("ordering_key", ""), text)


@dataclass(frozen=True)
class OutboxEntry:
    """A message committed with its change and not yet published."""

    id: str
    topic: str  # "events" | "commands"
    message: Message
    created_at: datetime | None


def event_id(operation_id: str, sequence: int) -> str:
    return f"{operation_id}-{sequence}"


def outbox_id(topic_kind: str, message: Message) -> str:
    """One outbox document per message: a retried write can't park it twice."""
    return f"{topic_kind}-{message.data.get('event_id') or message.data.get('id')}"


def _operation(record: Record) -> dict:
    return {"id": record.id, "name": record.name, "service": record.service, "url": record.url}


def _attributes(kind: str, eid: str, record: Record) -> dict:
    attributes = {
        "type": kind,
        "event_id": eid,
        "operation_id": record.id,
        "service": record.service,
        "state": record.state.value,
        "done": "true" if record.done else "false",
    }
    if len(record.name.encode()) <= ATTRIBUTE_LIMIT:
        attributes["operation"] = record.name
    return attributes


def state_changed(record: Record, previous_state: str, observed_at: datetime) -> Message:
    """The event for `record`'s current state; `record.sequence` already bumped."""
    eid = event_id(record.id, record.sequence)
    data: dict[str, Any] = {
        "type": STATE_CHANGED,
        "event_id": eid,
        "sequence": record.sequence,
        "operation": _operation(record),
        "state": record.state.value,
        "previous_state": previous_state,
        "done": record.done,
        "provider_state": record.provider_state,
        "progress_percent": record.progress_percent,
        "error": record.error,
        "metadata": record.metadata or {},
        "response": record.response or {},
        "labels": record.labels,
        "correlation_id": record.correlation_id,
        "submitted_at": rfc3339(record.submitted_at),
        "observed_at": rfc3339(observed_at),
    }
    if record.started_at is not None:
        data["started_at"] = rfc3339(record.started_at)
    data.update(record.eta_json())
    if record.items is not None:
        data["items"] = _items(record)
    if record.truncated:
        data["metadata"], data["response"], data["truncated"] = {}, {}, True
    text = jsontext.compact(data)
    # The whole event holds metadata and response: only a large one needs them measured alone.
    if len(text) > EVENT_PAYLOAD_LIMIT and _api_json_size(data) > EVENT_PAYLOAD_LIMIT:
        data["metadata"], data["response"], data["truncated"] = {}, {}, True
        text = jsontext.compact(data)
    return Message(data, _attributes(STATE_CHANGED, eid, record), ordering_key=record.id, encoded_data=text)


def _api_json_size(data: dict) -> int:
    """The size of the event's API JSON (metadata and response), as its limit counts it."""
    return len(jsontext.compact([data["metadata"], data["response"]]))


def _items(record: Record) -> dict:
    """The counts, and the first few failed items so a consumer can act without another read."""
    first = items.first_failed(record.failed_items)
    return {**record.items, "first_failed": first} if first else dict(record.items)


def cancel_outcome(record: Record, outcome: dict, observed_at: datetime) -> Message:
    # A cancel is re-requested only after it ended refused or not_found: each attempt its own event.
    attempt = outcome.get("attempt") or 1
    eid = f"{record.id}-cancel" if attempt == 1 else f"{record.id}-cancel-{attempt}"
    data = {
        "type": CANCEL_OUTCOME,
        "event_id": eid,
        "sequence": record.sequence,
        "operation": _operation(record),
        "state": record.state.value,
        "done": record.done,
        "outcome": outcome.get("outcome"),
        "api_status": outcome.get("api_status"),
        "reason": outcome.get("reason"),
        "requested_by": outcome.get("requested_by"),
        "attempt": attempt,
        "labels": record.labels,
        "correlation_id": record.correlation_id,
        "observed_at": rfc3339(observed_at),
    }
    return Message(data, _attributes(CANCEL_OUTCOME, eid, record), ordering_key=record.id)


def cancel_command(operation_id: str, reason: str | None, requested_by: str | None,
                   request_id: str | None = None) -> Message:
    """A cancel command; `request_id` tells a new request from a redelivery of the same one."""
    data = {"type": CANCEL_COMMAND, "id": operation_id, "reason": reason, "requested_by": requested_by}
    if request_id is not None:
        data["request_id"] = request_id
    return Message(data, {"type": CANCEL_COMMAND, "operation_id": operation_id})


def notification(record: Record, eid: str) -> Message:
    """The compact message sent to a submitter's notify_topic / notify_url."""
    data = {
        "type": "lro.notification",
        "event_id": eid,
        "operation": _operation(record),
        "state": record.state.value,
        "done": record.done,
        "error": record.error,
        "items": record.items,
        "labels": record.labels,
        "correlation_id": record.correlation_id,
        "submitted_at": rfc3339(record.submitted_at),
        "completed_at": rfc3339(record.completed_at),
    }
    if record.started_at is not None:
        data["started_at"] = rfc3339(record.started_at)
    return Message(data, _attributes("lro.notification", eid, record))
