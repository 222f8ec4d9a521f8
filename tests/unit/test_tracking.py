"""tracking.after_poll: what one poll result does to a record."""
from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.domain import events
from functions.domain.policy import Policy
from functions.domain.record import RECORD_JSON_LIMIT
from functions.domain.states import TERMINAL, State
from functions.domain.tracking import (
    CODE_DEADLINE_EXCEEDED,
    CODE_NOT_FOUND,
    ApiFailure,
    Rules,
    after_poll,
    timed_out,
)
from tests.unit.factories import (
    NOW,
    VISION_NAME,
    VISION_SERVICE,
    docai_metadata,
    docai_status,
    make_record,
    not_found,
    operation,
    permanent,
    transient,
    vision_metadata,
)

LATER = NOW + timedelta(seconds=10)


def running():
    return operation(done=False, metadata=docai_metadata("RUNNING", progressPercent=40))


def succeeded():
    return operation(done=True, metadata=docai_metadata("SUCCEEDED"), response={"@type": "x"})


# ---- state changes and events ------------------------------------------------------


def test_first_answer_moves_pending_to_running_with_one_event():
    record = make_record()
    decision = after_poll(record, running(), LATER)
    assert decision.changed
    assert decision.record.state is State.RUNNING
    assert decision.record.sequence == 1
    assert decision.event.data["event_id"] == f"{record.id}-1"
    assert decision.event.data["previous_state"] == "PENDING"
    assert decision.event.data["state"] == "RUNNING"
    assert decision.command is None


def test_state_change_bumps_the_sequence_by_exactly_one():
    record = make_record(state=State.RUNNING, sequence=4, seen=True, polls=3)
    decision = after_poll(record, succeeded(), LATER)
    assert decision.record.sequence == 5
    assert decision.event.data["sequence"] == 5
    assert decision.event.data["event_id"] == f"{record.id}-5"
    assert decision.event.ordering_key == record.id


def test_same_state_produces_no_event_but_records_the_poll():
    record = make_record(state=State.RUNNING, sequence=1, seen=True, polls=2)
    decision = after_poll(record, running(), LATER)
    assert not decision.changed
    assert decision.event is None
    assert decision.record.sequence == 1
    assert decision.record.polls == 3
    assert decision.record.last_polled_at == LATER
    assert decision.record.progress_percent == 40


def test_success_is_terminal_done_and_completed():
    record = make_record(state=State.RUNNING, sequence=1, seen=True)
    decision = after_poll(record, succeeded(), LATER)
    final = decision.record
    assert final.state is State.SUCCEEDED
    assert final.done is True
    assert final.completed_at == LATER
    assert final.expire_at == LATER + timedelta(days=Rules().retention_days)
    assert final.error is None
    assert final.progress_percent == 100
    assert decision.event.data["done"] is True
    assert decision.event.attributes["done"] == "true"


def test_pending_straight_to_succeeded_is_one_event():
    decision = after_poll(make_record(), succeeded(), LATER)
    assert decision.record.state is State.SUCCEEDED
    assert decision.record.sequence == 1
    assert decision.event.data["previous_state"] == "PENDING"


def test_failure_keeps_the_api_error():
    record = make_record(state=State.RUNNING, sequence=1, seen=True)
    decision = after_poll(record, operation(done=True, error={"code": 3, "message": "bad input"}), LATER)
    assert decision.record.state is State.FAILED
    assert decision.record.error == {"code": 3, "message": "bad input"}
    assert decision.event.data["error"] == {"code": 3, "message": "bad input"}


def test_cancelled_operation_is_cancelled():
    record = make_record(state=State.CANCELLING, sequence=2, seen=True)
    decision = after_poll(record, operation(done=True, error={"code": 1, "message": "cancelled"}), LATER)
    assert decision.record.state is State.CANCELLED
    assert decision.event.data["previous_state"] == "CANCELLING"


def test_running_observed_after_cancelling_does_not_move_backwards():
    record = make_record(state=State.CANCELLING, sequence=2, seen=True)
    decision = after_poll(record, running(), LATER)
    assert decision.record.state is State.CANCELLING
    assert decision.event is None


def test_running_error_is_cleared_while_not_failed():
    record = make_record(state=State.RUNNING, seen=True, error={"code": 2, "message": "old"})
    assert after_poll(record, running(), LATER).record.error is None


