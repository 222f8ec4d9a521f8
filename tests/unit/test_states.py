"""How a google.longrunning.Operation maps onto lrowatch's states (contract §5)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.domain.states import (
    ACTIVE,
    CODE_CANCELLED,
    CODE_UNKNOWN,
    TERMINAL,
    State,
    advance,
    items_of,
    normalise,
    progress_of,
    provider_state_of,
    start_of,
)
from tests.unit.factories import docai_metadata, docai_status, operation, vision_metadata

# ---- not done ----------------------------------------------------------------


def test_operation_without_done_is_running():
    seen = normalise(operation())
    assert seen.state is State.RUNNING
    assert seen.done is False
    assert seen.error is None


def test_operation_with_done_false_is_running():
    assert normalise(operation(done=False, metadata=docai_metadata("RUNNING"))).state is State.RUNNING


def test_document_ai_waiting_not_done_is_running():
    seen = normalise(operation(done=False, metadata=docai_metadata("WAITING")))
    assert seen.state is State.RUNNING
    assert seen.provider_state == "WAITING"


@pytest.mark.parametrize("provider", ["CANCELLING", "CANCELING", "cancelling"])
def test_provider_cancelling_not_done_is_cancelling(provider):
    seen = normalise(operation(done=False, metadata=docai_metadata(provider)))
    assert seen.state is State.CANCELLING
    assert seen.provider_state == provider


@pytest.mark.parametrize("provider", ["SUCCEEDED", "FAILED", "CANCELLED", "SUCCESSFUL"])
def test_provider_final_state_without_done_is_still_running(provider):
    assert normalise(operation(done=False, metadata=docai_metadata(provider))).state is State.RUNNING


def test_done_that_is_not_literally_true_is_not_done():
    assert normalise(operation(done="true", response={})).state is State.RUNNING


# ---- done with an error -------------------------------------------------------------


def test_done_with_error_code_1_is_cancelled():
    seen = normalise(operation(done=True, error={"code": 1, "message": "Operation was cancelled."}))
    assert seen.state is State.CANCELLED
    assert seen.error == {"code": CODE_CANCELLED, "message": "Operation was cancelled."}


@pytest.mark.parametrize("code", [2, 3, 4, 5, 7, 8, 13, 14])
def test_done_with_other_error_is_failed_with_its_code_kept(code):
    seen = normalise(operation(done=True, error={"code": code, "message": "boom"}))
    assert seen.state is State.FAILED
    assert seen.error["code"] == code
    assert seen.error["message"] == "boom"


def test_error_details_are_kept():
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "X"}]
    seen = normalise(operation(done=True, error={"code": 3, "message": "bad", "details": details}))
    assert seen.error["details"] == details


def test_error_wins_over_a_response():
    seen = normalise(operation(done=True, response={"x": 1}, error={"code": 13, "message": "internal"}))
    assert seen.state is State.FAILED


@pytest.mark.parametrize("error", [{}, {"code": "13"}, {"code": True}, "boom", ["x"], 5])
def test_malformed_error_is_failed_with_code_unknown(error):
    seen = normalise(operation(done=True, error=error))
    assert seen.state is State.FAILED
    assert seen.error["code"] == CODE_UNKNOWN


def test_long_error_message_is_bounded():
    seen = normalise(operation(done=True, error={"code": 13, "message": "x" * 10_000}))
    assert len(seen.error["message"]) == 4096


# ---- done with a response ----------------------------------------------------------


def test_done_with_response_is_succeeded_with_full_progress():
    seen = normalise(operation(done=True, response={"@type": "x", "ok": True}))
    assert seen.state is State.SUCCEEDED
    assert seen.error is None
    assert seen.progress_percent == 100
    assert seen.response == {"@type": "x", "ok": True}


@pytest.mark.parametrize("provider, expected, code", [
    ("FAILED", State.FAILED, CODE_UNKNOWN),
    ("CANCELLED", State.CANCELLED, CODE_CANCELLED),
    ("CANCELED", State.CANCELLED, CODE_CANCELLED),
])
def test_done_with_response_follows_a_provider_failed_or_cancelled_state(provider, expected, code):
    seen = normalise(operation(done=True, response={}, metadata=docai_metadata(provider)))
    assert seen.state is expected
    assert seen.error["code"] == code


def test_done_with_response_and_running_provider_state_is_succeeded():
    assert normalise(operation(done=True, response={}, metadata=docai_metadata("RUNNING"))).state is State.SUCCEEDED


@pytest.mark.parametrize("metadata", [None, {}, {"state": "RUNNING"}, {"state": "WEIRD"}, {"state": 3}])
def test_done_with_neither_response_error_nor_recognised_state_is_failed_unknown(metadata):
    seen = normalise(operation(done=True, metadata=metadata))
    assert seen.state is State.FAILED
    assert seen.error["code"] == CODE_UNKNOWN
    assert seen.error["message"]


def test_done_with_null_error_and_no_response_is_failed_unknown():
    seen = normalise({"name": "operations/1", "done": True, "error": None})
    assert seen.state is State.FAILED
    assert seen.error["code"] == CODE_UNKNOWN


def test_done_with_non_object_response_is_not_a_silent_success():
    seen = normalise({"name": "operations/1", "done": True, "response": "ok"})
    assert seen.state is State.FAILED
    assert seen.response is None


# ---- Vision -------------------------------------------------------------------


def test_vision_processing_is_running():
    seen = normalise(operation(metadata=vision_metadata("PROCESSING")))
    assert seen.state is State.RUNNING
    assert seen.provider_state == "PROCESSING"


def test_vision_purge_answered_successful_with_empty_response_is_succeeded():
    seen = normalise(operation(done=True, metadata=vision_metadata("SUCCESSFUL"), response={}))
    assert seen.state is State.SUCCEEDED
    assert seen.provider_state == "SUCCESSFUL"
    assert seen.error is None


def test_vision_purge_answered_successful_without_response_is_succeeded():
    seen = normalise(operation(done=True, metadata=vision_metadata("SUCCESSFUL")))
    assert seen.state is State.SUCCEEDED
    assert seen.response is None


def test_vision_failed_provider_state_is_failed():
    seen = normalise(operation(done=True, metadata=vision_metadata("FAILED")))
    assert seen.state is State.FAILED
    assert seen.provider_state == "FAILED"


def test_vision_import_statuses_with_one_non_zero_code_count_one_failed_item():
    response = {"referenceImages": [{}, {}], "statuses": [{}, {"code": 3, "message": "bad image"}, {"code": 0}]}
    seen = normalise(operation(done=True, metadata=vision_metadata("SUCCESSFUL"), response=response))
    assert seen.state is State.SUCCEEDED
    assert seen.items == {"total": 3, "failed": 1}


# ---- Document AI ------------------------------------------------------------------


def test_document_ai_succeeded_with_a_human_review_error_is_still_succeeded_with_items():
    metadata = docai_metadata("SUCCEEDED", [docai_status(review_state="ERROR")])
    seen = normalise(operation(done=True, metadata=metadata, response={}))
    assert seen.state is State.SUCCEEDED
    assert seen.items == {"total": 1, "failed": 0, "human_review_errors": 1}


def test_document_ai_per_document_failures_are_counted():
    statuses = [docai_status(n=0), docai_status(code=3, n=1), docai_status(code=13, n=2),
                docai_status(review_state="SKIPPED", n=3)]
    seen = normalise(operation(done=True, metadata=docai_metadata("SUCCEEDED", statuses), response={}))
    assert seen.items == {"total": 4, "failed": 2}


def test_document_ai_succeeded_provider_state_without_response_is_succeeded():
    assert normalise(operation(done=True, metadata=docai_metadata("SUCCEEDED"))).state is State.SUCCEEDED


def test_document_ai_failed_provider_state_is_failed():
    seen = normalise(operation(done=True, metadata=docai_metadata("FAILED")))
    assert seen.state is State.FAILED
    assert seen.provider_state == "FAILED"


def test_items_are_omitted_when_the_api_has_no_per_item_results():
    assert normalise(operation(done=True, response={"x": 1})).items is None
    assert items_of(None, None) is None
    assert items_of({"individualProcessStatuses": []}, None) is None


def test_items_ignore_malformed_status_entries():
    items = items_of({"individualProcessStatuses": ["junk", docai_status(code=5)]}, None)
    assert items == {"total": 1, "failed": 1}


# ---- provider state ------------------------------------------------------------------


def test_provider_state_is_read_from_common_metadata():
    assert provider_state_of({"commonMetadata": {"state": "RUNNING"}}) == "RUNNING"


def test_provider_state_is_read_from_generic_metadata():
    assert provider_state_of({"genericMetadata": {"state": "CANCELLING"}}) == "CANCELLING"


def test_vertex_common_metadata_cancelling_is_cancelling():
    seen = normalise(operation(metadata={"genericMetadata": {"state": "CANCELLING"}}))
    assert seen.state is State.CANCELLING


@pytest.mark.parametrize("metadata", [None, "x", [], {}, {"state": 5}])
def test_provider_state_is_none_when_absent_or_not_a_string(metadata):
    assert provider_state_of(metadata) is None


# ---- progress ----------------------------------------------------------------------


@pytest.mark.parametrize("metadata, expected", [
    ({"progressPercent": 42}, 42),
    ({"progressPercentage": 17}, 17),
    ({"progress_percent": 3}, 3),
    ({"progressPercent": 55.9}, 55),
    ({"progressPercent": 150}, 100),
    ({"progressPercent": -5}, 0),
    ({"annotationProgress": [{"progressPercent": 50}, {"progressPercent": 100}]}, 75),
    ({"annotationProgress": [{"inputUri": "gs://a"}]}, 0),
    ({"progressPercent": True}, None),
    ({"progressPercent": "42"}, None),
    ({"annotationProgress": []}, None),
    ({"annotationProgress": [{"progressPercent": "x"}]}, None),
    ({}, None),
    (None, None),
])
def test_progress_is_extracted_and_clamped(metadata, expected):
    assert progress_of(metadata) == expected


def test_video_annotation_progress_is_clamped_to_0_100():
    assert progress_of({"annotationProgress": [{"progressPercent": 500}, {"progressPercent": 300}]}) == 100
    assert progress_of({"annotationProgress": [{"progressPercent": -50}]}) == 0


def test_running_operation_reports_its_progress():
    seen = normalise(operation(metadata={"state": "RUNNING", "progressPercent": 30}))
    assert seen.progress_percent == 30


def test_failed_operation_keeps_its_last_progress():
    seen = normalise(operation(done=True, metadata={"progressPercent": 30}, error={"code": 13}))
    assert seen.progress_percent == 30


# ---- advance ---------------------------------------------------------------------


def test_terminal_states_are_exactly_the_five_finished_ones():
    assert TERMINAL == {State.SUCCEEDED, State.FAILED, State.CANCELLED, State.EXPIRED, State.TIMED_OUT}
    assert all(not s.terminal for s in ACTIVE)


@pytest.mark.parametrize("current, observed, expected", [
    (State.PENDING, State.RUNNING, State.RUNNING),
    (State.PENDING, State.SUCCEEDED, State.SUCCEEDED),
    (State.RUNNING, State.CANCELLING, State.CANCELLING),
    (State.RUNNING, State.PENDING, State.RUNNING),
    (State.CANCELLING, State.RUNNING, State.CANCELLING),
    (State.CANCELLING, State.CANCELLED, State.CANCELLED),
    (State.RUNNING, State.FAILED, State.FAILED),
])
def test_advance_moves_forward_only(current, observed, expected):
    assert advance(current, observed) is expected


@pytest.mark.parametrize("terminal", sorted(TERMINAL, key=lambda s: s.value))
@pytest.mark.parametrize("observed", list(State))
def test_terminal_state_is_final(terminal, observed):
    assert advance(terminal, observed) is terminal


@given(st.sampled_from(list(State)), st.sampled_from(list(State)))
def test_advance_never_lowers_the_rank(current, observed):
    result = advance(current, observed)
    assert result.rank >= current.rank
    assert result in (current, observed)


@given(st.lists(st.sampled_from(list(State)), max_size=12))
def test_once_terminal_a_sequence_of_observations_cannot_leave_it(observations):
    state = State.PENDING
    reached = None
    for observed in observations:
        state = advance(state, observed)
        if state.terminal and reached is None:
            reached = state
        if reached is not None:
            assert state is reached


@given(st.fixed_dictionaries({}, optional={
    "done": st.one_of(st.booleans(), st.none(), st.text(max_size=3)),
    "metadata": st.one_of(st.none(), st.dictionaries(st.sampled_from(["state", "progressPercent"]),
                                                      st.one_of(st.text(max_size=12), st.integers(), st.none()))),
    "response": st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
    "error": st.one_of(st.none(), st.fixed_dictionaries({"code": st.integers(0, 20)})),
}))
def test_normalise_never_crashes_and_done_means_terminal(op):
    seen = normalise(op)
    assert seen.state is not State.PENDING
    assert seen.state.terminal == (op.get("done") is True)
    if seen.state in (State.FAILED, State.CANCELLED):
        assert isinstance(seen.error["code"], int)
    if seen.state is State.SUCCEEDED:
        assert seen.error is None and seen.progress_percent == 100


def test_video_annotation_progress_ignores_boolean_values():
    assert progress_of({"annotationProgress": [{"progressPercent": True}]}) is None


# ---- metadata shapes met across the catalog ----------------------------------------

@pytest.mark.parametrize("metadata, expected", [
    ({"operationState": "PROCESSING"}, "PROCESSING"),  # Firestore / Datastore admin
    ({"status": {"state": "RUNNING", "innerState": "x"}}, "RUNNING"),  # Dataproc cluster operations
    ({"genericMetadata": {"state": "RUNNING", "partialFailures": [{"code": 3}]}}, "RUNNING"),  # Vertex AI
])
def test_provider_state_is_read_from_each_published_shape(metadata, expected):
    assert provider_state_of(metadata) == expected


def test_firestore_successful_export_is_succeeded():
    seen = normalise(operation(done=True, metadata={"operationState": "SUCCESSFUL"}))
    assert seen.state is State.SUCCEEDED and seen.provider_state == "SUCCESSFUL"


@pytest.mark.parametrize("metadata, expected", [
    ({"progress_percentage": 12}, 12),  # proto field spelling
    ({"progress": {"progressPercent": 64, "startTime": "2026-01-01T00:00:00Z"}}, 64),  # Spanner, Bigtable
    ({"progressDocuments": {"completedWork": "30", "estimatedWork": "120"}}, 25),  # Firestore export
    ({"progressBytes": {"completedWork": 5, "estimatedWork": 0}}, None),  # nothing estimated yet
    ({"progressEntities": {"completedWork": "x", "estimatedWork": "10"}}, None),
])
def test_progress_is_read_from_each_published_shape(metadata, expected):
    assert progress_of(metadata) == expected


@pytest.mark.parametrize("metadata, expected", [
    ({"successCount": "98", "failureCount": "2"}, {"total": 100, "failed": 2}),  # Discovery Engine, Retail
    ({"successCount": 5, "failureCount": 0, "totalCount": 9}, {"total": 9, "failed": 0}),
    ({"failureCount": "3"}, {"total": 3, "failed": 3}),
    ({"successCount": True}, None),
])
def test_counted_items_are_summarised(metadata, expected):
    assert normalise(operation(done=True, response={}, metadata=metadata)).items == expected


@pytest.mark.parametrize("metadata, expected", [
    ({"createTime": "2024-05-01T12:00:00.123456789Z"}, "2024-05-01T12:00:00.123456+00:00"),  # Google's nanoseconds
    ({"startTime": "2024-05-01T14:00:00+02:00"}, "2024-05-01T14:00:00+02:00"),  # Speech, Firestore admin
    ({"submitTime": "2024-05-01T12:00:00Z"}, "2024-05-01T12:00:00+00:00"),  # Vision batch
    ({"genericMetadata": {"createTime": "2024-05-01T12:00:00Z"}}, "2024-05-01T12:00:00+00:00"),  # Vertex AI
    ({"common": {"startTime": "2024-05-01T12:00:00Z"}}, "2024-05-01T12:00:00+00:00"),  # Datastore admin
    ({"progress": {"startTime": "2024-05-01T12:00:00Z"}}, "2024-05-01T12:00:00+00:00"),  # Spanner
])
def test_the_apis_own_start_is_read_from_where_its_metadata_keeps_it(metadata, expected):
    assert start_of(metadata).isoformat() == expected


@pytest.mark.parametrize("value", [
    "2024-05-01T12:00:00",  # no offset: whose clock?
    "2024-05-01", "yesterday", "", 1714564800, None, ["2024-05-01T12:00:00Z"], {"seconds": 1},
    "2024-05-01T12:00:00Z" + " " * 60,  # longer than any timestamp
    "2024-13-01T12:00:00Z", "\ud800",
])
def test_anything_but_an_rfc3339_timestamp_is_no_start(value):
    assert start_of({"createTime": value}) is None
    assert start_of({"createTime": value, "startTime": "2024-05-01T12:00:00Z"}).year == 2024  # the next key is read


def test_no_metadata_has_no_start():
    assert start_of(None) is None and start_of(["createTime"]) is None and start_of({"progress": 5}) is None
