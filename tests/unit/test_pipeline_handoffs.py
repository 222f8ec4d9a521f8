"""The poll loop's hand-offs: the completion queue (futures in finishing order, GETs waking the
loop a few at a time) and a GET's check, as a worker starts it, that it may still start."""
from concurrent.futures import Future

from functions.config import Settings
from functions.domain.record import Versioned, utcnow
from functions.services.pipeline import Completions, Pipeline
from functions.services.poll import RunSummary
from functions.services.schedule import LearntSchedule
from tests.unit.factories import make_record
from tests.unit.fakes import FakeApi


def finished(completions: Completions, value, batched: bool = False) -> Future:
    future = completions.watch(Future(), batched=batched)
    future.set_result(value)
    return future


def test_futures_come_out_in_the_order_they_finished_and_once():
    completions = Completions()
    first, second = completions.watch(Future()), completions.watch(Future())
    second.set_result(2)
    first.set_result(1)
    assert completions.drain() == [second, first]
    assert completions.drain() == []


def test_gets_wake_the_loop_only_once_enough_of_them_are_done():
    completions = Completions()
    completions.wait(0, wake_after=3)
    finished(completions, "a", batched=True)
    finished(completions, "b", batched=True)
    assert not completions.waking
    finished(completions, "c", batched=True)
    assert completions.waking
    assert [f.result() for f in completions.drain()] == ["a", "b", "c"]


def test_anything_else_wakes_the_loop_at_once():
    completions = Completions()
    completions.wait(0, wake_after=4)
    finished(completions, "write")
    assert completions.waking


def test_a_wait_does_not_sleep_when_enough_finished_before_it():
    completions = Completions()
    completions.wait(0, wake_after=8)
    for n in range(2):
        finished(completions, n, batched=True)
    completions.wait(60, wake_after=2)  # would hang the test for a minute if it slept
    assert len(completions.drain()) == 2


# ---- a GET that waited at the workers' door ---------------------------------------------

class Shards:
    """Ownership that holds every shard until told otherwise."""

    def __init__(self):
        self.held = True

    def holds(self, shard: int) -> bool:
        return self.held


def pipeline(ownership, api, now: list) -> Pipeline:
    return Pipeline(Settings(project="p"), None, api, None, ownership, LearntSchedule.off(), RunSummary("run"),
                    clock=utcnow, monotonic=lambda: now[0], sleep=lambda s: None)


def test_a_get_whose_shard_was_lost_while_it_waited_is_not_started_and_counts_as_a_lost_claim():
    ownership, api, now = Shards(), FakeApi({"name": "x", "done": False}), [0.0]
    poller = pipeline(ownership, api, now)
    poller._stop_at = 100.0
    ownership.held = False
    assert poller._poll_one(Versioned(make_record(), "v1")) is None
    assert api.gets == [] and poller._summary.lost_claims == 1


def test_a_get_that_waited_past_the_runs_end_is_not_started():
    ownership, api, now = Shards(), FakeApi({"name": "x", "done": False}), [0.0]
    poller = pipeline(ownership, api, now)
    poller._stop_at = 100.0
    now[0] = 100.0
    assert poller._poll_one(Versioned(make_record(), "v1")) is None
    assert api.gets == [] and poller._summary.lost_claims == 0


def test_a_get_started_in_time_is_answered_and_its_lag_kept_for_the_loop_to_count():
    ownership, now = Shards(), [0.0]
    record = make_record()
    api = FakeApi({"name": record.name, "done": False})
    poller = pipeline(ownership, api, now)
    poller._stop_at = 100.0
    polled = poller._poll_one(Versioned(record, "v1"))
    assert api.gets == [record.name] and polled.answered and polled.lag_s > 0
    assert poller._summary.polled == 0  # counted by the loop, not by the worker
