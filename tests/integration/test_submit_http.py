"""`submit`'s HTTP surface through functions-framework, on the real emulators."""
from __future__ import annotations

import json
import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.integration.helpers import (
    api_app, count_records, create_topics, pull_messages, pull_subscription)

DOC_AI = "projects/123/locations/us/operations/bc4e1d412863e626"
ALLOWED_HOOK = "https://hooks.example.com/lro"


@pytest.fixture
def client(emulators, project_id, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project_id)
    monkeypatch.setenv("LRO_NOTIFY_URL_PREFIXES", ALLOWED_HOOK)
    monkeypatch.setenv("LRO_API_BASE_URL", "http://127.0.0.1:9")  # never called by submit
    create_topics(project_id, "lro-commands")
    return api_app("submit").test_client()


def post(client, body, path="/operations", **kwargs):
    return client.post(path, data=json.dumps(body), content_type="application/json", **kwargs)


def test_a_new_operation_is_created_with_201_and_resubmitting_returns_the_same_record(client, project_id):
    first = post(client, {"name": DOC_AI, "service": "documentai", "labels": {"team": "ocr"}})
    again = post(client, {"name": DOC_AI, "service": "documentai.googleapis.com"}, path="/")
    assert first.status_code == 201 and again.status_code == 200
    assert first.json["id"] == again.json["id"]
    assert first.json["url"] == f"https://us-documentai.googleapis.com/v1/{DOC_AI}"
    assert first.json["state"] == "PENDING" and again.json["labels"] == {"team": "ocr"}
    assert count_records(project_id) == 1


def test_the_url_form_tracks_the_same_operation_as_name_and_service(client, project_id):
    by_name = post(client, {"name": DOC_AI, "service": "documentai"})
    by_url = post(client, {"url": f"https://us-documentai.googleapis.com/v1/{DOC_AI}"})
    assert (by_name.status_code, by_url.status_code) == (201, 200)
    assert by_name.json["id"] == by_url.json["id"]


