"""poll and handle services with real adapters: Firestore and Pub/Sub emulators, the simulator."""
from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from functions.adapters.firestore_claims import FirestoreClaims
from functions.adapters.firestore_store import FirestoreStore
from functions.adapters.notifier import Notifier
from functions.adapters.operations_api import OperationsApi
from functions.adapters.pubsub_publisher import Publisher
from functions.config import Settings
from functions.domain import events
from functions.services.handle import HandleService, PoisonMessage
from functions.services.poll import PollService
from functions.services.submit import SubmitService
from functions.simulator.client import SimulatorAdmin
from tests.integration.helpers import create_topics, pull_messages, pull_subscription


@dataclass
class Parts:
    settings: Settings
    store: FirestoreStore
    sim: SimulatorAdmin
    submit: SubmitService
    poll: PollService
    handle: HandleService

    def track(self, op: dict, **extra) -> str:
        record, _ = self.submit.submit({"url": op["url"], "policy": {"initial_delay_s": 0}, **extra})
        return record.id

    def poll_until_final(self, op_id: str, runs: int = 6):
        """Poll, making the operation due again between runs, until it is terminal."""
        for _ in range(runs):
            self.poll.run(budget_s=2)
            record = self.store.get(op_id)
            if record.state.terminal:
                return record
            self.store.update_fields(op_id, {"next_poll_at": record.submitted_at})
            time.sleep(0.5)  # let the simulated operation move on between runs
        return record

    def events(self, expect: int, timeout_s: float = 5) -> list[dict]:
        return pull_messages(self.settings.project, "events-tap", expect, timeout_s=timeout_s)


@pytest.fixture
def parts(emulators, simulator, project_id):
    settings = Settings(project=project_id, api_base_url=simulator.base_url, poll_budget_s=10,
                        notify_url_prefixes=("https://hooks.example.com/",))
    create_topics(project_id, "lro-events", "lro-commands")
    pull_subscription(project_id, "lro-events", "events-tap")
    store = FirestoreStore(project_id, settings.collection)
    publisher = Publisher()
    api = OperationsApi(simulator.base_url)
    sim = SimulatorAdmin(simulator.base_url)
    return Parts(settings, store, sim, SubmitService(settings, store, publisher),
                 PollService(settings, store, api, publisher),
                 HandleService(settings, store, FirestoreClaims(store, settings.claims_collection), api,
                               publisher, Notifier(publisher, settings)))


def test_vision_purge_answered_successful_is_recorded_succeeded_with_one_event_per_change(parts):
    op = parts.sim.create(kind="vision", type="PURGE_PRODUCTS", running_s=0.5, outcome="succeeded")
    op_id = parts.track(op)
    summary = parts.poll.run(budget_s=6)
    record = parts.store.get(op_id)
    assert (record.state.value, record.provider_state) == ("SUCCEEDED", "SUCCESSFUL")
    got = parts.events(expect=record.sequence)
    assert [(e["previous_state"], e["state"]) for e in got][-1] == ("RUNNING", "SUCCEEDED") or \
        [(e["previous_state"], e["state"]) for e in got] == [("PENDING", "SUCCEEDED")]
    assert [e["sequence"] for e in got] == list(range(1, record.sequence + 1))
    assert summary.published == record.sequence and summary.publish_errors == 0


def test_document_ai_success_with_a_human_review_error_is_succeeded_with_items_recorded(parts):
    op = parts.sim.create(kind="documentai", running_s=0.3, outcome="succeeded", items=4,
                          failed_items=1, human_review_errors=1)
    op_id = parts.track(op)
    parts.poll.run(budget_s=6)
    record = parts.store.get(op_id)
    assert record.state.value == "SUCCEEDED"
    assert record.items == {"total": 4, "failed": 1, "human_review_errors": 1}
    final = parts.events(expect=record.sequence)[-1]
    assert final["items"] == {**record.items, "first_failed": record.failed_items} and final["done"] is True


def test_an_operation_done_without_result_is_failed_with_unknown_not_a_silent_success(parts):
    op_id = parts.track(parts.sim.create(kind="generic", running_s=0, outcome="done_without_result"))
    parts.poll.run(budget_s=3)
    record = parts.store.get(op_id)
    assert record.state.value == "FAILED" and record.error["code"] == 2


