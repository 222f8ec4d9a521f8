"""Push delivery decisions: poison is acknowledged and logged, everything else is redelivered."""
from __future__ import annotations

import base64
import json
import logging
from types import SimpleNamespace

import pytest

from functions.adapters.pubsub_push import (Undecodable, deliver, delivery_context, message_of, push_envelope,
                                          trace_headers)
from functions.domain.errors import TransientError
from functions.services.handle import PoisonMessage, UnknownType


def _event(data: bytes | None, message_id: str = "m-1"):
    message = {"messageId": message_id, "attributes": {"type": "x"}}
    if data is not None:
        message["data"] = base64.b64encode(data).decode()
    return SimpleNamespace(data={"message": message, "subscription": "projects/p/subscriptions/s"})


def test_a_message_decodes_to_its_json_attributes_and_id():
    assert message_of(_event(b'{"a": 1}')) == ({"a": 1}, {"type": "x"}, "m-1")


@pytest.mark.parametrize("data", [b"not json", b"\xff\xfe", None, b"[" * 20_000 + b"]" * 20_000,
                                  b'{"name": "\\ud800"}', b"NaN"])
def test_undecodable_data_is_undecodable(data):
    with pytest.raises(Undecodable):
        message_of(_event(data))


@pytest.mark.parametrize("data, work", [
    (b"{nope", lambda d: "never"),
    (b'{"type": "x"}', lambda d: (_ for _ in ()).throw(UnknownType("unknown message type 'x'"))),
])
def test_poison_is_acknowledged_and_logged_at_error_with_reason_and_message_id(caplog, data, work):
    with caplog.at_level(logging.INFO):
        assert deliver(_event(data, "m-42"), work, poison=(PoisonMessage,)) is None
    entry = [r for r in caplog.records if r.levelno == logging.ERROR][0]
    assert entry.message_id == "m-42" and entry.reason in ("Undecodable", "UnknownType")
    assert entry.subscription == "projects/p/subscriptions/s"


def test_a_transient_failure_propagates_so_the_push_gets_a_5xx(caplog):
    def work(_):
        raise TransientError("firestore down")

    with caplog.at_level(logging.INFO), pytest.raises(TransientError):
        deliver(_event(json.dumps({"type": "cancel"}).encode()), work, poison=(PoisonMessage,))
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_a_handled_message_logs_its_outcome(caplog):
    with caplog.at_level(logging.INFO):
        assert deliver(_event(b"{}"), lambda d: "completed") == "completed"
    assert caplog.records[-1].outcome == "completed"


class _Request:
    def __init__(self, body):
        self.body = body

    def get_json(self, silent=False):
        return self.body


def test_the_push_envelope_comes_from_the_request_body_which_keeps_what_the_cloudevent_drops():
    raw = {"message": {"data": "e30=", "messageId": "m-7", "orderingKey": "op-1"},
           "subscription": "projects/p/subscriptions/s", "deliveryAttempt": 4}
    cloud_event = SimpleNamespace(data={"message": {"data": "e30=", "messageId": "m-7"}})
    envelope = push_envelope(cloud_event, _Request(raw))
    assert delivery_context(envelope) == {"message_id": "m-7", "subscription": "projects/p/subscriptions/s",
                                          "delivery_attempt": 4, "ordering_key": "op-1"}
    assert push_envelope(cloud_event, _Request({"data": "a structured CloudEvent"})) == cloud_event.data
    assert push_envelope(cloud_event, None) == cloud_event.data


def test_the_trace_to_continue_is_the_messages_traceparent_else_the_push_requests():
    with_trace = {"message": {"attributes": {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}}}
    assert trace_headers(with_trace, {"X-Cloud-Trace-Context": "3" * 32}) == {
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    assert trace_headers({"message": {"attributes": {}}}, {"X-Cloud-Trace-Context": "3" * 32}) == {
        "X-Cloud-Trace-Context": "3" * 32}
