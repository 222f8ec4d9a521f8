"""LearntSchedule: what a run learns from the finishes it saw, handed to the store once."""
from __future__ import annotations

from functions.domain import learning
from functions.domain.states import State
from functions.services.schedule import LearntSchedule
from tests.unit.factories import DOCAI_BATCH_METADATA, steered_record


class Kept:
    def __init__(self):
        self.added = []

    def read(self, keys):
        return {}

    def add(self, additions):
        self.added.append(additions)


def test_a_finish_that_came_before_its_trends_soonest_end_is_counted_with_its_duration():
    kept = Kept()
    schedule = LearntSchedule(kept)
    before = steered_record(10, 11).with_changes(metadata={"@type": DOCAI_BATCH_METADATA})
    schedule.learn(before, before.with_changes(state=State.SUCCEEDED), before.next_poll_at)
    on_time = steered_record(80, 90).with_changes(metadata={"@type": DOCAI_BATCH_METADATA})
    on_time = on_time.with_changes(next_poll_at=on_time.eta)
    schedule.learn(on_time, on_time.with_changes(state=State.SUCCEEDED), on_time.eta)
    schedule.save()
    [added] = kept.added
    for key in (learning.kind_key(before), learning.any_kind_key(before)):
        assert (added[key].count, added[key].progress_ends, added[key].progress_early) == (2, 2, 1)
        assert sum(added[key].progress_scores.values()) == 2


def test_a_finish_without_a_progress_trend_adds_its_duration_alone():
    kept = Kept()
    schedule = LearntSchedule(kept)
    before = steered_record(10, 11).with_changes(eta_basis="history")
    schedule.learn(before, before.with_changes(state=State.SUCCEEDED), before.next_poll_at)
    schedule.save()
    assert [(s.count, s.progress_ends) for s in kept.added[0].values()] == [(1, 0), (1, 0)]  # kind, any kind
