"""The poll loop's completion queue: futures in finishing order, GETs waking the loop a few at a time."""
from concurrent.futures import Future

from functions.services.pipeline import Completions


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
