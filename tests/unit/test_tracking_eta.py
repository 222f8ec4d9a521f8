"""tracking.after_poll keeps the completion estimate and the failed items on the record."""
from __future__ import annotations

from datetime import timedelta

from functions.domain.adaptive import DurationStats
from functions.domain.record import rfc3339
from functions.domain.states import State
from functions.domain.tracking import after_poll
from tests.unit.factories import NOW, docai_metadata, docai_status, make_record, operation, transient


def progressing(percent: int) -> dict:
    return operation(done=False, metadata=docai_metadata("RUNNING", progressPercent=percent))


def history(median_s: float = 600.0) -> DurationStats:
    stats = DurationStats()
    for factor in (0.6, 0.8, 0.9, 1.0, 1.0, 1.1, 1.2, 1.4, 1.6, 2.0, 0.7, 1.3):
        stats.add(median_s * factor)
    return stats


def at(seconds: float):
    return NOW + timedelta(seconds=seconds)


def test_a_running_operation_with_progress_gets_an_eta_from_its_trend():
    record = after_poll(make_record(), progressing(10), at(100)).record
    assert record.eta is None  # one sample is not a trend
    record = after_poll(record, progressing(20), at(200)).record
    assert record.state is State.RUNNING
    assert record.eta_basis == "progress"
    assert record.eta == at(1000)  # 10 % per 100 s, 80 % to go
    assert record.eta_low < record.eta < record.eta_high
    assert record.to_json()["eta"] == rfc3339(record.eta)


def test_learnt_durations_give_an_eta_without_progress():
    record = after_poll(make_record(), operation(done=False, metadata=docai_metadata()), at(60), stats=history()).record
    assert record.eta_basis == "history"
    assert record.eta > at(60)


def test_progress_and_history_blend():
    record = after_poll(make_record(), progressing(10), at(100), stats=history()).record
    record = after_poll(record, progressing(20), at(200), stats=history()).record
    assert record.eta_basis == "both"


def test_nothing_to_go_on_leaves_the_eta_out():
    decision = after_poll(make_record(), operation(done=False, metadata=docai_metadata()), at(60))
    assert decision.record.eta is None
    assert "eta" not in decision.record.to_json()
    assert "eta" not in decision.event.data


def test_the_event_carries_the_eta_it_was_emitted_with():
    decision = after_poll(make_record(), operation(done=False, metadata=docai_metadata()), at(60), stats=history())
    assert decision.event.data["eta"] == decision.record.to_json()["eta"]
    assert decision.event.data["eta_basis"] == "history"
    assert {"eta_low", "eta_high"} <= set(decision.event.data)


def test_a_failed_get_keeps_the_last_estimate():
    record = after_poll(make_record(), progressing(10), at(100)).record
    record = after_poll(record, progressing(20), at(200)).record
    after = after_poll(record, transient(), at(210)).record
    assert (after.eta, after.eta_basis, after.progress_samples) == (record.eta, "progress", record.progress_samples)


def test_a_finished_operation_has_no_eta_and_no_samples():
    record = after_poll(make_record(), progressing(10), at(100)).record
    record = after_poll(record, progressing(20), at(200)).record
    done = after_poll(record, operation(done=True, metadata=docai_metadata("SUCCEEDED"), response={}), at(300))
    assert done.record.state is State.SUCCEEDED
    assert (done.record.eta, done.record.eta_basis, done.record.progress_samples) == (None, None, None)
    assert "eta" not in done.event.data


def test_a_timed_out_operation_drops_its_eta():
    record = after_poll(make_record(deadline_s=150), progressing(10), at(100)).record
    record = after_poll(record, progressing(20), at(120)).record
    assert record.eta is not None
    timed_out = after_poll(record, progressing(30), at(200)).record
    assert timed_out.state is State.TIMED_OUT and timed_out.eta is None


def test_failed_items_are_kept_and_replaced_by_each_answer():
    statuses = [docai_status(code=3, n=0), docai_status(n=1)]
    record = after_poll(make_record(), operation(done=False, metadata=docai_metadata(statuses=statuses)), at(10)).record
    assert [i["input"] for i in record.failed_items] == ["gs://in/doc-0.pdf"]
    statuses = [docai_status(n=0), docai_status(n=1)]
    record = after_poll(record, operation(done=False, metadata=docai_metadata(statuses=statuses)), at(20)).record
    assert record.failed_items is None
    assert record.items == {"total": 2, "failed": 0}


