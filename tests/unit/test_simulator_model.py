"""The simulator's pure model: scripts, timelines and rendered operations."""
import pytest

from functions.simulator import model
from functions.simulator.model import ScriptError

T0 = 1_700_000_000.0


def script(**body):
    body.setdefault("queued_s", 1)
    body.setdefault("running_s", 10)
    return model.parse_script(body, now=T0, new_id=lambda: "0123456789abcdef")


def at(s, seconds, cancel_at=None):
    return model.render(s, cancel_at, T0 + seconds)


# ---- scripts

def test_a_script_without_a_name_gets_one_from_project_location_and_a_random_id():
    s = script(kind="documentai", host="eu-documentai.googleapis.com", project="42")
    assert s.name == "projects/42/locations/eu/operations/0123456789abcdef"
    assert s.url == "https://eu-documentai.googleapis.com/v1/" + s.name
    assert s.type == "BATCH_PROCESS_DOCUMENTS"


def test_each_kind_has_a_default_host_and_type():
    assert script(kind="vision").host == "vision.googleapis.com"
    assert script(kind="vision").type == "IMPORT_PRODUCT_SETS"
    assert script(kind="generic").host == "speech.googleapis.com"


@pytest.mark.parametrize("bad", [
    {"kind": "bigquery"},
    {"host": "evil.example.com"},
    {"host": "vision.googleapis.com", "name": "projects/1/things/2"},  # no published vision pattern
    {"outcome": "maybe"},
    {"items": 2, "failed_items": 3},
    {"running_s": -1},
    {"created_ago_s": -5}, {"created_ago_s": "600"},
    {"faults": [{"status": 200}]},
    {"faults": [{"kind": "explode"}]},
    {"error": {"message": "no code"}},
])
def test_invalid_scripts_are_refused(bad):
    with pytest.raises(ScriptError):
        script(**bad)


def test_an_operation_created_before_its_script_was_posted_is_that_far_into_its_life():
    s = script(kind="documentai", created_ago_s=6)
    assert at(s, 0)["metadata"]["createTime"] == model.rfc3339(T0 - 6)
    assert at(s, 0)["metadata"]["state"] == "RUNNING"  # queued 1 s, running 10 s, from T0 - 6
    assert at(s, 5)["done"] is True


# ---- Document AI lifecycle

def test_documentai_waits_then_runs_then_succeeds():
    s = script(kind="documentai")
    assert at(s, 0.5)["metadata"]["state"] == "WAITING"
    assert at(s, 5)["metadata"]["state"] == "RUNNING"
    done = at(s, 11)
    assert done["done"] is True
    assert done["metadata"]["state"] == "SUCCEEDED"
    assert done["response"] == {"@type": model.DOCAI_RESPONSE}
    assert "error" not in done


def test_documentai_reports_each_document_with_its_failures_and_review_errors():
    s = script(kind="documentai", items=4, failed_items=1, human_review_errors=1)
    statuses = at(s, 11)["metadata"]["individualProcessStatuses"]
    assert len(statuses) == 4
    assert [st["status"].get("code", 0) for st in statuses] == [3, 0, 0, 0]
    assert [st["humanReviewStatus"]["state"] for st in statuses] == ["SKIPPED", "SKIPPED", "SKIPPED", "ERROR"]
    assert "outputGcsDestination" not in statuses[0]


def test_documentai_has_no_progress_percent():
    assert "progressPercent" not in at(script(kind="documentai"), 5)["metadata"]


def test_a_failed_operation_carries_the_scripted_error_and_state_message():
    s = script(kind="documentai", outcome="failed", error={"code": 3, "message": "Bad input."})
    op = at(s, 11)
    assert op["error"] == {"code": 3, "message": "Bad input."}
    assert op["metadata"]["state"] == "FAILED"
    assert op["metadata"]["stateMessage"] == "Bad input."


def test_a_cancel_moves_documentai_through_cancelling_to_cancelled_after_the_delay():
    s = script(kind="documentai", cancel_delay_s=2)
    cancel_at = T0 + 4
    assert at(s, 5, cancel_at)["metadata"]["state"] == "CANCELLING"
    assert at(s, 5, cancel_at)["done"] is False
    op = at(s, 6, cancel_at)
    assert op["done"] is True
    assert op["metadata"]["state"] == "CANCELLED"
    assert op["error"] == {"code": 1, "message": "Operation was cancelled."}


def test_an_operation_that_ignores_cancel_still_finishes_with_its_scripted_outcome():
    s = script(kind="documentai", ignore_cancel=True)
    assert at(s, 5, T0 + 4)["metadata"]["state"] == "RUNNING"
    assert at(s, 11, T0 + 4)["metadata"]["state"] == "SUCCEEDED"


def test_a_cancel_after_the_natural_end_changes_nothing():
    s = script(kind="documentai")
    assert at(s, 20, T0 + 12)["metadata"]["state"] == "SUCCEEDED"


def test_done_without_result_has_neither_response_error_nor_provider_state():
    op = at(script(kind="documentai", outcome="done_without_result"), 11)
    assert op["done"] is True
    assert "response" not in op and "error" not in op and "state" not in op["metadata"]