def test_answer_resets_consecutive_errors():
    record = make_record(state=State.RUNNING, seen=True, consecutive_errors=3, last_error={"code": 503})
    updated = after_poll(record, running(), LATER).record
    assert updated.consecutive_errors == 0
    assert updated.last_error is None


def test_answer_marks_the_operation_seen_and_releases_the_lease():
    record = make_record(lease_owner="poller-1")
    updated = after_poll(record, running(), LATER).record
    assert updated.seen is True
    assert updated.lease_owner is None
    assert updated.updated_at == LATER


def test_next_poll_follows_the_polling_schedule():
    record = make_record(state=State.RUNNING, seen=True, polls=2,
                         policy=Policy(initial_delay_s=5, multiplier=2, max_delay_s=100, jitter=0))
    updated = after_poll(record, running(), LATER).record
    assert updated.next_poll_at == LATER + timedelta(seconds=5 * 2 ** 3)


def test_items_and_provider_state_are_recorded():
    metadata = docai_metadata("SUCCEEDED", [docai_status(), docai_status(code=3, n=1, review_state="ERROR")])
    decision = after_poll(make_record(state=State.RUNNING, seen=True),
                          operation(done=True, metadata=metadata, response={}), LATER)
    assert decision.record.items == {"total": 2, "failed": 1, "human_review_errors": 1}
    assert decision.record.provider_state == "SUCCEEDED"
    failed = {"index": 1, "input": "gs://in/doc-1.pdf", "status": {"code": 3, "message": "item failed"},
              "human_review_status": {"state": "ERROR"}}
    assert decision.record.failed_items == [failed]
    assert decision.event.data["items"] == {**decision.record.items, "first_failed": [failed]}


def test_vision_purge_answered_successful_ends_succeeded():
    record = make_record(name=VISION_NAME, service=VISION_SERVICE, state=State.RUNNING, seen=True, sequence=1)
    decision = after_poll(record, operation(done=True, metadata=vision_metadata("SUCCESSFUL"), response={}), LATER)
    assert decision.record.state is State.SUCCEEDED
    assert decision.record.provider_state == "SUCCESSFUL"


# ---- payload size --------------------------------------------------------------


def test_oversized_metadata_is_dropped_and_flagged_truncated():
    big = docai_metadata("RUNNING", blob="x" * (RECORD_JSON_LIMIT + 10))
    decision = after_poll(make_record(), operation(done=False, metadata=big), LATER)
    assert decision.record.truncated is True
    assert decision.record.metadata is None
    assert decision.record.provider_state == "RUNNING"  # read before dropping
    assert decision.event.data["truncated"] is True
    assert decision.event.data["metadata"] == {}


def test_oversized_response_is_dropped_and_flagged_truncated():
    big = {"blob": "x" * (RECORD_JSON_LIMIT + 10)}
    decision = after_poll(make_record(), operation(done=True, response=big), LATER)
    assert decision.record.state is State.SUCCEEDED
    assert decision.record.response is None and decision.record.truncated is True


def test_payload_that_fits_is_kept():
    decision = after_poll(make_record(), operation(done=True, response={"ok": 1}), LATER)
    assert decision.record.response == {"ok": 1}
    assert decision.record.truncated is False


# ---- transient failures ----------------------------------------------------------


def test_transient_failure_keeps_the_state_and_counts_errors():
    record = make_record(state=State.RUNNING, sequence=1, seen=True, consecutive_errors=1)
    decision = after_poll(record, transient(503), LATER, rng=random.Random(0))
    updated = decision.record
    assert decision.event is None
    assert updated.state is State.RUNNING
    assert updated.sequence == 1
    assert updated.consecutive_errors == 2
    assert updated.last_error["code"] == 503
    assert updated.last_error["kind"] == "transient"
    assert updated.last_error["at"] == LATER.isoformat()
    assert updated.last_polled_at == LATER
    assert updated.polls == record.polls


def test_transient_failure_schedules_a_retry_on_the_retry_schedule():
    record = make_record(state=State.RUNNING, seen=True, consecutive_errors=2)
    updated = after_poll(record, transient(), LATER, rng=random.Random(0)).record
    delay = (updated.next_poll_at - LATER).total_seconds()
    assert 4 * 0.8 <= delay <= 4 * 1.2  # third consecutive error: 4 s ± 20 %