def test_concurrent_submissions_of_one_operation_make_exactly_one_record(client, project_id):
    statuses: list[int] = []

    def submit_once():
        statuses.append(post(client, {"name": DOC_AI, "service": "documentai"}).status_code)

    threads = [threading.Thread(target=submit_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 7 + [201]
    assert count_records(project_id) == 1


def test_get_returns_the_record_and_unknown_ids_are_404_with_a_google_error(client):
    created = post(client, {"name": DOC_AI, "service": "documentai"}).json
    assert client.get(f"/operations/{created['id']}").json["name"] == DOC_AI
    missing = client.get("/operations/" + "0" * 32)
    assert missing.status_code == 404
    assert missing.json["error"]["status"] == "NOT_FOUND"


def test_list_filters_by_state_service_and_label_and_pages(client):
    for i in range(5):
        post(client, {"name": f"projects/1/locations/us/operations/op{i}", "service": "documentai",
                      "labels": {"team": "ocr" if i % 2 == 0 else "web"}})
    post(client, {"name": "projects/1/locations/global/operations/v1", "service": "vision"})
    ocr = client.get("/operations?label.team=ocr&service=documentai&state=PENDING").json["operations"]
    assert sorted(o["name"][-3:] for o in ocr) == ["op0", "op2", "op4"]
    assert client.get("/operations?state=RUNNING").json["operations"] == []
    seen, token, pages = [], None, 0
    while True:
        page = client.get("/operations?limit=2" + (f"&page_token={token}" if token else "")).json
        seen += [o["id"] for o in page["operations"]]
        pages += 1
        token = page.get("next_page_token")
        if not token:
            break
    assert len(seen) == len(set(seen)) == 6 and pages == 3


def test_list_results_leave_out_metadata_and_response_and_the_single_read_keeps_them(client, project_id):
    from functions.adapters.firestore_store import FirestoreStore

    created = post(client, {"name": DOC_AI, "service": "documentai"}).json
    FirestoreStore(project_id, "lro_operations").update_fields(
        created["id"], {"metadata": json.dumps({"state": "RUNNING"}), "response": json.dumps({"big": "x" * 1000})})
    listed = client.get("/operations").json["operations"][0]
    assert listed["id"] == created["id"] and "metadata" not in listed and "response" not in listed
    single = client.get(f"/operations/{created['id']}").json
    assert single["metadata"] == {"state": "RUNNING"} and single["response"] == {"big": "x" * 1000}


@pytest.mark.parametrize("query", ["state=BOGUS", "limit=0", "limit=x", "service=evil.com",
                                   "page_token=!!", "colour=red"])
def test_list_refuses_bad_query_parameters_with_400(client, query):
    response = client.get(f"/operations?{query}")
    assert response.status_code == 400
    assert response.json["error"]["status"] == "INVALID_ARGUMENT"


def test_cancel_is_accepted_with_202_and_queued_on_the_commands_topic(client, project_id):
    pull_subscription(project_id, "lro-commands", "commands-tap")
    created = post(client, {"name": DOC_AI, "service": "documentai"}).json
    response = post(client, {"reason": "no longer needed"}, path=f"/operations/{created['id']}:cancel")
    assert response.status_code == 202
    [command] = pull_messages(project_id, "commands-tap", expect=1)
    assert command == {"type": "cancel", "id": created["id"], "reason": "no longer needed",
                       "requested_by": None, "request_id": command["request_id"]}
    assert re.fullmatch(r"[0-9a-f]{32}", command["request_id"])  # one per request


def test_cancel_for_an_api_without_cancel_is_400_failed_precondition_and_nothing_is_queued(client, project_id):
    pull_subscription(project_id, "lro-commands", "commands-tap")
    created = post(client, {"name": "operations/7612202767953098924", "service": "speech"}).json
    response = post(client, {}, path=f"/operations/{created['id']}:cancel")
    assert response.status_code == 400
    assert response.json["error"]["status"] == "FAILED_PRECONDITION"
    assert "publishes no :cancel" in response.json["error"]["message"]
    assert pull_messages(project_id, "commands-tap", expect=1, timeout_s=2.0) == []
    assert client.get(f"/operations/{created['id']}").json["cancel"] is None


def test_a_location_that_would_make_a_dns_label_over_63_characters_is_400_and_stores_nothing(client, project_id):
    location = "l" + "o" * 60 + "ng"  # a valid location, but "LOCATION-documentai" is no DNS label
    response = post(client, {"name": f"projects/1/locations/{location}/operations/1", "service": "documentai"})
    assert response.status_code == 400 and "DNS name" in response.json["error"]["message"]
    assert count_records(project_id) == 0


def test_names_of_the_published_surface_are_tracked_with_their_own_urls(client):
    cases = {
        "https://vision.googleapis.com/v1/locations/us-west1/operations/bc4e1d412863e626": "vision.googleapis.com",
        "https://firestore.googleapis.com/v1/projects/p/databases/(default)/operations/AiA0": "firestore.googleapis.com",
        "https://documentai.eu.rep.googleapis.com/v1/projects/1/locations/eu/operations/7": "documentai.googleapis.com",
        "https://dataproc.googleapis.com/v1/projects/p/regions/us-central1/operations/o-1": "dataproc.googleapis.com",
    }
    for url, service in cases.items():
        response = post(client, {"url": url})
        assert response.status_code == 201, response.json
        assert (response.json["url"], response.json["service"]) == (url, service)


def test_a_name_outside_the_published_patterns_names_the_closest_one(client, project_id):
    response = post(client, {"name": "locations/us-west1/things/1", "service": "vision"})
    assert response.status_code == 400
    assert "vision v1 names look like locations/{L}/operations/{ID}" in response.json["error"]["message"]
    assert count_records(project_id) == 0


def test_get_services_shows_the_published_catalog(client):
    body = client.get("/services").json
    assert body["source"].startswith("google-api-python-client==")
    by_name = {api["name"]: api for api in body["apis"]}
    vision = by_name["vision"]
    assert {"pattern": "locations/{L}/operations/{ID}", "version": "v1"}.items() <= vision["forms"][0].items()
    assert by_name["speech"]["forms"][0]["cancel"] is False
    assert "us" in by_name["documentai"]["regional_endpoints"]


def test_get_one_service_by_short_name_or_host_and_unknown_ones_are_404(client):
    assert client.get("/services/translation").json["name"] == "translate"
    assert client.get("/services/dataproc.googleapis.com").json["host"] == "dataproc.googleapis.com"
    missing = client.get("/services/evil.com")
    assert missing.status_code == 404 and missing.json["error"]["status"] == "NOT_FOUND"
    assert client.post("/services").status_code == 405


def test_cancel_of_an_unknown_operation_is_404(client):
    assert client.post("/operations/" + "a" * 32 + ":cancel").status_code == 404


@pytest.mark.parametrize("method, path, status", [
    ("PUT", "/operations", 405), ("DELETE", "/operations/" + "a" * 32, 405),
    ("GET", "/operations/x:cancel", 405), ("GET", "/nowhere", 404), ("GET", "/", 405)])
def test_wrong_methods_and_paths_get_google_errors(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.json["error"]["code"] == status


def test_a_non_json_body_is_415_and_an_oversized_one_is_413(client, project_id):
    form = client.post("/operations", data="name=x", content_type="application/x-www-form-urlencoded")
    big = post(client, {"name": DOC_AI, "service": "documentai", "correlation_id": "x" * 70000})
    assert form.status_code == 415 and big.status_code == 413
    assert count_records(project_id) == 0


def test_malformed_json_is_400(client, project_id):
    response = client.post("/operations", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert count_records(project_id) == 0


HOSTILE = [
    {"url": "https://x.googleapis.com@evil.com/v1/projects/1/operations/1"},
    {"url": "https://documentai.googleapis.com.evil.com/v1/projects/1/locations/us/operations/1"},
    {"url": "https://169.254.169.254/v1/projects/1/operations/1"},
    {"url": "http://metadata.google.internal/computeMetadata/v1/projects/1/operations/1"},
    {"url": "http://vision.googleapis.com/v1/projects/1/operations/1"},
    {"url": "https://vision.googleapis.com:8443/v1/projects/1/operations/1"},
    {"url": "https://vision.googleapis.com/v1/projects/1/../../operations/1"},
    {"url": "https://vision.googleapis.com/v1/projects/1%2F..%2Foperations/1"},
    {"url": "https://vision.googleapis.com/v1/projects/1/operations/1?alt=media"},
    {"url": "https://vision.googleapis.com/v1/projects/1/operations/1#frag"},
    {"url": "https://eu-documentai.googleapis.com/v1/projects/1/locations/us/operations/1"},
    {"name": "projects/1/operations/1\r\nHost: evil.com", "service": "vision"},
    {"name": "projects/1/locations/us/operations/" + "a" * 1600, "service": "documentai"},
    {"name": "projects/1/locations/evil.com#/operations/1", "service": "documentai"},
    {"name": "projects/1/operations/1", "service": "evil.com"},
    {"name": "projects/1/operations/1", "service": "vision.googleapis.com.evil.com"},
    {"name": "projects/1/operations/1", "service": "169.254.169.254"},
    {"name": "projects/1/operations/1", "service": "metadata.google.internal"},
    {"name": "projects/1/operations/1", "service": "googleapis.com"},
    {"name": "projects/1/operations/1", "service": "vision.evil.googleapis.com"},
    {"name": "projects/1/operations/1", "service": "vision", "notify_url": "http://hooks.example.com/lro"},
    {"name": "projects/1/operations/1", "service": "vision",
     "notify_url": "https://hooks.example.com/lro.evil.com/x"},
    {"name": "projects/1/operations/1", "service": "vision", "notify_url": "https://evil.com/lro"},
]


@pytest.mark.parametrize("body", HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_inputs_are_refused_with_400_and_reach_no_host(client, project_id, body, monkeypatch):
    calls = []
    import requests

    monkeypatch.setattr(requests.Session, "request", lambda *a, **k: calls.append(a) or None)
    response = post(client, body)
    assert response.status_code == 400, response.json
    assert response.json["error"]["status"] == "INVALID_ARGUMENT"
    assert calls == []
    assert count_records(project_id) == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)
submission_like = st.fixed_dictionaries(
    {}, optional={"name": json_values | st.text(), "service": json_values | st.sampled_from(["vision", "documentai"]),
                  "url": st.text(), "labels": json_values, "policy": json_values, "notify_url": json_values,
                  "api_version": json_values, "correlation_id": json_values})


@hsettings(max_examples=60, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=json_values | submission_like)
def test_arbitrary_json_never_causes_a_5xx_and_refusals_store_nothing(client, project_id, body):
    before = count_records(project_id)
    response = post(client, body)
    assert response.status_code < 500, response.json
    if response.status_code >= 400:
        assert set(response.json["error"]) == {"code", "status", "message"}
        assert count_records(project_id) == before


@hsettings(max_examples=40, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=st.binary(max_size=200), path=st.text(max_size=30))
def test_arbitrary_bytes_and_paths_never_cause_a_5xx(client, project_id, raw, path):
    response = client.post("/" + path.lstrip("/"), data=raw, content_type="application/json")
    assert response.status_code < 500
    assert count_records(project_id) == 0 or response.status_code in (200, 201)


# ---- hostile input ---------------------------------------------------------------

HOSTILE_BODIES = [
    (b"[" * 20_000 + b"]" * 20_000, "nested 20000 levels deep"),
    (b'{"name": "projects/1/locations/us/operations/\\ud800", "service": "documentai"}', "lone surrogate"),
    (b'{"name": "projects/1/locations/us/operations/1", "service": "documentai", "policy": {"max_delay_s": NaN}}',
     "NaN is not JSON"),
    (json.dumps({"name": DOC_AI, "service": "documentai", "notify_url": ALLOWED_HOOK + "\x0b"}).encode(),
     "notify_url must be an https URL of printable ASCII"),
    (json.dumps({"name": DOC_AI, "service": "documentai", "notify_url": ALLOWED_HOOK + "/\x7f"}).encode(),
     "notify_url must be an https URL of printable ASCII"),
    (json.dumps({"name": DOC_AI + "\x0b", "service": "documentai"}).encode(), "name"),
    (json.dumps({"name": DOC_AI, "service": "documentai", "labels": {"team`) OR (`x": "ocr"}}).encode(),
     "labels follow Google Cloud label rules"),
]


@pytest.mark.parametrize("raw, says", HOSTILE_BODIES)
def test_hostile_bodies_get_400_with_a_clear_message_and_store_nothing(client, project_id, raw, says):
    response = client.post("/operations", data=raw, content_type="application/json")
    assert response.status_code == 400, response.json
    assert response.json["error"]["status"] == "INVALID_ARGUMENT" and says in response.json["error"]["message"]
    assert count_records(project_id) == 0


def test_a_label_filter_with_a_malformed_key_is_400_not_a_broken_field_path(client):
    response = client.get("/operations?label.team%60%20OR%20%60x=ocr")
    assert response.status_code == 400 and "label" in response.json["error"]["message"]


@pytest.fixture
def pubsub(client):
    return api_app("submit_pubsub").test_client()


def push(pubsub, raw: bytes):
    import base64

    envelope = {"message": {"data": base64.b64encode(raw).decode(), "messageId": "m-hostile"},
                "subscription": "projects/p/subscriptions/lro-submissions-submit"}
    return pubsub.post("/", json=envelope)


@pytest.mark.parametrize("raw, says", HOSTILE_BODIES + [(b"\xff\xfe not utf-8", "not acceptable base64 JSON")])
def test_hostile_pubsub_submissions_are_acknowledged_with_an_error_log_never_redelivered(
        pubsub, project_id, caplog, raw, says):
    import logging

    with caplog.at_level(logging.ERROR):
        response = push(pubsub, raw)
    assert 200 <= response.status_code < 300  # acknowledged: no redelivery, no dead letter
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[-1].message_id == "m-hostile" and says in errors[-1].getMessage()
    assert count_records(project_id) == 0


@hsettings(max_examples=40, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=st.binary(min_size=1, max_size=200) | (json_values | submission_like).map(json.dumps).map(str.encode))
def test_arbitrary_pubsub_data_is_acknowledged_or_tracked_never_redelivered(pubsub, project_id, raw):
    before = count_records(project_id)
    response = push(pubsub, raw)
    assert 200 <= response.status_code < 300
    assert count_records(project_id) - before in (0, 1)


# ---- confused deputy ----------------------------------------------------------------

@pytest.fixture
def guarded(client, monkeypatch):
    """submit with LRO_ALLOWED_PARENTS as Terraform sets it: the project's id and number."""
    monkeypatch.setenv("LRO_ALLOWED_PARENTS", "projects/my-project,projects/123")
    return client


@pytest.mark.parametrize("extra, field", [
    ({"name": "projects/victim/locations/us/operations/1", "service": "documentai"}, "name"),
    ({"url": "https://us-documentai.googleapis.com/v1/projects/999/locations/us/operations/1"}, "name"),
    ({"name": DOC_AI, "service": "documentai", "quota_project": "victim-billing"}, "quota_project"),
    ({"name": DOC_AI, "service": "documentai", "notify_topic": "projects/victim/topics/exfil"}, "notify_topic"),
])
def test_a_submission_outside_the_allowed_parents_is_403_and_stores_nothing(guarded, pubsub, project_id, caplog,
                                                                           extra, field):
    import logging

    response = post(guarded, extra)
    assert response.status_code == 403, response.json
    assert response.json["error"]["status"] == "PERMISSION_DENIED"
    assert response.json["error"]["message"].startswith(f"{field} is in ")
    with caplog.at_level(logging.ERROR):
        assert 200 <= push(pubsub, json.dumps(extra).encode()).status_code < 300  # acknowledged, not retried
    assert any("PERMISSION_DENIED" in r.getMessage() or "LRO_ALLOWED_PARENTS" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)
    assert count_records(project_id) == 0


def test_inside_the_allowed_parents_and_parentless_names_are_tracked(guarded, project_id):
    inside = post(guarded, {"name": DOC_AI, "service": "documentai", "quota_project": "my-project",
                            "notify_topic": "projects/my-project/topics/ocr-done"})
    vision = post(guarded, {"name": "operations/abc", "service": "speech"})  # no parent: the credentials' project
    assert (inside.status_code, vision.status_code) == (201, 201)
    assert count_records(project_id) == 2


def _id_token(email: str) -> str:
    import base64

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'email': email, 'email_verified': True})}.c2ln"


def test_requested_by_is_the_callers_identity_never_the_body(client, project_id):
    pull_subscription(project_id, "lro-commands", "commands-tap")
    created = post(client, {"name": DOC_AI, "service": "documentai"}).json
    response = post(client, {"reason": "wrong processor", "requested_by": "someone-else@example.com"},
                    path=f"/operations/{created['id']}:cancel",
                    headers={"Authorization": f"Bearer {_id_token('ops@example.com')}"})
    assert response.status_code == 202
    [command] = pull_messages(project_id, "commands-tap", expect=1)
    assert command["requested_by"] == "ops@example.com" and command["reason"] == "wrong processor"
