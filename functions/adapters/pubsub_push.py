"""Pub/Sub push deliveries (as CloudEvents): decode, then ack or ask for redelivery.

A normal return acknowledges the message; an exception makes functions-
framework answer 500, so Pub/Sub redelivers. Poison must therefore be logged
and returned, and only transient failures raised.

functions-framework turns a raw push body into a CloudEvent that keeps only the
message's data and attributes: deliveryAttempt, the message's orderingKey and
the subscription are dropped. The push request's own JSON body still has them,
so `push_envelope` reads the envelope from there whenever the request is one.
"""
from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, Callable, Mapping

from functions.domain import jsontext
from functions.domain.errors import LroError

log = logging.getLogger(__name__)


class Undecodable(Exception):
    """The push body holds no JSON message data."""


def push_envelope(cloud_event, request=None) -> dict:
    """The push envelope as Pub/Sub sent it ({"message", "subscription", "deliveryAttempt"}),
    from the request body when it is one, else from the CloudEvent's data."""
    body = request.get_json(silent=True) if request is not None else None
    if isinstance(body, dict) and isinstance(body.get("message"), dict):
        return body
    return cloud_event.data if isinstance(cloud_event.data, dict) else {}


def trace_headers(envelope: dict, request_headers: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """Where the trace to continue is: the message's `traceparent` attribute (the publisher's
    trace, e.g. the poll run that observed the change), else the push request's own headers."""
    message = envelope.get("message") if isinstance(envelope.get("message"), dict) else {}
    attributes = message.get("attributes") if isinstance(message.get("attributes"), dict) else {}
    if isinstance(attributes.get("traceparent"), str):
        return {"traceparent": attributes["traceparent"]}
    return request_headers


def message_of(cloud_event) -> tuple[Any, dict, str]:
    """(decoded JSON data, attributes, message id) of a Pub/Sub CloudEvent."""
    return envelope_message(cloud_event.data if isinstance(cloud_event.data, dict) else {})


def envelope_message(envelope: dict) -> tuple[Any, dict, str]:
    """The same, from the push envelope itself ({"message": {...}, "subscription": ...})."""
    message_id = message_id_of(envelope)
    message = envelope.get("message") if isinstance(envelope.get("message"), dict) else {}
    try:
        raw = base64.b64decode(message.get("data") or "", validate=True)
        # Bounded: a message nested 20,000 deep, or holding a lone surrogate, is poison, not a crash.
        return jsontext.loads(raw, text_only=True), dict(message.get("attributes") or {}), message_id
    except (binascii.Error, ValueError, TypeError) as exc:
        raise Undecodable(f"message data is not acceptable base64 JSON: {str(exc)[:160]}") from exc


def message_id_of(envelope: dict) -> str:
    """The Pub/Sub message id, readable even when the data is not (for the poison log)."""
    message = envelope.get("message") if isinstance(envelope.get("message"), dict) else {}
    return str(message.get("messageId") or message.get("message_id") or "")


def delivery_context(envelope: dict) -> dict:
    """What finds a push delivery again in the logs: message id, subscription, attempt, ordering key."""
    message = envelope.get("message") if isinstance(envelope.get("message"), dict) else {}
    return {"message_id": message_id_of(envelope), "subscription": envelope.get("subscription"),
            "delivery_attempt": envelope.get("deliveryAttempt"),
            "ordering_key": message.get("orderingKey") or message.get("ordering_key") or None}


def drop_poison(envelope: dict, exc: Exception) -> None:
    """Log at ERROR a message that can never be handled; the caller then acknowledges it."""
    reason = getattr(exc, "message", None) or str(exc)
    log.error("dropping a message that can never be handled: %s", reason,
              extra={"reason": type(exc).__name__, **delivery_context(envelope)})


def _redeliver(envelope: dict, exc: Exception) -> None:
    log.warning("transient failure, asking Pub/Sub to redeliver: %s", str(exc)[:300], extra={
        "reason": type(exc).__name__, **delivery_context(envelope)})


def deliver(cloud_event, work: Callable[[Any], Any], poison: tuple[type[Exception], ...] = (),
            envelope: dict | None = None) -> Any:
    """Run `work(data)`: poison is logged at ERROR and acknowledged (2xx); anything
    else is logged at WARNING and re-raised, so the push gets a 5xx and Pub/Sub
    redelivers it (after the subscription's max attempts: its dead-letter topic).
    `envelope`: the raw push envelope (push_envelope), when the caller has it."""
    if envelope is None:
        envelope = cloud_event.data if isinstance(cloud_event.data, dict) else {}
    try:
        data, _attributes, _ = envelope_message(envelope)
        outcome = work(data)
    except (Undecodable, *poison) as exc:
        drop_poison(envelope, exc)
        return None
    except LroError as exc:
        if 400 <= exc.http_status < 500:  # refused (400, 403, 409 …): redelivery would be refused again
            drop_poison(envelope, exc)
            return None
        _redeliver(envelope, exc)
        raise
    except Exception as exc:
        _redeliver(envelope, exc)
        raise
    if isinstance(outcome, str):  # handle's verdict ("completed", "duplicate", ...): worth a line
        log.info("message handled: %s", outcome, extra={"outcome": outcome, **delivery_context(envelope)})
    return outcome