# ---- Vision lifecycle

def test_vision_is_processing_until_done_and_then_successful_with_per_item_statuses():
    s = script(kind="vision", items=3, failed_items=1)
    assert at(s, 0.5)["metadata"]["state"] == "PROCESSING"
    assert "endTime" not in at(s, 5)["metadata"]
    op = at(s, 11)
    assert op["metadata"]["state"] == "SUCCESSFUL"
    assert op["metadata"]["endTime"] == model.rfc3339(T0 + 11)
    assert op["response"]["@type"] == model.VISION_IMPORT_RESPONSE
    assert [st.get("code", 0) for st in op["response"]["statuses"]] == [3, 0, 0]
    assert len(op["response"]["referenceImages"]) == 2


def test_vision_import_where_every_item_failed_is_done_with_a_response_but_state_failed():
    op = at(script(kind="vision", items=2, failed_items=2), 11)
    assert op["metadata"]["state"] == "FAILED"
    assert "response" in op


def test_vision_purge_answers_an_empty_response():
    op = at(script(kind="vision", type="PURGE_PRODUCTS"), 11)
    assert op["metadata"]["state"] == "SUCCESSFUL"
    assert op["response"] == {"@type": model.EMPTY}


def test_vision_cancel_ends_cancelled_without_a_cancelling_state():
    s = script(kind="vision", cancel_delay_s=1)
    assert at(s, 4.5, T0 + 4)["metadata"]["state"] == "PROCESSING"
    assert at(s, 5, T0 + 4)["metadata"]["state"] == "CANCELLED"


# ---- generic

def test_generic_progress_grows_linearly_and_reaches_100_on_success():
    s = script(kind="generic")
    assert at(s, 0.5)["metadata"]["progressPercent"] == 0
    assert at(s, 6)["metadata"]["progressPercent"] == 50
    assert at(s, 11)["metadata"]["progressPercent"] == 100


def test_generic_progress_freezes_where_a_failure_stopped_it():
    s = script(kind="generic", outcome="cancelled")
    assert at(s, 11)["metadata"]["progressPercent"] == 99
    assert at(s, 6, T0 + 6)["metadata"]["progressPercent"] == 50


# ---- expiry, faults, filters

def test_an_operation_expires_expire_after_s_past_its_end():
    s = script(expire_after_s=5)
    assert not model.is_expired(s, None, T0 + 15.9)
    assert model.is_expired(s, None, T0 + 16)
    assert model.is_expired(script(), None, T0, expired_by_hand=True)


def test_scripted_faults_fire_the_given_number_of_times_for_their_method():
    faults = (model.parse_fault({"status": 503, "times": 2}), model.parse_fault({"kind": "reset", "on": "cancel"}))
    used = [0, 0]
    picks = []
    for _ in range(3):
        i = model.next_fault(faults, used, "get")
        picks.append(i)
        if i is not None:
            used[i] += 1
    assert picks == [0, 0, None]
    assert model.next_fault(faults, used, "cancel") == 1


@pytest.mark.parametrize("text, expected", [
    ("", model.Filter()),
    ("TYPE=BATCH_PROCESS_DOCUMENTS", model.Filter(type="BATCH_PROCESS_DOCUMENTS")),
    ('type = "PURGE_PRODUCTS"', model.Filter(type="PURGE_PRODUCTS")),
    ("done=false", model.Filter(done=False)),
    ("TYPE=X AND done=true", model.Filter(type="X", done=True)),
])
def test_supported_filters_parse(text, expected):
    assert model.parse_filter(text) == expected


@pytest.mark.parametrize("text", ["state=RUNNING", "done=maybe", "TYPE=X OR done=true", "TYPE"])
def test_unsupported_filters_are_refused(text):
    with pytest.raises(ScriptError):
        model.parse_filter(text)


def test_vertex_operations_list_partial_failures_in_generic_metadata():
    s = script(kind="vertex", running_s=10, items=30, failed_items=25)
    op = at(s, 20)
    assert op["done"] and op["response"]["@type"].endswith("ImportDataResponse")
    assert len(op["metadata"]["genericMetadata"]["partialFailures"]) == 20  # Vertex lists at most 20
    assert s.host == "us-central1-aiplatform.googleapis.com" and "/locations/us-central1/" in s.name


def test_firestore_exports_report_operation_state_and_string_work_counters():
    s = script(kind="firestore", running_s=10, items=2)
    midway = at(s, 6)["metadata"]  # queued 1 s, then half of 10 s
    assert midway["operationState"] == "PROCESSING"
    assert midway["progressDocuments"] == {"completedWork": "1000", "estimatedWork": "2000"}
    assert at(s, 12)["metadata"]["operationState"] == "SUCCESSFUL"


def test_a_name_fitting_a_published_pattern_of_the_host_is_scripted_with_its_url_prefix():
    s = script(host="speech.googleapis.com", name="7612202767953098924")
    assert s.url == "https://speech.googleapis.com/v1/operations/7612202767953098924"
    s = script(host="firestore.googleapis.com", name="projects/p/databases/(default)/operations/AbC")
    assert s.url == "https://firestore.googleapis.com/v1/projects/p/databases/(default)/operations/AbC"
