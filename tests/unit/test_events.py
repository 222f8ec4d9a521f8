"""The messages lrowatch publishes (contract §6, §7)."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from functions.domain import events, jsontext
from functions.domain.events import ATTRIBUTE_LIMIT, EVENT_PAYLOAD_LIMIT, Message
from functions.domain.states import State
from tests.unit.factories import NOW, make_record

OBSERVED = NOW + timedelta(minutes=5)


def name_of_bytes(size: int) -> str:
    """A valid operation name of exactly `size` bytes (size >= 40)."""
    head, tail = "operations/projects/p", "/operations/"  # Bigtable admin: ^operations/.*$
    fill = size - len(head) - len(tail) - 8  # room for an 8-character id at least
    parts = []
    while fill > 0:
        chunk = min(200, fill - 1)  # each filler segment costs its length + 1 slash
        parts.append("f" * chunk)
        fill -= chunk + 1
    name = head + "".join("/" + p for p in parts) + tail
    return name + "i" * (size - len(name))


LONG_NAME = name_of_bytes(ATTRIBUTE_LIMIT + 1)


def finished(**changes):
    base = dict(state=State.SUCCEEDED, sequence=3, done=True, provider_state="SUCCEEDED",
                progress_percent=100, items={"total": 12, "failed": 1}, metadata={"m": 1},
                response={"r": 2}, labels={"team": "ocr"}, correlation_id="invoice-batch-42")
    base.update(changes)
    return make_record(**base)


# ---- state_changed: data -------------------------------------------------------------


def test_state_changed_data_follows_the_contract_shape():
    record = finished()
    data = events.state_changed(record, "RUNNING", OBSERVED).data
    assert data["type"] == "lro.state_changed"
    assert data["event_id"] == f"{record.id}-3"
    assert data["sequence"] == 3
    assert data["operation"] == {"id": record.id, "name": record.name, "service": "documentai.googleapis.com",
                                 "url": f"https://us-documentai.googleapis.com/v1/{record.name}"}
    assert (data["state"], data["previous_state"], data["done"]) == ("SUCCEEDED", "RUNNING", True)
    assert data["provider_state"] == "SUCCEEDED"
    assert data["progress_percent"] == 100
    assert data["error"] is None
    assert data["items"] == {"total": 12, "failed": 1}
    assert data["metadata"] == {"m": 1} and data["response"] == {"r": 2}
    assert data["labels"] == {"team": "ocr"}
    assert data["correlation_id"] == "invoice-batch-42"
    assert data["submitted_at"] == "2024-05-01T12:00:00.000Z"
    assert data["observed_at"] == "2024-05-01T12:05:00.000Z"
    assert "truncated" not in data


def test_event_data_is_json_serialisable():
    message = events.state_changed(finished(), "RUNNING", OBSERVED)
    assert json.loads(message.encoded()) == message.data


def test_items_are_omitted_when_the_api_has_none():
    assert "items" not in events.state_changed(finished(items=None), "RUNNING", OBSERVED).data


def test_missing_metadata_and_response_are_empty_objects():
    data = events.state_changed(finished(metadata=None, response=None), "RUNNING", OBSERVED).data
    assert data["metadata"] == {} and data["response"] == {}


def test_error_is_carried_for_failures():
    error = {"code": 3, "message": "bad"}
    data = events.state_changed(finished(state=State.FAILED, error=error), "RUNNING", OBSERVED).data
    assert data["error"] == error


# ---- attributes and ordering -----------------------------------------------------------


def test_attributes_let_subscriptions_filter():
    record = finished()
    message = events.state_changed(record, "RUNNING", OBSERVED)
    assert message.attributes == {
        "type": "lro.state_changed",
        "event_id": f"{record.id}-3",
        "operation_id": record.id,
        "operation": record.name,
        "service": "documentai.googleapis.com",
        "state": "SUCCEEDED",
        "done": "true",
    }


def test_done_attribute_is_false_as_a_string_while_running():
    message = events.state_changed(finished(state=State.RUNNING, done=False), "PENDING", OBSERVED)
    assert message.attributes["done"] == "false"
    assert message.data["done"] is False


def test_all_attribute_values_are_strings():
    message = events.state_changed(finished(), "RUNNING", OBSERVED)
    assert all(isinstance(v, str) for v in message.attributes.values())


def test_operation_attribute_is_omitted_when_the_name_is_over_1024_bytes():
    assert len(LONG_NAME.encode()) > ATTRIBUTE_LIMIT
    record = finished(name=LONG_NAME, service="bigtableadmin.googleapis.com")
    message = events.state_changed(record, "RUNNING", OBSERVED)
    assert "operation" not in message.attributes
    assert message.attributes["operation_id"] == record.id
    assert message.data["operation"]["name"] == LONG_NAME


def test_operation_attribute_is_kept_at_exactly_1024_bytes():
    name = name_of_bytes(ATTRIBUTE_LIMIT)
    assert len(name.encode()) == ATTRIBUTE_LIMIT
    message = events.state_changed(finished(name=name, service="bigtableadmin.googleapis.com"), "RUNNING", OBSERVED)
    assert message.attributes["operation"] == name


def test_ordering_key_is_the_operation_id():
    record = finished()
    assert events.state_changed(record, "RUNNING", OBSERVED).ordering_key == record.id


def test_event_ids_are_unique_per_operation_and_sequence():
    record = finished()
    ids = {events.state_changed(record.with_changes(sequence=n), "RUNNING", OBSERVED).data["event_id"]
           for n in range(1, 6)}
    assert len(ids) == 5
    assert events.event_id(record.id, 2) == f"{record.id}-2"


# ---- truncation -----------------------------------------------------------------------


def test_payload_too_large_for_a_message_is_left_out_and_flagged():
    big = {"blob": "x" * EVENT_PAYLOAD_LIMIT}
    data = events.state_changed(finished(metadata=big), "RUNNING", OBSERVED).data
    assert data["truncated"] is True
    assert data["metadata"] == {} and data["response"] == {}
    assert len(events.state_changed(finished(metadata=big), "RUNNING", OBSERVED).encoded()) < 10_000


def test_metadata_and_response_together_too_large_are_left_out():
    half = {"blob": "x" * (EVENT_PAYLOAD_LIMIT // 2 + 10)}
    data = events.state_changed(finished(metadata=half, response=half), "RUNNING", OBSERVED).data
    assert data["truncated"] is True


def test_record_already_truncated_gives_a_truncated_event():
    data = events.state_changed(finished(truncated=True, metadata=None, response=None), "RUNNING", OBSERVED).data
    assert data["truncated"] is True


def test_api_json_just_within_the_limit_is_kept_though_the_whole_event_is_larger():
    wrapper = len(jsontext.compact([{"blob": ""}, {}]))
    exact = {"blob": "x" * (EVENT_PAYLOAD_LIMIT - wrapper)}
    message = events.state_changed(finished(metadata=exact, response={}), "RUNNING", OBSERVED)
    assert len(message.encoded()) > EVENT_PAYLOAD_LIMIT
    assert message.data["metadata"] == exact and "truncated" not in message.data


def test_api_json_one_byte_over_the_limit_is_left_out():
    wrapper = len(jsontext.compact([{"blob": ""}, {}]))
    over = {"blob": "x" * (EVENT_PAYLOAD_LIMIT - wrapper + 1)}
    data = events.state_changed(finished(metadata=over, response={}), "RUNNING", OBSERVED).data
    assert data["truncated"] is True and data["metadata"] == {}


def test_items_survive_truncation():
    big = {"blob": "x" * EVENT_PAYLOAD_LIMIT}
    data = events.state_changed(finished(response=big), "RUNNING", OBSERVED).data
    assert data["items"] == {"total": 12, "failed": 1}


# ---- cancel outcome and commands -----------------------------------------------------


def test_cancel_outcome_has_the_contract_shape():
    record = finished(state=State.RUNNING, done=False, sequence=2)
    outcome = {"outcome": "sent", "api_status": {"code": 200}, "reason": "not needed",
               "requested_by": "ops@example.com", "at": "x"}
    message = events.cancel_outcome(record, outcome, OBSERVED)
    data = message.data
    assert data["type"] == "lro.cancel_outcome"
    assert data["event_id"] == f"{record.id}-cancel"
    assert data["sequence"] == 2
    assert data["operation"]["id"] == record.id
    assert (data["state"], data["done"]) == ("RUNNING", False)
    assert data["outcome"] == "sent"
    assert data["api_status"] == {"code": 200}
    assert data["reason"] == "not needed"
    assert data["requested_by"] == "ops@example.com"
    assert data["observed_at"] == "2024-05-01T12:05:00.000Z"
    assert message.attributes["type"] == "lro.cancel_outcome"
    assert message.attributes["operation_id"] == record.id
    assert message.attributes["state"] == "RUNNING"
    assert message.ordering_key == record.id


@pytest.mark.parametrize("outcome", ["already_finished", "not_found", "refused", "unsupported"])
def test_cancel_outcome_records_each_kind_of_outcome(outcome):
    data = events.cancel_outcome(finished(), {"outcome": outcome, "api_status": None}, OBSERVED).data
    assert data["outcome"] == outcome
    assert data["api_status"] is None


def test_cancel_outcome_is_not_a_state_change_event():
    message = events.cancel_outcome(finished(), {"outcome": "sent"}, OBSERVED)
    assert message.data["type"] != events.STATE_CHANGED


def test_cancel_command_has_the_contract_shape():
    message = events.cancel_command("a" * 32, "deadline passed", "lrowatch")
    assert message.data == {"type": "cancel", "id": "a" * 32, "reason": "deadline passed", "requested_by": "lrowatch"}
    assert message.attributes == {"type": "cancel", "operation_id": "a" * 32}


def test_notification_is_compact_and_names_the_event():
    record = finished(completed_at=OBSERVED)
    message = events.notification(record, f"{record.id}-3")
    assert message.data["type"] == "lro.notification"
    assert message.data["event_id"] == f"{record.id}-3"
    assert message.data["completed_at"] == "2024-05-01T12:05:00.000Z"
    assert "metadata" not in message.data and "response" not in message.data
    assert "started_at" not in message.data  # none reported by its API
    started = events.notification(record.with_changes(started_at=NOW - timedelta(minutes=10)), f"{record.id}-3")
    assert started.data["started_at"] == "2024-05-01T11:50:00.000Z"


# ---- Message ----------------------------------------------------------------------


def test_message_round_trips_through_its_outbox_document():
    message = events.state_changed(finished(), "RUNNING", OBSERVED)
    assert Message.from_doc(message.to_doc()) == message


@pytest.mark.parametrize("metadata", [{"m": 1}, {"blob": "x" * EVENT_PAYLOAD_LIMIT}, {"é": "\u2603 \"q\""}])
def test_an_event_is_encoded_once_as_a_fresh_encoding_of_its_data_would_be(metadata):
    message = events.state_changed(finished(metadata=metadata), "RUNNING", OBSERVED)
    fresh = json.dumps(message.data, separators=(",", ":"))
    assert message.encoded_data == fresh
    assert message.encoded() == fresh.encode() and message.to_doc()["data"] == fresh


def test_a_message_built_without_its_text_encodes_its_data_once_on_demand():
    message = events.cancel_command("a" * 32, "why", None)
    assert message.encoded_data is None
    assert json.loads(message.encoded()) == message.data
    assert message.encoded_data == json.dumps(message.data, separators=(",", ":"))


def test_a_message_from_the_outbox_is_published_as_the_text_stored():
    stored = {"data": json.dumps({"type": "cancel", "id": "a" * 32}), "attributes": {"type": "cancel"},
              "ordering_key": ""}  # an entry written with spaces, as before the text was compact
    message = Message.from_doc(stored)
    assert message.encoded() == stored["data"].encode()
    assert message.data == {"type": "cancel", "id": "a" * 32}


def test_outbox_id_is_stable_per_message():
    record = finished()
    message = events.state_changed(record, "RUNNING", OBSERVED)
    assert events.outbox_id("events", message) == f"events-{record.id}-3"
    assert events.outbox_id("commands", events.cancel_command("x" * 32, None, None)) == f"commands-{'x' * 32}"