def test_an_expired_operation_seen_before_becomes_expired(parts):
    op = parts.sim.create(kind="documentai", running_s=60)
    op_id = parts.track(op)
    parts.poll.run(budget_s=3)
    parts.sim.expire(op["name"], host=op["host"])
    parts.store.update_fields(op_id, {"next_poll_at": parts.store.get(op_id).submitted_at})
    parts.poll.run(budget_s=3)
    assert parts.store.get(op_id).state.value == "EXPIRED"


def test_transient_api_errors_keep_the_state_and_are_visible_on_the_record(parts):
    op = parts.sim.create(kind="documentai", running_s=60, faults=[{"status": 503, "times": 5}])
    op_id = parts.track(op)
    parts.poll.run(budget_s=3)
    record = parts.store.get(op_id)
    assert record.state.value == "PENDING"
    assert record.consecutive_errors >= 1 and record.last_error["code"] == 503


def test_quota_project_is_sent_and_no_credentials_go_to_the_local_api(parts):
    op = parts.sim.create(kind="vision", running_s=0)
    parts.track(op, quota_project="my-billing-project")
    parts.poll.run(budget_s=3)
    gets = [r for r in parts.sim.requests(200) if r["method"] == "GET" and op["name"] in r["path"]]
    assert gets and all(r["headers"].get("x-goog-user-project") == "my-billing-project" for r in gets)
    assert all("authorization" not in r["headers"] for r in gets)


def test_a_cancel_command_calls_the_api_once_and_the_poller_then_sees_cancelled(parts):
    op = parts.sim.create(kind="documentai", running_s=60, cancel_delay_s=0.2)
    op_id = parts.track(op)
    parts.poll.run(budget_s=2)
    command = events.cancel_command(op_id, "not needed", "test").data
    assert parts.handle.handle(command) == "sent"
    assert parts.handle.handle(command) == "duplicate"
    record = parts.poll_until_final(op_id)
    assert record.state.value == "CANCELLED" and record.cancel["outcome"] == "sent"
    assert parts.sim.stats()["cancels"].get(op["name"]) == 1


def test_cancelling_a_finished_operation_makes_no_api_call_and_is_recorded(parts):
    op = parts.sim.create(kind="vision", running_s=0)
    op_id = parts.track(op)
    parts.poll.run(budget_s=2)
    assert parts.handle.handle(events.cancel_command(op_id, None, None).data) == "already_finished"
    assert op["name"] not in parts.sim.stats()["cancels"]
    outcome_events = [e for e in parts.events(expect=3) if e["type"] == events.CANCEL_OUTCOME]
    assert outcome_events[0]["outcome"] == "already_finished"


def test_a_cancel_refused_by_the_api_as_finished_is_recorded_with_failed_precondition(parts):
    op = parts.sim.create(kind="documentai", running_s=0)
    op_id = parts.track(op)  # tracked but not yet polled: lrowatch still thinks it runs
    assert parts.handle.handle(events.cancel_command(op_id, None, None).data) == "already_finished"
    record = parts.store.get(op_id)
    assert record.cancel["api_status"]["status"] == "FAILED_PRECONDITION"
    assert parts.sim.stats()["cancels"].get(op["name"]) == 1


def test_a_cancel_for_an_api_without_cancel_is_recorded_unsupported_and_never_sent(parts):
    op = parts.sim.create(kind="generic", host="speech.googleapis.com", name="7612202767953098924", running_s=60)
    op_id = parts.track(op)
    assert parts.handle.handle(events.cancel_command(op_id, None, None).data) == "unsupported"
    assert parts.store.get(op_id).cancel["api_status"]["status"] == "FAILED_PRECONDITION"
    assert op["name"] not in parts.sim.stats()["cancels"]
    assert [e["outcome"] for e in parts.events(expect=1) if e["type"] == events.CANCEL_OUTCOME] == ["unsupported"]


