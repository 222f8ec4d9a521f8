"""learning: which duration summaries a record feeds, and when its first poll really is."""
from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from functions.domain import eta, learning
from functions.domain.adaptive import DurationStats
from functions.domain.policy import Policy
from functions.domain.states import State
from tests.unit.factories import DOCAI_BATCH_METADATA, NOW, make_record, steered_record


def _stats(duration_s: float, n: int = 50) -> DurationStats:
    return DurationStats().add(duration_s, n)


def test_the_kind_is_the_short_name_of_the_metadata_type():
    assert learning.kind_of({"@type": DOCAI_BATCH_METADATA}) == "BatchProcessMetadata"
    assert learning.kind_of({"state": "RUNNING"}) is None
    assert learning.kind_of(None) is None


def test_a_record_of_unknown_kind_has_only_the_any_kind_key():
    record = make_record()
    assert learning.kind_key(record) is None
    assert learning.any_kind_key(record) == "documentai.googleapis.com~*~us"


def test_a_record_whose_kind_is_known_has_a_kind_key():
    record = make_record(metadata={"@type": DOCAI_BATCH_METADATA})
    assert learning.kind_key(record) == "documentai.googleapis.com~BatchProcessMetadata~us"


def test_a_finish_seen_by_this_poll_contributes_the_midpoint_duration():
    before = make_record(state=State.RUNNING, seen=True, polls=3, last_polled_at=NOW + timedelta(seconds=100))
    after = before.with_changes(state=State.SUCCEEDED)
    assert learning.finished_duration(before, after, NOW + timedelta(seconds=120)) == 110


def test_no_duration_is_learnt_from_timeouts_expiries_cancels_we_asked_for_or_already_finished_records():
    before = make_record(state=State.RUNNING, seen=True)
    now = NOW + timedelta(seconds=60)
    assert learning.finished_duration(before, before.with_changes(state=State.TIMED_OUT), now) is None
    assert learning.finished_duration(before, before.with_changes(state=State.EXPIRED), now) is None
    asked = before.with_changes(cancel={"outcome": "sent"})
    assert learning.finished_duration(asked, asked.with_changes(state=State.CANCELLED), now) is None
    done = before.with_changes(state=State.SUCCEEDED)
    assert learning.finished_duration(done, done, now) is None


def test_a_new_operation_of_a_known_kind_is_first_polled_near_its_expected_finish():
    record = make_record(policy=Policy(initial_delay_s=5, max_delay_s=300, jitter=0),
                         next_poll_at=NOW + timedelta(seconds=5))
    when = learning.first_poll_at(record, _stats(120))
    assert NOW + timedelta(seconds=90) < when < NOW + timedelta(seconds=130)


def test_the_first_poll_never_waits_past_the_policys_max_delay():
    record = make_record(policy=Policy(initial_delay_s=5, max_delay_s=60, jitter=0),
                         next_poll_at=NOW + timedelta(seconds=5))
    assert learning.first_poll_at(record, _stats(3600)) == NOW + timedelta(seconds=60)


def test_without_enough_data_or_after_a_first_poll_the_schedule_is_left_alone():
    record = make_record(next_poll_at=NOW + timedelta(seconds=5))
    assert learning.first_poll_at(record, None) is None
    assert learning.first_poll_at(record, _stats(120, n=3)) is None
    assert learning.first_poll_at(record.with_changes(polls=1, seen=True), _stats(120)) is None


def test_a_finish_seen_by_a_poll_due_no_later_than_the_soonest_end_its_trend_allowed_came_early():
    before = steered_record(10, 11)  # 1 % per 10 s: the next poll skipped ahead to the soonest end
    assert before.next_poll_at > before.last_polled_at + timedelta(seconds=60)
    done = before.with_changes(state=State.SUCCEEDED)
    end = learning.progress_end(before, done, before.next_poll_at)
    assert end.early is True
    # Its end is taken midway through the gap: it had half the gap left, under half the soonest end it skipped to.
    assert end.score == pytest.approx(0.5, rel=0.02)


def test_a_finish_after_the_soonest_end_did_not_come_early():
    before = steered_record(80, 90)
    soon = before.with_changes(next_poll_at=before.eta)  # due at the estimate itself: past the soonest end
    end = learning.progress_end(soon, soon.with_changes(state=State.SUCCEEDED), before.eta)
    assert end.early is False
    left = [(when - before.last_polled_at).total_seconds() for when in (before.eta_low, before.eta, before.eta_high)]
    assert end.score == pytest.approx(left[1] / 2 / eta.Remaining(*left).soonest)  # its end midway to the poll


def test_finishes_without_a_progress_trend_or_that_we_cancelled_say_nothing_about_progress():
    before = steered_record(10, 11)
    assert learning.progress_end(before.with_changes(eta_basis="history"),
                                 before.with_changes(state=State.SUCCEEDED), before.next_poll_at) is None
    assert learning.progress_end(before.with_changes(cancel={"state": "sent"}),
                                 before.with_changes(state=State.CANCELLED), before.next_poll_at) is None
    assert learning.progress_end(before, before.with_changes(state=State.TIMED_OUT), before.next_poll_at) is None


def test_a_duration_counts_from_the_apis_start_when_the_record_has_one():
    start = NOW - timedelta(seconds=400)
    before = make_record(state=State.RUNNING, seen=True, polls=3, last_polled_at=NOW + timedelta(seconds=100),
                         started_at=start)
    after = before.with_changes(state=State.SUCCEEDED)
    assert learning.finished_duration(before, after, NOW + timedelta(seconds=120)) == 510


def test_an_operation_handed_over_late_and_already_finished_teaches_no_duration():
    for handed_over_after, learnt in ((30, 45.0), (learning.LATE_HANDOVER_S + 1, None)):
        before = make_record(started_at=NOW - timedelta(seconds=handed_over_after))
        after = before.with_changes(state=State.SUCCEEDED, started_at=before.started_at)
        assert learning.finished_duration(before, after, NOW + timedelta(seconds=60)) == learnt


def test_the_first_poll_counts_from_the_operations_start_when_a_listing_gave_it():
    policy = Policy(initial_delay_s=5, max_delay_s=300, jitter=0)
    listed_late = make_record(policy=policy, next_poll_at=NOW + timedelta(seconds=5),
                              started_at=NOW - timedelta(seconds=200))
    assert learning.first_poll_at(listed_late, _stats(120)) is None  # already near its kind's end: no wait
    listed_soon = listed_late.with_changes(started_at=NOW - timedelta(seconds=20))
    fresh = learning.first_poll_at(make_record(policy=policy, next_poll_at=NOW + timedelta(seconds=5)), _stats(120))
    assert learning.first_poll_at(listed_soon, _stats(120)) == fresh - timedelta(seconds=20)


def test_an_api_start_is_believed_only_before_the_submission_and_within_the_longest_duration():
    def created(when):
        return {"createTime": when.isoformat()}

    assert learning.believable_start(created(NOW - timedelta(seconds=1)), NOW) == NOW - timedelta(seconds=1)
    assert learning.believable_start(created(NOW), NOW) is None and learning.believable_start(None, NOW) is None
    assert learning.believable_start(created(NOW - timedelta(days=61)), NOW) is None
    east = timezone(timedelta(hours=9))
    assert learning.believable_start(created((NOW - timedelta(seconds=5)).astimezone(east)), NOW).tzinfo == timezone.utc