def test_transient_failure_honours_retry_after():
    record = make_record(state=State.RUNNING, seen=True)
    updated = after_poll(record, transient(429, retry_after_s=90), LATER).record
    assert updated.next_poll_at == LATER + timedelta(seconds=90)


@given(st.integers(0, 50))
def test_transient_failures_never_change_the_state(errors):
    record = make_record(state=State.RUNNING, sequence=1, seen=True, consecutive_errors=errors)
    decision = after_poll(record, transient(), LATER, rng=random.Random(errors))
    assert decision.record.state is State.RUNNING and decision.event is None
    assert decision.record.consecutive_errors == errors + 1


# ---- not found -----------------------------------------------------------------


def test_404_on_an_operation_seen_before_is_expired():
    record = make_record(state=State.RUNNING, sequence=1, seen=True)
    decision = after_poll(record, not_found(), LATER)
    assert decision.record.state is State.EXPIRED
    assert decision.record.error["code"] == CODE_NOT_FOUND
    assert decision.record.error["status"] == "NOT_FOUND"
    assert decision.record.done is True
    assert decision.event.data["state"] == "EXPIRED"
    assert decision.event.data["sequence"] == 2


def test_404_never_seen_within_grace_is_retried():
    record = make_record()
    decision = after_poll(record, not_found(), NOW + timedelta(seconds=60), Rules(not_found_grace_s=300))
    assert decision.record.state is State.PENDING
    assert decision.event is None
    assert decision.record.consecutive_errors == 1
    assert decision.record.last_error["kind"] == "not_found"
    assert decision.record.next_poll_at > NOW + timedelta(seconds=60)


def test_404_never_seen_after_grace_is_expired():
    record = make_record()
    decision = after_poll(record, not_found(), NOW + timedelta(seconds=300), Rules(not_found_grace_s=300))
    assert decision.record.state is State.EXPIRED
    assert decision.event.data["previous_state"] == "PENDING"


# ---- permanent errors ------------------------------------------------------------


def test_permanent_errors_fail_after_max_permanent_errors():
    rules = Rules(max_permanent_errors=3)
    record = make_record(state=State.RUNNING, sequence=1, seen=True)
    states = []
    for _ in range(3):
        decision = after_poll(record, permanent(403), LATER, rules)
        record = decision.record
        states.append(record.state)
    assert states == [State.RUNNING, State.RUNNING, State.FAILED]
    assert record.error == {"code": 403, "status": "PERMISSION_DENIED", "message": "denied"}
    assert record.sequence == 2
    assert decision.event.data["state"] == "FAILED"


def test_transient_errors_between_permanent_ones_neither_count_nor_reset_them():
    rules = Rules(max_permanent_errors=2)
    record = make_record(state=State.RUNNING, sequence=1, seen=True)
    record = after_poll(record, permanent(403), LATER, rules).record
    record = after_poll(record, transient(), LATER, rules).record
    assert (record.state, record.permanent_errors, record.consecutive_errors) == (State.RUNNING, 1, 2)
    assert after_poll(record, permanent(403), LATER, rules).record.state is State.FAILED


def test_a_good_answer_resets_the_permanent_error_count():
    record = make_record(state=State.RUNNING, seen=True, permanent_errors=4, consecutive_errors=4)
    record = after_poll(record, running(), LATER).record
    assert (record.permanent_errors, record.consecutive_errors) == (0, 0)
    assert after_poll(record, permanent(403), LATER, Rules(max_permanent_errors=5)).record.state is State.RUNNING


def test_transient_errors_never_count_towards_failing():
    record = make_record(state=State.RUNNING, seen=True, consecutive_errors=100)
    assert after_poll(record, transient(), LATER, Rules(max_permanent_errors=1)).record.state is State.RUNNING


# ---- deadline --------------------------------------------------------------------


def test_deadline_passed_while_running_is_timed_out_without_cancel():
    record = make_record(state=State.RUNNING, sequence=1, seen=True, deadline_s=5)
    decision = after_poll(record, running(), LATER)
    assert decision.record.state is State.TIMED_OUT
    assert decision.record.error["code"] == CODE_DEADLINE_EXCEEDED
    assert decision.record.sequence == 2
    assert decision.event.data["state"] == "TIMED_OUT"
    assert decision.command is None


