"""The poll loop's hand-offs: the completion queue (futures in finishing order, GETs waking the
loop a few at a time), GETs started in one hand-off, and a GET's answer decided on the loop,
whatever the client does."""
from concurrent.futures import Future

from functions.config import Settings
from functions.domain.record import Versioned, utcnow
from functions.services.pipeline import Completions, Pipeline
from functions.services.poll import RunSummary
from functions.domain.tracking import Rules, after_poll
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


# ---- starting GETs and deciding on their answers -------------------------------------------

class HandOffs(FakeApi):
    """A client that notes each start_gets call (one hand-off to its event loop)."""

    def __init__(self, answer, fail_to_start: Exception | None = None):
        super().__init__(answer)
        self.hand_offs: list[int] = []
        self._fail_to_start = fail_to_start

    def start_gets(self, requests):
        self.hand_offs.append(len(requests))
        if self._fail_to_start:
            raise self._fail_to_start
        return super().start_gets(requests)


def pipeline(api, decide=None) -> Pipeline:
    return Pipeline(Settings(project="p"), None, api, None, None, LearntSchedule.off(), RunSummary("run"),
                    clock=utcnow, monotonic=lambda: 0.0, sleep=lambda s: None, decide=decide)


def test_the_gets_picked_in_one_turn_start_in_one_hand_off_and_keep_how_late_they_started():
    records = [make_record(id=f"op-{n}", name=f"projects/1/locations/us/operations/op-{n}") for n in range(3)]
    api = HandOffs(lambda name: {"name": name, "done": False})
    poller, in_flight = pipeline(api), {}
    poller._start([(Versioned(r, "v1"), "documentai") for r in records], in_flight)
    assert api.hand_offs == [3] and api.gets == [r.name for r in records]
    assert poller._summary.claimed == 3
    answered = [(poller._answered(v, f)[1], lag) for f, (v, _, lag) in in_flight.items()]
    assert all(api_answered and lag > 0 for api_answered, lag in answered)
    assert poller._summary.polled == 0  # counted by the loop, once per turn


def test_a_client_that_cannot_start_the_gets_makes_each_one_its_operations_error_not_the_runs():
    record = make_record()
    poller, in_flight = pipeline(HandOffs({}, fail_to_start=RuntimeError("event loop closed"))), {}
    poller._start([(Versioned(record, "v1"), "documentai")], in_flight)
    (future, (versioned, _, _)), = in_flight.items()
    polled, api_answered = poller._answered(versioned, future)
    assert not api_answered
    assert "RuntimeError: event loop closed" in polled.decision.record.last_error["message"]


def test_an_answer_the_decision_cannot_handle_is_that_operations_error():
    record = make_record()

    def decide(record, result):
        if isinstance(result, dict):
            raise RecursionError("maximum recursion depth exceeded")
        return after_poll(record, result, utcnow(), Rules())

    poller, in_flight = pipeline(HandOffs(lambda name: {"name": name, "done": True}), decide), {}
    poller._start([(Versioned(record, "v1"), "documentai")], in_flight)
    (future, (versioned, _, _)), = in_flight.items()
    polled, api_answered = poller._answered(versioned, future)
    assert api_answered  # the API answered; lrowatch could not use it
    assert "RecursionError" in polled.decision.record.last_error["message"]
