"""Push delivery decisions: poison is acknowledged and logged, everything else is redelivered."""
from __future__ import annotations

import base64
import json
import logging
from types import SimpleNamespace

import pytest

from functions.adapters.pubsub_push import Undecodable, deliver, message_of
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