def test_deadline_passed_with_cancel_on_deadline_sends_a_cancel_command():
    record = make_record(state=State.RUNNING, sequence=1, seen=True, deadline_s=5,
                         policy=Policy(cancel_on_deadline=True, jitter=0))
    decision = after_poll(record, running(), LATER)
    assert decision.record.state is State.TIMED_OUT
    assert decision.command is not None
    assert decision.command.data["type"] == events.CANCEL_COMMAND
    assert decision.command.data["id"] == record.id


def test_deadline_passed_during_transient_errors_is_timed_out():
    record = make_record(state=State.RUNNING, sequence=1, seen=True, deadline_s=5)
    assert after_poll(record, transient(), LATER).record.state is State.TIMED_OUT


def test_operation_finishing_at_the_deadline_is_succeeded_not_timed_out():
    record = make_record(state=State.RUNNING, sequence=1, seen=True, deadline_s=5,
                         policy=Policy(cancel_on_deadline=True, jitter=0))
    decision = after_poll(record, succeeded(), LATER)
    assert decision.record.state is State.SUCCEEDED
    assert decision.command is None


def test_deadline_passed_on_a_first_poll_gives_one_event_with_a_contiguous_sequence():
    record = make_record(deadline_s=5)
    decision = after_poll(record, running(), LATER)
    assert decision.record.state is State.TIMED_OUT
    assert decision.record.sequence == 1
    assert decision.event.data["sequence"] == 1
    assert decision.event.data["previous_state"] == "PENDING"
    assert decision.record.provider_state == "RUNNING"  # what the poll saw is still recorded


def test_timed_out_directly_is_terminal_with_one_event():
    record = make_record(state=State.RUNNING, sequence=3)
    decision = timed_out(record, LATER)
    assert decision.record.state is State.TIMED_OUT
    assert decision.record.sequence == 4
    assert decision.record.completed_at == LATER
    assert decision.event.data["event_id"] == f"{record.id}-4"


def test_deadline_not_yet_passed_keeps_running():
    record = make_record(state=State.RUNNING, seen=True, deadline_s=3600)
    assert after_poll(record, running(), LATER).record.state is State.RUNNING


# ---- terminal records --------------------------------------------------------------


@pytest.mark.parametrize("state", sorted(TERMINAL, key=lambda s: s.value))
@pytest.mark.parametrize("result", [running(), succeeded(), transient(), not_found(), permanent()],
                         ids=["running", "succeeded", "transient", "not_found", "permanent"])
def test_terminal_record_is_never_changed(state, result):
    record = make_record(state=state, sequence=3, seen=True, done=True, deadline_s=1)
    decision = after_poll(record, result, LATER + timedelta(days=1))
    assert decision.record is record
    assert decision.event is None and decision.command is None


# ---- sequences -----------------------------------------------------------------------

RESULTS = st.sampled_from([
    ("running", operation(done=False)),
    ("cancelling", operation(done=False, metadata=docai_metadata("CANCELLING"))),
    ("succeeded", operation(done=True, response={})),
    ("failed", operation(done=True, error={"code": 9})),
    ("transient", transient()),
    ("not_found", not_found()),
    ("permanent", permanent()),
])


@given(st.lists(RESULTS, max_size=15), st.sampled_from([100, 10**6]))
def test_any_series_of_polls_yields_one_event_per_state_change_with_contiguous_sequences(results, deadline_s):
    record = make_record(deadline_s=deadline_s)
    now = NOW
    announced = []
    for _, result in results:
        now += timedelta(seconds=30)
        before = record
        decision = after_poll(record, result, now, rng=random.Random(0))
        record = decision.record
        assert (decision.event is not None) == (record.state != before.state)
        assert record.state.rank >= before.state.rank
        if before.state.terminal:
            assert record is before
        if decision.event is not None:
            announced.append(decision.event.data["sequence"])
            assert decision.event.data["event_id"] == f"{record.id}-{record.sequence}"
    assert announced == list(range(1, len(announced) + 1))
    assert record.sequence == len(announced)


def test_api_failure_is_a_frozen_value():
    failure = ApiFailure("transient", {"code": 503})
    with pytest.raises(AttributeError):
        failure.kind = "permanent"
