"""Pub/Sub push deliveries (as CloudEvents): decode, then ack or ask for redelivery.

A normal return acknowledges the message; an exception makes functions-
framework answer 500, so Pub/Sub redelivers. Poison must therefore be logged
and returned, and only transient failures raised.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any, Callable

from functions.domain.errors import InvalidArgument

log = logging.getLogger(__name__)


class Undecodable(Exception):
    """The push body holds no JSON message data."""


def message_of(cloud_event) -> tuple[Any, dict, str]:
    """(decoded JSON data, attributes, message id) of a Pub/Sub CloudEvent."""
    envelope = cloud_event.data if isinstance(cloud_event.data, dict) else {}
    message = envelope.get("message") or {}
    message_id = str(message.get("messageId") or message.get("message_id") or "")
    try:
        raw = base64.b64decode(message.get("data") or "", validate=True)
        return json.loads(raw), dict(message.get("attributes") or {}), message_id
    except (binascii.Error, ValueError, UnicodeDecodeError, TypeError) as exc:
        raise Undecodable(f"message data is not base64 JSON: {str(exc)[:120]}") from exc


def deliver(cloud_event, work: Callable[[Any], Any], poison: tuple[type[Exception], ...] = ()) -> Any:
    """Run `work(data)`; poison is logged at ERROR and acknowledged, the rest propagates."""
    message_id = ""
    try:
        data, _attributes, message_id = message_of(cloud_event)
        return work(data)
    except (Undecodable, InvalidArgument, *poison) as exc:
        log.error("dropping a message that can never be handled: %s", exc,
                  extra={"message_id": message_id, "reason": type(exc).__name__,
                         "subscription": (cloud_event.data or {}).get("subscription")
                         if isinstance(cloud_event.data, dict) else None})
        return None
