"""The Operations REST client against a hostile API: every answer becomes a result or a
classified failure of that one operation, never an exception (real HTTP, no emulators)."""
from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from urllib3.exceptions import LocationParseError

from functions.adapters.operations_api import CancelResult, OperationsApi
from functions.domain.errors import ApiUnavailable
from functions.domain.names import OperationRef, build_ref
from functions.domain.record import RECORD_LIMIT, Record
from functions.domain.tracking import ApiFailure, Rules, after_poll
from tests.unit.factories import NOW, make_record

LATER = NOW + timedelta(seconds=30)


@pytest.fixture
def client(hostile):
    return OperationsApi(hostile.base_url, timeout_s=2)


@pytest.fixture(params=["blocking", "event loop"])
def via(request):
    """A GET as handle and the CLI make it (get), or as a poll run does (start_gets, aiohttp)."""
    if request.param == "blocking":
        return lambda api, ref: api.get(ref)
    return lambda api, ref: api.start_gets([(ref, None)])[0].result(timeout=30)


def ref(mode: str, n: int = 1) -> OperationRef:
    return build_ref(f"projects/123/locations/us/operations/hostile-{mode}-{n}", "documentai")


@pytest.mark.parametrize("mode, kind, says", [
    ("deep", "permanent", "JSON nested 5002 levels deep (at most 100)"),
    ("array", "permanent", "a JSON array, not an Operation"),
    ("types", "permanent", "done is a string"),
    ("mismatch", "permanent", "names a different operation"),
    ("redirect", "permanent", "HTTP 302"),
    ("nonjson", "transient", "not usable JSON"),
    ("reset", "transient", "Connection reset"),
    ("bomb", "permanent", "larger than 10485760 bytes"),  # a gzip bomb: capped as it inflates
])
def test_a_hostile_answer_is_a_classified_failure_of_that_operation(client, via, mode, kind, says):
    result = via(client, ref(mode))
    assert isinstance(result, ApiFailure)
    assert result.kind == kind and says in result.status["message"]


def test_a_hang_past_the_timeout_is_a_transient_failure(hostile, via):
    result = via(OperationsApi(hostile.base_url, timeout_s=0.5), ref("hang"))
    assert isinstance(result, ApiFailure) and result.kind == "transient"
    assert "Timeout" in result.status["message"] or "timed out" in result.status["message"]


def test_a_redirect_is_not_followed(hostile, client, via):
    before = hostile.count("hostile-redirect-2")
    assert via(client, ref("redirect", 2)).kind == "permanent"
    assert hostile.count("hostile-redirect-2") == before + 1  # one request, to lrowatch's own host only


def test_an_answer_over_the_byte_cap_is_refused_while_streaming(hostile, via):
    result = via(OperationsApi(hostile.base_url, max_answer_bytes=1_000_000), ref("metadata"))
    assert isinstance(result, ApiFailure) and result.kind == "permanent"
    assert "larger than 1000000 bytes" in result.status["message"]


def test_two_megabytes_of_error_details_end_failed_with_the_details_capped(client, via):
    answer = via(client, ref("details"))
    assert isinstance(answer, dict) and len(answer["error"]["details"]) == 2000
    record = after_poll(make_record(), answer, LATER).record
    assert record.state.value == "FAILED" and record.truncated is True
    assert record.error["code"] == 13 and 0 < len(record.error["details"]) <= 20
    assert len(json.dumps(record.to_doc(), default=str)) < RECORD_LIMIT


def test_five_megabytes_of_metadata_are_dropped_and_the_rest_is_kept(client, via):
    answer = via(client, ref("metadata"))
    record = after_poll(make_record(), answer, LATER).record
    assert record.state.value == "SUCCEEDED" and record.provider_state == "SUCCEEDED"
    assert record.metadata is None and record.response == {} and record.truncated is True


def test_a_request_that_cannot_be_built_is_a_permanent_failure_not_an_exception():
    class Unbuildable(urllib3.PoolManager):
        def urlopen(self, *args, **kwargs):  # what urllib3 raises for a 71-character host label
            raise LocationParseError("label empty or too long")

    api = OperationsApi("http://127.0.0.1:9", http_factory=Unbuildable)
    failure = api.get(ref("any"))
    assert failure.kind == "permanent" and "LocationParseError" in failure.status["message"]
    outcome = api.cancel(ref("any"))
    assert outcome.outcome == "refused" and "LocationParseError" in outcome.api_status["message"]
    with pytest.raises(ApiUnavailable):
        api.list(ref("any"), "projects/123/locations/us")


def test_a_host_lrowatch_did_not_build_is_refused_without_a_request(client, via):
    foreign = OperationRef("projects/1/locations/us/operations/hostile-array-1", "documentai.googleapis.com",
                           "v1", "attacker.example.com")
    failure = via(client, foreign)
    assert failure.kind == "permanent" and "non-Google host" in failure.status["message"]


@pytest.mark.parametrize("mode", ["deep", "nonjson", "array", "types", "redirect", "mismatch", "reset"])
def test_cancel_against_a_hostile_answer_gives_an_outcome_or_asks_for_a_retry(client, mode):
    try:
        outcome = client.cancel(ref(mode))
    except ApiUnavailable:
        return  # transient: Pub/Sub redelivers the command
    assert isinstance(outcome, CancelResult) and outcome.outcome in ("sent", "refused", "not_found",
                                                                      "already_finished")


@pytest.mark.parametrize("mode", ["deep", "nonjson", "array", "redirect", "reset"])
def test_a_hostile_listing_is_unavailable_never_a_crash(client, mode):
    with pytest.raises(ApiUnavailable):
        client.list(ref("any"), f"projects/hostile-{mode}-9/locations/us")


def test_a_listing_with_wrong_types_is_unavailable(hostile, client):
    hostile.script("hostile-list-1", 200, json.dumps({"operations": {"a": 1}, "nextPageToken": 5}).encode())
    with pytest.raises(ApiUnavailable, match="not a ListOperationsResponse"):
        client.list(ref("any"), "projects/hostile-list-1/locations/us")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
operation_like = st.fixed_dictionaries({}, optional={
    "name": st.just("projects/123/locations/us/operations/hostile-prop-1") | json_values,
    "done": json_values, "metadata": json_values, "response": json_values, "error": json_values})


@hsettings(max_examples=150, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.binary(max_size=300) | (json_values | operation_like).map(lambda v: json.dumps(v).encode()),
       status=st.sampled_from([200, 200, 200, 400, 404, 429, 500, 503]))
def test_any_answer_yields_a_storable_record_and_never_raises(hostile, client, via, body, status):
    hostile.script("hostile-prop-1", status, body)
    result = via(client, ref("prop"))
    assert isinstance(result, (dict, ApiFailure))
    record = make_record()
    decision = after_poll(record, result, LATER, Rules(max_permanent_errors=1), rng=random.Random(0))
    doc = decision.record.to_doc()
    assert Record.from_doc(doc).state is decision.record.state
    json.dumps(doc, default=str).encode()  # no lone surrogates left in stored fields
    if decision.event is not None:
        assert len(decision.event.encoded()) < 10 * 1024 * 1024

