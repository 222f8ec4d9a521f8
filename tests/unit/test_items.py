"""functions.domain.items: per-item results, the kept failed items, and their pages."""
from __future__ import annotations

import pytest

from functions.domain import items
from functions.domain.errors import InvalidArgument
from tests.unit.factories import docai_metadata, docai_status


def docai(n_ok: int, n_failed: int, **status_extra):
    statuses = [docai_status(code=3, n=i, **status_extra) for i in range(n_failed)]
    statuses += [docai_status(n=n_failed + i) for i in range(n_ok)]
    return docai_metadata("SUCCEEDED", statuses)


def test_document_ai_failed_items_keep_input_status_and_review():
    result = items.results(docai(1, 1, review_state="SKIPPED"), None)
    assert result.summary == {"total": 2, "failed": 1}
    assert result.failed == [{"index": 0, "input": "gs://in/doc-0.pdf",
                              "status": {"code": 3, "message": "item failed"},
                              "human_review_status": {"state": "SKIPPED"}}]


def test_vision_import_failed_lines_are_kept_by_their_csv_index():
    response = {"statuses": [{}, {"code": 5, "message": "image not found"}], "referenceImages": [{"uri": "gs://a"}]}
    result = items.results(None, response)
    assert result.summary == {"total": 2, "failed": 1}
    assert result.failed == [{"index": 1, "input": None, "status": {"code": 5, "message": "image not found"}}]


def test_vision_reference_image_is_paired_when_the_api_lists_one_per_status():
    images = [{"name": "p/0", "uri": "gs://img/0.jpg"}, {"name": "p/1", "uri": "gs://img/1.jpg"}]
    result = items.results(None, {"statuses": [{}, {"code": 3, "message": "bad"}], "referenceImages": images})
    assert result.failed[0]["input"] == "gs://img/1.jpg"
    assert result.failed[0]["reference_image"] == {"name": "p/1", "uri": "gs://img/1.jpg"}


def test_no_per_item_results_means_no_summary():
    assert items.results(docai_metadata("RUNNING"), None) == items.Results(None)
    assert items.results(None, {"statuses": []}).summary is None


def test_at_most_the_first_thousand_failed_items_are_kept_with_the_true_count():
    result = items.results(docai(5, 1500), None)
    assert len(result.failed) == items.MAX_KEPT
    assert result.failed[0]["index"] == 0
    assert result.summary == {"total": 1505, "failed": 1500, "failed_kept": items.MAX_KEPT}


def test_kept_items_stay_within_the_byte_budget():
    long_input = "gs://b/" + "x" * 1500
    statuses = [{"inputGcsSource": long_input, "status": {"code": 3, "message": "m" * 1000}} for _ in range(400)]
    result = items.results(docai_metadata("SUCCEEDED", statuses), None)
    assert 0 < len(result.failed) < 400
    assert sum(len(str(i)) for i in result.failed) < items.KEPT_BYTES * 1.2
    assert all(len(i["status"]["message"]) == items.MESSAGE_LIMIT for i in result.failed)
    assert result.summary["failed_kept"] == len(result.failed)


def test_an_event_carries_the_first_few_failed_items():
    kept = items.results(docai(0, 12), None).failed
    assert items.first_failed(kept) == kept[:items.EVENT_FIRST]
    assert items.first_failed(None) == []


# ---- pages --------------------------------------------------------------------------


def test_pages_follow_page_tokens_to_the_end():
    kept = items.results(docai(0, 25), None).failed
    seen, params = [], {"state": "failed", "page_size": "10"}
    while True:
        body = items.page(kept, {"failed": 25}, params)
        seen += body["items"]
        assert body["total_size"] == 25 and body["kept"] == 25
        if "next_page_token" not in body:
            break
        params = {**params, "page_token": body["next_page_token"]}
    assert seen == kept


def test_state_defaults_to_failed():
    assert items.page([], None, {}) == {"items": [], "total_size": 0, "kept": 0}


@pytest.mark.parametrize("params", [
    {"state": "succeeded"},
    {"page_size": "0"},
    {"page_size": "1001"},
    {"page_size": "ten"},
    {"page_token": "not-a-token"},
    {"page_token": "aXRlbXM6OTk5"},  # items:999, past the end
    {"colour": "red"},
])
def test_bad_parameters_are_invalid_arguments(params):
    with pytest.raises(InvalidArgument):
        items.page([{"index": 0}], {"failed": 1}, params)
