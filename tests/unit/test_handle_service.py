"""HandleService with in-memory fakes: what each message does, once."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from functions.adapters.operations_api import CancelResult
from functions.config import Settings
from functions.domain import events
from functions.domain.errors import ApiUnavailable
from functions.domain.states import State
from functions.services.handle import (
    CLAIM_MARGIN_S,
    ConflictingEvent,
    EffectBusy,
    HandleService,
    RecordBehind,
    UnknownOperation,
    UnknownType,
    UnreadableMessage,
)
from tests.unit.factories import NOW, make_record


class FakeClaims:
    def __init__(self):
        self.docs: dict[str, dict] = {}

    def claim(self, key, now, expires_s):
        doc = self.docs.get(key)
        if doc is None or (doc["status"] == "IN_PROGRESS" and doc["expires_at"] <= now):
            self.docs[key] = {"status": "IN_PROGRESS", "expires_at": now + timedelta(seconds=expires_s)}
            return "acquired"
        return "done" if doc["status"] == "COMPLETED" else "busy"

    def complete(self, key, result, now, keep_days):
        self.docs[key] = {"status": "COMPLETED", "result": result, "expires_at": now + timedelta(days=keep_days)}

    def release(self, key):
        self.docs.pop(key, None)

    def result(self, key):
        doc = self.docs.get(key)
        return doc["result"] if doc and doc["status"] == "COMPLETED" else None

    def get(self, key):
        return self.docs.get(key)


class FakeStore:
    def __init__(self, *records):
        self.records = {r.id: r for r in records}
        self.writes: list[dict] = []
        self.fail_next_update = False

    def get(self, operation_id):
        return self.records.get(operation_id)

    def update_fields(self, operation_id, changes):
        if self.fail_next_update:
            self.fail_next_update = False
            raise ApiUnavailable("store down")  # any transient error
        self.writes.append(changes)
        import json

        record = self.records[operation_id]
        decoded = {k: json.loads(v) if k in ("completion", "cancel") else v for k, v in changes.items()}
        self.records[operation_id] = record.with_changes(**decoded)


class FakePublisher:
    def __init__(self):
        self.sent: list[tuple[str, events.Message]] = []

    def publish_one(self, topic, message):
        self.sent.append((topic, message))
        return str(len(self.sent))


class FakeNotifier:
    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    def channels(self, record):
        return [c for c in ("notify_topic", "notify_url") if getattr(record, c)]

    def send(self, channel, record, event_id):
        self.sent.append((channel, event_id))
        return {"delivered": True}


class FakeApi:
    def __init__(self, *answers):
        self.answers = list(answers) or [CancelResult("sent", {"code": 200})]
        self.calls = 0

    def cancel(self, ref, quota_project=None):
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _service(*records, api=None):
    store, claims, publisher, notifier = FakeStore(*records), FakeClaims(), FakePublisher(), FakeNotifier()
    service = HandleService(Settings(project="p"), store, claims, api or FakeApi(), publisher, notifier,
                            clock=lambda: NOW + timedelta(hours=1))
    return service, store, claims, publisher, notifier


def _finished(state=State.SUCCEEDED, sequence=2, **changes):
    return make_record(state=state, sequence=sequence, done=True, completed_at=NOW + timedelta(minutes=30),
                       notify_topic="projects/my-project/topics/done", notify_url="https://hooks.example.com/x",
                       **changes)


def _event(record, sequence=None, state=None):
    data = events.state_changed(record, "RUNNING", NOW).data
    if sequence is not None:
        data.update(sequence=sequence, event_id=events.event_id(record.id, sequence))
    if state is not None:
        data["state"] = state
    return data


def test_a_terminal_event_completes_the_record_and_notifies_each_channel_once():
    record = _finished()
    service, store, _, _, notifier = _service(record)
    assert service.handle(_event(record)) == "completed"
    completion = store.records[record.id].completion
    assert completion["event_id"] == f"{record.id}-2" and completion["duration_s"] == 1800.0
    assert completion["notify_topic"] == {"delivered": True} and completion["notify_url"] == {"delivered": True}
    assert notifier.sent == [("notify_topic", f"{record.id}-2"), ("notify_url", f"{record.id}-2")]


def test_the_completion_counts_the_duration_from_the_start_its_api_reported():
    record = _finished().with_changes(started_at=NOW - timedelta(seconds=600))
    service, store, *_ = _service(record)
    service.handle(_event(record))
    assert store.records[record.id].completion["duration_s"] == 2400.0  # 1,800 s tracked, begun 600 s before


def test_the_same_terminal_event_delivered_five_times_completes_once():
    record = _finished()
    service, store, _, _, notifier = _service(record)
    assert [service.handle(_event(record)) for _ in range(5)] == ["completed"] + ["duplicate"] * 4
    assert len(notifier.sent) == 2 and len(store.writes) == 1


def test_a_completion_already_on_the_record_is_not_redone_after_its_claims_expired():
    record = _finished()
    service, store, claims, _, notifier = _service(record)
    service.handle(_event(record))
    claims.docs.clear()  # Firestore TTL deleted them
    assert service.handle(_event(record)) == "duplicate"
    assert len(notifier.sent) == 2 and len(store.writes) == 1


def test_a_failed_record_write_is_retried_on_redelivery_without_notifying_again():
    record = _finished()
    service, store, _, _, notifier = _service(record)
    store.fail_next_update = True
    with pytest.raises(ApiUnavailable):
        service.handle(_event(record))
    assert service.handle(_event(record)) == "completed"
    assert len(notifier.sent) == 2 and store.records[record.id].completion is not None


def test_non_terminal_and_stale_events_change_nothing():
    record = _finished(sequence=3)
    service, store, _, _, notifier = _service(record)
    assert service.handle(_event(record, sequence=2, state="RUNNING")) == "ignored"
    assert service.handle(_event(record, sequence=1, state="FAILED")) == "stale"
    assert store.writes == [] and notifier.sent == []


def test_a_terminal_event_ahead_of_the_record_is_retried_later():
    record = make_record(state=State.RUNNING, sequence=1)
    service, *_ = _service(record)
    with pytest.raises(RecordBehind):
        service.handle(_event(record.with_changes(state=State.SUCCEEDED, sequence=2)))


def test_a_terminal_event_contradicting_the_record_is_poison():
    record = _finished(state=State.FAILED)
    service, *_ = _service(record)
    with pytest.raises(ConflictingEvent):
        service.handle(_event(record, state="SUCCEEDED"))


def test_a_failed_operation_is_logged_once_at_error_with_alert_fields(caplog):
    error = {"code": 3, "message": "bad input", "details": [{"@type": "x", "reason": "r"}]}
    record = _finished(state=State.FAILED, error=error, labels={"team": "ocr"})
    service, *_ = _service(record)
    with caplog.at_level(logging.INFO, logger="functions.services.handle"):
        service.handle(_event(record))
        service.handle(_event(record))
    entries = [r for r in caplog.records if getattr(r, "event", None) == "lro.terminal"]
    assert len(entries) == 1 and entries[0].levelno == logging.ERROR
    entry = entries[0]
    assert (entry.state, entry.service, entry.operation, entry.labels, entry.error) == (
        "FAILED", record.service, record.name, {"team": "ocr"}, error)


def test_a_succeeded_or_cancelled_operation_is_logged_below_error(caplog):
    for state in (State.SUCCEEDED, State.CANCELLED):
        record = _finished(state=state)
        service, *_ = _service(record)
        with caplog.at_level(logging.INFO, logger="functions.services.handle"):
            service.handle(_event(record))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_cancel_calls_the_api_once_records_and_publishes_the_outcome():
    record = make_record(state=State.RUNNING, sequence=1)
    api = FakeApi()
    service, store, _, publisher, _ = _service(record, api=api)
    command = events.cancel_command(record.id, "not needed", "me").data
    assert [service.handle(command) for _ in range(3)] == ["sent", "duplicate", "duplicate"]
    assert api.calls == 1
    assert store.records[record.id].cancel["outcome"] == "sent"
    assert [m.data["type"] for _, m in publisher.sent] == [events.CANCEL_OUTCOME]
    assert publisher.sent[0][1].data["outcome"] == "sent" and publisher.sent[0][0] == "projects/p/topics/lro-events"


def test_a_cancel_while_another_delivery_holds_it_is_retried_not_repeated():
    record = make_record(state=State.RUNNING, sequence=1)
    service, _, claims, _, _ = _service(record)
    claims.claim(f"cancel-{record.id}", NOW + timedelta(hours=1), 300)
    with pytest.raises(EffectBusy):
        service.handle(events.cancel_command(record.id, None, None).data)


def test_cancelling_a_finished_operation_makes_no_api_call():
    record = _finished()
    api = FakeApi()
    service, store, *_ = _service(record, api=api)
    assert service.handle(events.cancel_command(record.id, None, None).data) == "already_finished"
    assert api.calls == 0 and store.records[record.id].cancel["api_status"] is None


def test_a_cancel_for_an_api_without_cancel_is_never_sent_and_not_called_a_refusal():
    record = make_record(name="operations/7612202767953098924", service="speech", state=State.RUNNING, sequence=1)
    api = FakeApi()
    service, store, _, publisher, _ = _service(record, api=api)
    assert service.handle(events.cancel_command(record.id, None, None).data) == "unsupported"
    assert api.calls == 0
    status = store.records[record.id].cancel["api_status"]
    assert status["status"] == "FAILED_PRECONDITION" and "publishes no :cancel" in status["message"]
    assert publisher.sent[0][1].data["outcome"] == "unsupported"


def test_an_unavailable_api_releases_the_cancel_so_a_redelivery_sends_it():
    record = make_record(state=State.RUNNING, sequence=1)
    api = FakeApi(ApiUnavailable("503"), CancelResult("sent", {"code": 200}))
    service, *_ = _service(record, api=api)
    command = events.cancel_command(record.id, None, None).data
    with pytest.raises(ApiUnavailable):
        service.handle(command)
    assert service.handle(command) == "sent" and api.calls == 2


def test_a_cancel_outcome_recorded_long_ago_is_not_sent_again():
    record = make_record(state=State.RUNNING, sequence=1, cancel={"outcome": "sent"})
    api = FakeApi()
    service, *_ = _service(record, api=api)
    assert service.handle(events.cancel_command(record.id, None, None).data) == "duplicate"
    assert api.calls == 0


@pytest.mark.parametrize("first", ["refused", "not_found"])
def test_a_new_request_after_a_refused_or_not_found_cancel_calls_the_api_once_more(first):
    record = make_record(state=State.RUNNING, sequence=1)
    api = FakeApi(CancelResult(first, {"code": 403}), CancelResult("sent", {"code": 200}))
    service, store, _, publisher, _ = _service(record, api=api)
    one = events.cancel_command(record.id, None, "a@example.com", request_id="r1").data
    two = events.cancel_command(record.id, None, "b@example.com", request_id="r2").data
    assert [service.handle(one), service.handle(one)] == [first, "duplicate"]  # a redelivery
    assert [service.handle(two), service.handle(two)] == ["sent", "duplicate"]
    assert api.calls == 2
    cancel = store.records[record.id].cancel
    assert (cancel["outcome"], cancel["attempt"], cancel["requested_by"]) == ("sent", 2, "b@example.com")
    assert [m.data["event_id"] for _, m in publisher.sent] == [f"{record.id}-cancel", f"{record.id}-cancel-2"]
    assert [m.data["attempt"] for _, m in publisher.sent] == [1, 2]


def test_a_new_request_after_a_sent_cancel_makes_no_second_call():
    record = make_record(state=State.RUNNING, sequence=1)
    api = FakeApi()
    service, *_ = _service(record, api=api)
    assert service.handle(events.cancel_command(record.id, None, None, request_id="r1").data) == "sent"
    assert service.handle(events.cancel_command(record.id, None, None, request_id="r2").data) == "duplicate"
    assert api.calls == 1


def test_a_malformed_request_id_is_unreadable():
    record = make_record(state=State.RUNNING, sequence=1)
    service, *_ = _service(record)
    with pytest.raises(UnreadableMessage):
        service.handle({"type": "cancel", "id": record.id, "request_id": "../x"})


def test_claims_expire_after_the_configured_handler_timeout_and_a_margin():
    record = make_record(state=State.RUNNING, sequence=1)
    claims, seen = FakeClaims(), []
    claim = claims.claim
    claims.claim = lambda key, now, expires_s: seen.append(expires_s) or claim(key, now, expires_s)
    service = HandleService(Settings(project="p", handler_timeout_s=300), FakeStore(record), claims, FakeApi(),
                            FakePublisher(), FakeNotifier(), clock=lambda: NOW)
    service.handle(events.cancel_command(record.id, None, None).data)
    assert seen and set(seen) == {300 + CLAIM_MARGIN_S}


def test_a_cancel_by_name_and_service_finds_the_operation():
    record = make_record(state=State.RUNNING, sequence=1)
    service, *_ = _service(record)
    assert service.handle({"type": "cancel", "name": record.name, "service": record.service}) == "sent"


@pytest.mark.parametrize("data, error", [
    ([1, 2], UnreadableMessage),
    ("text", UnreadableMessage),
    ({"type": "nope"}, UnknownType),
    ({}, UnknownType),
    ({"type": "lro.state_changed", "operation": {"id": "a" * 32}, "state": "X", "sequence": 1}, UnreadableMessage),
    ({"type": "lro.state_changed", "operation": {"id": "a" * 32}, "state": "FAILED", "sequence": "1"},
     UnreadableMessage),
    ({"type": "lro.state_changed", "state": "FAILED", "sequence": 1}, UnreadableMessage),
    ({"type": "cancel", "id": "../../evil"}, UnreadableMessage),
    ({"type": "cancel", "name": "not a name", "service": "vision"}, UnreadableMessage),
    ({"type": "cancel", "id": "a" * 32}, UnknownOperation),
])
def test_poison_messages_raise_a_poison_error_naming_their_failure_mode(data, error):
    service, store, claims, *_ = _service()
    with pytest.raises(error):
        service.handle(data)
    assert store.writes == [] and claims.docs == {}  # a poison claim is released


def test_our_own_outcome_and_notification_messages_are_skipped():
    service, *_ = _service()
    assert service.handle({"type": events.CANCEL_OUTCOME}) == "skipped"
    assert service.handle({"type": "lro.notification"}) == "skipped"
