"""functions.domain.items: per-item results, the kept failed items, and their pages."""
from __future__ import annotations

import base64

import pytest

from functions.domain import items
from functions.domain.errors import InvalidArgument
from tests.unit.factories import docai_metadata, docai_status


OP = "0123456789abcdef0123456789abcdef"
OTHER_OP = "fedcba9876543210fedcba9876543210"


def stored_bytes(kept: list[dict]) -> int:
    return len(items.stored_text(kept).encode())


def failing(inputs, message: str = "Unsupported input file format.", review: dict | None = None) -> dict:
    """Document AI metadata in which every document of `inputs` failed."""
    statuses = [{"inputGcsSource": uri, "status": {"code": 3, "message": message}} for uri in inputs]
    for entry in statuses if review else ():
        entry["humanReviewStatus"] = review
    return docai_metadata("SUCCEEDED", statuses)


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


SKIPPED = {"state": "SKIPPED", "stateMessage": "HumanReviewConfig is not enabled."}
NOT_STARTED = {"state": "ERROR", "stateMessage": "Human review could not be started."}


def uri_of(n: int, name: str) -> str:
    """A gs:// URI of about 200 UTF-8 bytes whose object name is `name` repeated."""
    prefix = f"gs://customer-invoices-eu/2024/05/batch-{n:05d}/"
    return prefix + name * ((200 - len(prefix)) // len(name.encode()))


@pytest.mark.parametrize("name, review", [
    ("x", SKIPPED),
    ("x", NOT_STARTED),
    ("é", SKIPPED),  # 2 bytes in UTF-8, 6 as a \u00e9 escape
    ("日本", NOT_STARTED),
    ("\U0001F4C4", SKIPPED),  # 4 bytes in UTF-8, 12 as a surrogate pair's escapes
])
def test_the_first_thousand_failed_items_of_a_realistic_shape_are_all_kept(name, review):
    metadata = failing([uri_of(n, name) for n in range(1500)], message="m" * 200, review=review)
    result = items.results(metadata, None)
    assert len(result.failed) == items.MAX_KEPT
    assert [i["index"] for i in result.failed] == list(range(items.MAX_KEPT))
    assert (result.summary["failed"], result.summary["failed_kept"]) == (1500, items.MAX_KEPT)


def test_all_of_the_first_thousand_are_kept_while_they_average_the_documented_size():
    bare = len(items.stored_text({"index": 0, "input": "gs://b/", "status": {"code": 3, "message": "m"}}))

    def kept_of(item_bytes: int) -> int:
        # 1,500 failed items of exactly `item_bytes` as stored (the index's digits included).
        statuses = [{"inputGcsSource": "gs://b/" + "o" * pad, "status": {"code": 3, "message": "m"}}
                    for n in range(1500) for pad in [item_bytes - bare - len(str(n)) + 1]]
        return len(items.results(docai_metadata("SUCCEEDED", statuses), None).failed)

    assert kept_of(items.AVERAGE_ITEM_BYTES) == items.MAX_KEPT
    assert kept_of(items.AVERAGE_ITEM_BYTES + 1) < items.MAX_KEPT


def test_the_largest_items_fill_the_budget_from_the_first_on_with_the_true_count():
    statuses = [{"inputGcsSource": "gs://b/" + "é" * 2000, "status": {"code": 3, "message": "m" * 5000},
                 "humanReviewStatus": {"state": "ERROR", "stateMessage": "r" * 5000}} for _ in range(1500)]
    result = items.results(docai_metadata("SUCCEEDED", statuses), None)
    kept = result.failed
    assert 300 < len(kept) < 1000
    assert [i["index"] for i in kept] == list(range(len(kept)))  # the first ones, no gaps
    assert stored_bytes(kept) <= items.KEPT_BYTES < stored_bytes(kept + kept[:1])  # stopped only when full
    assert result.summary == {"total": 1500, "failed": 1500, "human_review_errors": 1500, "failed_kept": len(kept)}


def test_inputs_and_messages_are_cut_in_utf8_bytes_on_a_character_boundary():
    long_input = "gs://b/" + "é" * 1000
    statuses = [{"inputGcsSource": long_input, "status": {"code": 3, "message": "日" * 200},
                 "humanReviewStatus": {"state": "ERROR", "stateMessage": "r" * 300}}]
    item = items.results(docai_metadata("SUCCEEDED", statuses), None).failed[0]
    assert len(item["input"].encode()) == items.INPUT_LIMIT - 1  # 7 ASCII bytes, then whole 2-byte é's
    assert long_input.startswith(item["input"])
    assert item["status"]["message"] == "日" * (items.MESSAGE_LIMIT // 3)
    assert item["human_review_status"]["message"] == "r" * items.MESSAGE_LIMIT


def test_a_lone_surrogate_from_the_api_is_stored_as_a_question_mark():
    statuses = [{"inputGcsSource": "gs://b/\ud800.pdf", "status": {"code": 3, "message": "bad \udfff"}}]
    item = items.results(docai_metadata("SUCCEEDED", statuses), None).failed[0]
    assert item["input"] == "gs://b/?.pdf" and item["status"]["message"] == "bad ?"
    assert items.stored_text([item]).encode()  # valid UTF-8, as Firestore needs


def test_review_boilerplate_is_left_out_and_an_error_keeps_its_message():
    kept = items.results(failing(["gs://b/1", "gs://b/2"], review=SKIPPED), None).failed
    assert [i["human_review_status"] for i in kept] == [{"state": "SKIPPED"}] * 2
    kept = items.results(failing(["gs://b/1"], review=NOT_STARTED), None).failed
    assert kept[0]["human_review_status"] == {"state": "ERROR", "message": "Human review could not be started."}


def test_the_true_counts_do_not_depend_on_how_many_are_kept():
    metadata = docai(7, 1200)
    metadata["individualProcessStatuses"][1100]["status"]["message"] = "m" * 10_000
    assert items.results(metadata, None).summary == {"total": 1207, "failed": 1200, "failed_kept": 1000}
    big = [{"code": 3, "message": "x" * 5000}] * 2000 + [{}] * 3
    assert items.results(None, {"statuses": big}).summary["failed"] == 2000


def test_an_event_carries_the_first_few_failed_items():
    kept = items.results(docai(0, 12), None).failed
    assert items.first_failed(kept) == kept[:items.EVENT_FIRST]
    assert items.first_failed(None) == []


# ---- pages --------------------------------------------------------------------------


def pages_of(kept: list[dict], page_size: int = 10, operation_id: str = OP) -> list[dict]:
    bodies, params = [], {"state": "failed", "page_size": str(page_size)}
    while True:
        body = items.page(operation_id, kept, {"failed": len(kept)}, params)
        bodies.append(body)
        if "next_page_token" not in body:
            return bodies
        params = {**params, "page_token": body["next_page_token"]}


def test_pages_follow_page_tokens_to_the_end():
    kept = items.results(docai(0, 25), None).failed
    bodies = pages_of(kept)
    assert [len(b["items"]) for b in bodies] == [10, 10, 5]
    assert {(b["total_size"], b["kept"]) for b in bodies} == {(25, 25)}
    assert [i for b in bodies for i in b["items"]] == kept


def test_state_defaults_to_failed():
    assert items.page(OP, [], None, {}) == {"items": [], "total_size": 0, "kept": 0}


def next_token(kept: list[dict], page_size: int = 10) -> str:
    return items.page(OP, kept, None, {"page_size": str(page_size)})["next_page_token"]


def reencoded(token: str, change) -> str:
    text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    return base64.urlsafe_b64encode(change(text).encode()).decode().rstrip("=")


def refused(kept: list[dict], token: str, operation_id: str = OP) -> str:
    with pytest.raises(InvalidArgument) as caught:
        items.page(operation_id, kept, None, {"page_size": "10", "page_token": token})
    assert caught.value.to_body()["error"]["status"] == "INVALID_ARGUMENT"
    assert "without page_token" in caught.value.message
    return caught.value.message


@pytest.mark.parametrize("offset", ["+10", " 10", "10 ", "1_0", "010", "10.0", "0", "-10"])
def test_a_token_whose_offset_is_written_another_way_is_refused(offset):
    kept = items.results(docai(0, 25), None).failed
    token = next_token(kept)
    forged = reencoded(token, lambda text: text.replace(":10:", f":{offset}:"))
    assert forged != token
    assert "not one this listing returned" in refused(kept, forged)


@pytest.mark.parametrize("spelling", [lambda t: t + "=", lambda t: t + "==", lambda t: t[:8] + "." + t[8:],
                                      lambda t: t[:-1], lambda t: "A" * 300])
def test_a_token_spelt_other_than_as_it_was_made_is_refused(spelling):
    kept = items.results(docai(0, 25), None).failed
    assert "not one this listing returned" in refused(kept, spelling(next_token(kept)))


def test_a_token_from_another_operation_is_refused():
    kept = items.results(docai(0, 25), None).failed  # the same items: only the operation differs
    assert "another operation" in refused(kept, next_token(kept), operation_id=OTHER_OP)


def test_a_token_is_refused_once_the_items_it_followed_have_changed():
    kept = items.results(docai(0, 25), None).failed
    token = next_token(kept)
    earlier_changed = [dict(kept[0], status={"code": 5, "message": "other"})] + kept[1:]
    assert "changed" in refused(earlier_changed, token)
    assert "changed" in refused(kept[1:], token)  # one served item gone: the next page would skip one
    assert "changed" in refused(kept[:5], token)


def test_a_token_still_serves_the_rest_when_only_later_items_changed():
    kept = items.results(docai(0, 25), None).failed
    grown = kept + items.results(docai(0, 30), None).failed[25:]
    body = items.page(OP, grown, None, {"page_size": "10", "page_token": next_token(kept)})
    assert body["items"] == grown[10:20]  # nothing skipped, nothing repeated


@pytest.mark.parametrize("params", [
    {"state": "succeeded"},
    {"page_size": "0"},
    {"page_size": "1001"},
    {"page_size": "ten"},
    {"page_token": "not-a-token"},
    {"page_token": "aXRlbXM6OTk5"},  # items:999, the old bare-offset form
    {"colour": "red"},
])
def test_bad_parameters_are_invalid_arguments(params):
    with pytest.raises(InvalidArgument):
        items.page(OP, [{"index": 0}], {"failed": 1}, params)