def test_completion_is_recorded_once_and_notifies_the_notify_topic_once(parts):
    create_topics(parts.settings.project, "ocr-done")
    pull_subscription(parts.settings.project, "ocr-done", "ocr-done-tap")
    topic = f"projects/{parts.settings.project}/topics/ocr-done"
    op_id = parts.track(parts.sim.create(kind="vision", running_s=0), notify_topic=topic)
    parts.poll.run(budget_s=2)
    final = [e for e in parts.events(expect=1) if e["state"] == "SUCCEEDED"][0]
    for _ in range(5):
        parts.handle.handle(final)
    notes = pull_messages(parts.settings.project, "ocr-done-tap", expect=2, timeout_s=3)
    assert len(notes) == 1 and notes[0]["state"] == "SUCCEEDED"
    assert parts.store.get(op_id).completion["notify_topic"]["message_id"]


@pytest.mark.parametrize("data", [[1, 2], {"type": "nope"}, {"type": "lro.state_changed", "state": "X"},
                                  {"type": "cancel", "id": "not-an-id"}])
def test_poison_messages_are_refused_as_poison(parts, data):
    with pytest.raises(PoisonMessage):
        parts.handle.handle(data)


def test_outbox_events_left_by_a_crashed_run_are_published_by_the_next_run(parts, monkeypatch):
    op_id = parts.track(parts.sim.create(kind="vision", running_s=0))
    broken = Publisher()
    monkeypatch.setattr(broken, "publish", lambda topic, messages: [RuntimeError("down")] * len(messages))
    crashed = PollService(parts.settings, parts.store, OperationsApi(parts.sim.base_url), broken)
    assert crashed.run(budget_s=2).publish_errors >= 1
    assert parts.events(expect=1, timeout_s=1) == []
    # The next run republishes once the outbox grace has passed.
    monkeypatch.setattr("functions.services.outbox.OUTBOX_GRACE_S", 0)
    summary = parts.poll.run(budget_s=1)
    record = parts.store.get(op_id)
    got = parts.events(expect=record.sequence)
    assert summary.recovered == record.sequence
    assert [e["event_id"] for e in got] == [f"{op_id}-{n}" for n in range(1, record.sequence + 1)]
    # The recovered events are the recorded changes themselves, not placeholders.
    assert all(e["operation"]["id"] == op_id and e["type"] == "lro.state_changed" for e in got)
    assert got[-1]["state"] == record.state.value and got[-1]["done"] is True


def test_a_runs_worker_threads_carry_the_requests_trace(parts, monkeypatch):
    from functions import logs

    op_id = parts.track(parts.sim.create(kind="vision", running_s=0))
    traces = []  # the trace each call saw, on whichever thread made it (GETs start on the run's own)
    for obj, name in ((parts.poll._api, "start_gets"), (parts.store, "commit"), (parts.poll._publisher, "publish")):
        def spy(*args, __call=getattr(obj, name), __name=name, **kwargs):
            traces.append((__name, logs.current_trace.get()))
            return __call(*args, **kwargs)
        monkeypatch.setattr(obj, name, spy)
    with logs.traced({"X-Cloud-Trace-Context": "0af7651916cd43dd8448eb211c80319c/1;o=1"},
                     parts.settings.project) as trace:
        parts.poll.run(budget_s=2)
    assert parts.store.get(op_id).state.terminal
    assert {name for name, _ in traces} == {"start_gets", "commit", "publish"}
    assert all(seen == trace for _, seen in traces), traces


def test_a_write_race_in_a_group_commit_decides_again_only_the_raced_operation(parts, monkeypatch):
    ids = [parts.track(parts.sim.create(kind="vision", running_s=0)) for _ in range(3)]
    group_commit, reread = parts.store.commit, parts.store.get_versioned
    raced, reads = [], []

    def racing_commit(items):
        if not raced:  # someone else (handle, say) writes one of the records meanwhile
            raced.append(items[0][0].record.id)
            parts.store.update_fields(raced[0], {"correlation_id": "written meanwhile"})
        return group_commit(items)

    monkeypatch.setattr(parts.store, "commit", racing_commit)
    monkeypatch.setattr(parts.store, "get_versioned", lambda op_id: reads.append(op_id) or reread(op_id))
    summary = parts.poll.run(budget_s=2)
    records = {i: parts.store.get(i) for i in ids}
    assert all(r.state.terminal and r.sequence == 1 for r in records.values())
    assert reads == raced  # only the raced operation was read again and decided again
    assert records[raced[0]].correlation_id == "written meanwhile"  # the other writer's change stands
    assert summary.changed == 3
    assert sorted(e["event_id"] for e in parts.events(expect=3)) == sorted(f"{i}-1" for i in ids)