def test_the_record_round_trips_its_new_fields_through_firestore_form():
    record = after_poll(make_record(), progressing(10), at(100)).record
    record = after_poll(record, progressing(20), at(200), stats=history()).record
    statuses = [docai_status(code=3, n=0)]
    record = record.with_changes(failed_items=[{"index": 0, "input": "gs://x", "status": {"code": 3, "message": ""}}],
                                 items={"total": len(statuses), "failed": 1})
    assert type(record).from_doc(record.to_doc()) == record


def test_an_operation_whose_progress_puts_its_end_far_off_is_polled_less_often():
    every_second = {"initial_delay_s": 1, "multiplier": 1, "max_delay_s": 60, "jitter": 0}
    record = after_poll(make_record(policy=every_second), progressing(10), at(100)).record
    assert record.next_poll_at == at(101)  # one sample: the plan
    record = after_poll(record, progressing(11), at(110)).record
    assert record.eta == at(1000)  # 1 % per 10 s: the end is far off, polls until near it find nothing
    assert record.next_poll_at == at(170)  # skipped up to max_delay_s
    plain = after_poll(make_record(policy=every_second), operation(done=False, metadata=docai_metadata()), at(100))
    assert plain.record.next_poll_at == at(101)


def test_near_the_end_its_progress_predicts_a_sparse_plan_polls_densely():
    history_far_off = history(median_s=3600.0)  # the kind's plan polls sparsely this early
    polled = make_record(state=State.RUNNING, polls=9)
    plan = after_poll(polled, operation(done=False, metadata=docai_metadata()), at(110), stats=history_far_off)
    assert (plan.record.next_poll_at - at(110)).total_seconds() > 60.0
    record = after_poll(polled, progressing(80), at(100), stats=history_far_off).record
    record = after_poll(record, progressing(90), at(110), stats=history_far_off).record
    assert record.eta_basis == "progress"  # history has no duration this short
    assert (record.next_poll_at - at(110)).total_seconds() <= 15.0


# ---- the operation's own start: elapsed time counts from its API's createTime, not from the hand-over

def created(seconds_before: float, **extra) -> dict:
    """A running Document AI operation whose API created it `seconds_before` NOW (the submission)."""
    return operation(done=False, metadata=docai_metadata(createTime=rfc3339(NOW - timedelta(seconds=seconds_before)),
                                                         **extra))


def test_an_operation_handed_over_late_is_estimated_from_its_apis_start():
    # The kind takes ~600 s; this one was created 500 s before it was submitted, so at 60 s it is ~560 s in.
    late = after_poll(make_record(), created(500), at(60), stats=history()).record
    prompt = after_poll(make_record(), created(0.5), at(60), stats=history()).record
    assert late.started_at == NOW - timedelta(seconds=500)
    assert late.to_json()["started_at"] == rfc3339(NOW - timedelta(seconds=500))
    assert late.eta < prompt.eta  # less left for the one that has run longer
    assert (late.eta - at(60)).total_seconds() < 400


def test_the_apis_start_places_the_next_poll_on_the_kinds_durations():
    # Eight polls in, 60 s after the hand-over: the prompt one is still on the policy's ramp (85 s),
    # the late one (560 s in) among its kind's finishes, polled densely.
    late = after_poll(make_record(polls=7, seen=True), created(500), at(60), stats=history()).record
    prompt = after_poll(make_record(polls=7, seen=True), created(0.5), at(60), stats=history()).record
    assert (late.next_poll_at - at(60)).total_seconds() == 15.0
    assert (prompt.next_poll_at - at(60)).total_seconds() > 60


def test_an_api_start_after_the_submission_or_beyond_any_duration_is_not_believed():
    for seconds_before in (-30, 61 * 86400):  # another clock ahead of ours; older than 60 days
        record = after_poll(make_record(), created(seconds_before), at(60), stats=history()).record
        assert record.started_at is None and record.started == NOW
        assert "started_at" not in after_poll(make_record(), created(seconds_before), at(60)).event.data


def test_the_start_is_kept_from_the_first_answer_that_had_one():
    record = after_poll(make_record(), created(500), at(60)).record
    moved = after_poll(record, created(100), at(120)).record  # a later answer cannot move it
    assert moved.started_at == NOW - timedelta(seconds=500)
    event = after_poll(make_record(), created(500), at(60)).event
    assert event.data["started_at"] == rfc3339(NOW - timedelta(seconds=500))
