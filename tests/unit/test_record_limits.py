"""No record can exceed Firestore's 1 MiB: error details, metadata, response and the whole are capped."""
from __future__ import annotations

import json

import pytest

from functions.domain.record import (
    ERROR_DETAILS_LIMIT, ERROR_DETAILS_MAX, RECORD_JSON_LIMIT, RECORD_LIMIT, bounded_status, within_limits)
from tests.unit.factories import make_record


def _doc_bytes(record) -> int:
    return len(json.dumps(record.to_doc(), default=str).encode())


def test_error_details_are_capped_in_count_keeping_the_first():
    status = {"code": 13, "message": "m", "details": [{"n": i} for i in range(100)]}
    capped, cut = bounded_status(status)
    assert cut and capped["details"] == [{"n": i} for i in range(ERROR_DETAILS_MAX)]
    assert capped["code"] == 13 and status["details"][99] == {"n": 99}  # the input is untouched


def test_error_details_are_capped_in_bytes():
    capped, cut = bounded_status({"code": 13, "details": [{"blob": "x" * 30_000}] * 5})
    assert cut and len(capped["details"]) == 2
    assert len(json.dumps(capped["details"])) <= ERROR_DETAILS_LIMIT


def test_a_status_within_limits_is_the_same_object():
    status = {"code": 3, "message": "m", "details": [{"a": 1}]}
    assert bounded_status(status) == (status, False)
    assert bounded_status(None) == (None, False)


def test_two_megabytes_of_details_make_a_record_that_fits_and_says_truncated():
    details = [{"detail": "x" * 1000}] * 2000
    record = within_limits(make_record(error={"code": 13, "message": "m", "details": details},
                                       last_error={"code": 400, "details": details}))
    assert record.truncated and _doc_bytes(record) < RECORD_LIMIT
    assert record.error["message"] == "m" and record.error["details"]


def test_metadata_and_response_are_each_kept_if_they_fit():
    big = {"blob": "x" * (RECORD_JSON_LIMIT + 1)}
    record = within_limits(make_record(metadata=big, response={"ok": 1}))
    assert record.metadata is None and record.response == {"ok": 1} and record.truncated


def test_when_the_whole_is_too_large_response_goes_first_then_metadata():
    near = {"blob": "x" * (RECORD_JSON_LIMIT - 100)}
    both = within_limits(make_record(metadata=near, response=near))
    assert both.metadata == near and both.response == near and not both.truncated
    details = [{"d": "x" * 1000}] * 60  # ~60 KB each in error and last_error
    crowded = within_limits(make_record(metadata=near, response=near, items={"blob": "y" * 350_000},
                                        error={"code": 2, "details": details}))
    assert crowded.response is None and crowded.metadata == near and crowded.truncated
    assert _doc_bytes(crowded) < RECORD_LIMIT


def test_a_record_within_limits_is_unchanged():
    record = make_record(metadata={"a": 1}, response={"b": 2}, error={"code": 2, "message": "x"})
    assert within_limits(record) == record


def test_an_event_of_the_largest_record_stays_far_within_pub_subs_limits():
    from functions.domain import events
    from functions.domain.states import State
    from tests.unit.factories import NOW

    big = {"blob": "x" * (RECORD_JSON_LIMIT - 100)}
    details = [{"detail": "x" * 1000}] * 2000
    record = within_limits(make_record(state=State.FAILED, sequence=1, done=True, metadata=big, response=big,
                                       error={"code": 13, "message": "m" * 4096, "details": details},
                                       labels={f"k{i}": "v" * 63 for i in range(64)}))
    message = events.state_changed(record, "RUNNING", NOW)
    assert len(message.encoded()) < 1024 * 1024  # Pub/Sub's limit is 10 MB
    assert all(len(k.encode()) <= 256 and len(v.encode()) <= 1024 for k, v in message.attributes.items())
    assert len(message.attributes) <= 100 and message.data["error"]["details"]


def test_a_records_policy_is_parsed_once_and_an_invalid_one_still_raises():
    from functions.domain.errors import InvalidArgument
    from functions.domain.policy import Policy

    record = make_record(policy={"initial_delay_s": 2, "max_delay_s": 60})
    assert record.poll_policy == Policy.from_dict({"initial_delay_s": 2, "max_delay_s": 60})
    assert record.poll_policy is record.with_changes(polls=3).poll_policy
    for bad in ({"initial_delay_s": True}, {"nope": 1}):
        with pytest.raises(InvalidArgument):
            make_record(policy=bad).poll_policy


