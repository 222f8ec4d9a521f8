"""Effects are never lost, on the real Firestore and Pub/Sub emulators and the simulator:
a refused cancel may be requested again, a conflicting resubmission is 409, a missing
notify_topic is recorded as not delivered, and handle's claims follow its timeout."""
from __future__ import annotations

import json
import logging

import pytest

from functions.adapters.firestore_claims import FirestoreClaims
from functions.adapters.firestore_store import FirestoreStore
from functions.adapters.notifier import Notifier
from functions.adapters.operations_api import OperationsApi
from functions.adapters.pubsub_publisher import Publisher
from functions.config import Settings
from functions.services.handle import CLAIM_MARGIN_S, HandleService
from functions.services.poll import PollService
from tests.integration.helpers import api_app, count_records, create_topics, pull_messages, pull_subscription

DOC_AI = "projects/123/locations/us/operations/bc4e1d412863e626"


@pytest.fixture
def env(emulators, sim, simulator, project_id, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project_id)
    monkeypatch.setenv("LRO_API_BASE_URL", simulator.base_url)
    settings = Settings(project=project_id, api_base_url=simulator.base_url, handler_timeout_s=45)
    create_topics(project_id, "lro-events", "lro-commands")
    pull_subscription(project_id, "lro-commands", "commands-tap")
    pull_subscription(project_id, "lro-events", "events-tap")
    store = FirestoreStore(project_id, settings.collection)
    claims = FirestoreClaims(store, settings.claims_collection)
    handle = HandleService(settings, store, claims, OperationsApi(simulator.base_url), Publisher(),
                           Notifier(Publisher(), settings))
    return settings, store, claims, handle, api_app("submit").test_client()


def test_a_cancel_refused_by_the_api_may_be_requested_again_and_then_gets_one_new_call(env, sim):
    settings, store, claims, handle, submit = env
    op = sim.create(kind="documentai", running_s=60, faults=[{"status": 403, "times": 1, "on": "cancel"}])
    op_id = submit.post("/operations", json={"url": op["url"]}).json["id"]
    for expected in ("refused", "sent"):
        assert submit.post(f"/operations/{op_id}:cancel", json={"reason": "stop"}).status_code == 202
        [command] = pull_messages(settings.project, "commands-tap", expect=1)
        assert handle.handle(command) == expected
        assert handle.handle(command) == "duplicate"  # a redelivery of the same request
    assert submit.post(f"/operations/{op_id}:cancel").status_code == 202  # after "sent": no third call
    assert handle.handle(pull_messages(settings.project, "commands-tap", expect=1)[0]) == "duplicate"
    assert sim.stats()["cancels"][op["name"]] == 2
    record = store.get(op_id)
    assert (record.cancel["outcome"], record.cancel["attempt"]) == ("sent", 2)
    outcomes = [e for e in pull_messages(settings.project, "events-tap", expect=2) if e["type"] == "lro.cancel_outcome"]
    assert [(e["event_id"], e["outcome"]) for e in outcomes] == [(f"{op_id}-cancel", "refused"),
                                                                 (f"{op_id}-cancel-2", "sent")]


def test_resubmitting_with_other_settings_is_409_naming_them_and_the_same_settings_200(env, caplog):
    settings, store, claims, handle, submit = env
    first = {"name": DOC_AI, "service": "documentai", "labels": {"team": "ocr"}, "policy": {"max_delay_s": 60}}
    assert submit.post("/operations", json=first).status_code == 201
    assert submit.post("/operations", json=first).status_code == 200
    assert submit.post("/operations", json={"name": DOC_AI, "service": "documentai"}).status_code == 200
    conflict = submit.post("/operations", json={**first, "labels": {"team": "web"}, "policy": {"max_delay_s": 5}})
    assert conflict.status_code == 409
    assert conflict.json["error"]["status"] == "ALREADY_EXISTS"
    assert "labels, policy.max_delay_s differ" in conflict.json["error"]["message"]
    assert store.get(conflict_id := submit.post("/operations", json=first).json["id"]).labels == {"team": "ocr"}
    # On Pub/Sub the same conflict is acknowledged with an ERROR log, never redelivered.
    import base64

    data = base64.b64encode(json.dumps({**first, "labels": {"team": "web"}}).encode()).decode()
    with caplog.at_level(logging.ERROR):
        pushed = api_app("submit_pubsub").test_client().post("/", json={
            "message": {"data": data, "messageId": "m-409"}, "subscription": "projects/p/subscriptions/s"})
    assert 200 <= pushed.status_code < 300
    assert any("ALREADY_EXISTS" in r.getMessage() or "other settings" in r.getMessage() for r in caplog.records)
    assert count_records(settings.project) == 1 and store.get(conflict_id).labels == {"team": "ocr"}


def test_a_notify_topic_that_does_not_exist_is_recorded_not_delivered_and_completion_goes_on(env, sim):
    settings, store, claims, handle, submit = env
    op = sim.create(kind="vision", running_s=0)
    missing = f"projects/{settings.project}/topics/never-created"
    op_id = submit.post("/operations", json={"url": op["url"], "notify_topic": missing,
                                             "policy": {"initial_delay_s": 0}}).json["id"]
    PollService(settings, store, OperationsApi(settings.api_base_url), Publisher()).run(budget_s=2)
    final = [e for e in pull_messages(settings.project, "events-tap", expect=1) if e["done"]][0]
    assert handle.handle(final) == "completed"
    completion = store.get(op_id).completion
    assert completion["notify_topic"]["delivered"] is False and "NotFound" in completion["notify_topic"]["error"]


def test_an_effect_in_progress_holds_its_claim_for_the_handler_timeout_and_a_margin(env, sim, simulator):
    settings, store, claims, handle, submit = env
    op = sim.create(kind="documentai", running_s=60)
    op_id = submit.post("/operations", json={"url": op["url"]}).json["id"]
    seen = {}

    class Watching(OperationsApi):
        def cancel(self, ref, quota_project=None):  # runs while the claim is in progress
            snapshot = claims._doc(f"cancel-call-{op_id}").get().to_dict()
            seen["held_s"] = (snapshot["expires_at"] - snapshot["claimed_at"]).total_seconds()
            return super().cancel(ref, quota_project)

    service = HandleService(settings, store, claims, Watching(simulator.base_url), Publisher())
    assert service.handle({"type": "cancel", "id": op_id}) == "sent"
    assert seen["held_s"] == pytest.approx(settings.handler_timeout_s + CLAIM_MARGIN_S, abs=0.01)