def test_a_changed_copy_equals_what_dataclasses_replace_makes_and_leaves_the_original():
    from dataclasses import replace

    from functions.domain.states import State

    record = make_record(labels={"team": "ocr"})
    changed = record.with_changes(state=State.RUNNING, polls=4, metadata={"a": 1})
    assert changed == replace(record, state=State.RUNNING, polls=4, metadata={"a": 1})
    assert record.polls == 0 and record.state is State.PENDING
    assert changed.to_doc()["state"] == "RUNNING"
    with pytest.raises(TypeError):
        record.with_changes(no_such_field=1)


# ---- the failed items in the record ------------------------------------------------

FIRESTORE_DOCUMENT_LIMIT = 1024 * 1024


def _firestore_bytes(value) -> int:
    """A value's size as Firestore counts it (cloud.google.com/firestore/docs/storage-size)."""
    if isinstance(value, str):
        return len(value.encode()) + 1
    if isinstance(value, dict):
        return sum(_firestore_bytes(k) + _firestore_bytes(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_firestore_bytes(v) for v in value)
    return 1 if value is None or isinstance(value, bool) else 8  # numbers, timestamps: 8


def _document_bytes(record, collection: str = "lro_operations") -> int:
    name = _firestore_bytes(collection) + _firestore_bytes(record.id) + 16
    return name + _firestore_bytes(record.to_doc()) + 32


def test_failed_items_are_stored_in_utf8_and_read_back_as_they_were():
    from functions.domain.record import Record

    kept = [{"index": 0, "input": "gs://b/é日\U0001F4C4.pdf", "status": {"code": 3, "message": "ü"}}]
    record = make_record(failed_items=kept, metadata={"note": "é"})
    doc = record.to_doc()
    assert "é日\U0001F4C4" in doc["failed_items"] and "\\u" not in doc["failed_items"]
    assert doc["metadata"] == '{"note":"\\u00e9"}'  # the API's own JSON stays escaped ASCII
    assert Record.from_doc(doc).failed_items == kept


def _largest_failures(n: int = 1500) -> list[dict]:
    """Document AI statuses at every cap and past it: a name of 2,000 é (4,000 bytes),
    5,000-character messages, a human review error."""
    return [{"inputGcsSource": "gs://b/" + "é" * 2000, "status": {"code": 3, "message": "m" * 5000},
             "humanReviewStatus": {"state": "ERROR", "stateMessage": "r" * 5000}} for _ in range(n)]


@pytest.mark.parametrize("shape", ["document-ai", "document-ai-failed", "vision-import"])
def test_the_largest_record_with_failed_items_stays_under_firestores_limit(shape):
    from functions.domain import items
    from functions.domain.tracking import after_poll
    from tests.unit.factories import NOW, docai_metadata, operation, transient

    near_cap = {"blob": "x" * (RECORD_JSON_LIMIT - 100)}
    details = [{"detail": "x" * 1000}] * 2000
    record = make_record(labels={f"k{i:02d}" + "k" * 60: "v" * 63 for i in range(64)},
                         correlation_id="c" * 256, notify_url="https://example.com/" + "p" * 1000)
    if shape == "vision-import":
        images = [{"name": "n" * 1000, "uri": "gs://b/" + "é" * 2000}] * 1500
        statuses = [{"code": 3, "message": "m" * 5000}] * 1500
        answer = operation(done=False, metadata=near_cap, response={"statuses": statuses, "referenceImages": images})
    elif shape == "document-ai-failed":
        answer = operation(done=True, metadata=docai_metadata("FAILED", _largest_failures()), response=near_cap,
                           error={"code": 13, "message": "e" * 10_000, "details": details})
    else:
        answer = operation(done=False, metadata=docai_metadata("RUNNING", _largest_failures()), response=near_cap)
    record = after_poll(record, answer, NOW).record
    if not record.state.terminal:  # then a failed poll adds the last error
        record = after_poll(record, transient(), NOW).record.with_changes(
            last_error={"code": 503, "message": "u" * 1000, "details": details})
        record = within_limits(record)

    expected = items.results(answer.get("metadata"), answer.get("response"))
    assert record.failed_items == expected.failed and record.items == expected.summary
    assert record.items["failed"] == 1500 and record.items["failed_kept"] == len(record.failed_items) > 100
    assert record.truncated
    assert _document_bytes(record) < RECORD_LIMIT < FIRESTORE_DOCUMENT_LIMIT
