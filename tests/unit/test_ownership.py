"""Shard ownership: leases renewed guarded by their version, lost leases stop the work."""
from __future__ import annotations

from datetime import timedelta

from functions.domain.record import utcnow
from functions.services.ownership import ShardOwnership
from tests.unit.fakes import FakeLeases


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _ownership(leases, holder="run-a", shard=None, shards=4, clock=None):
    return ShardOwnership(leases, holder, shards, shard, 30.0, clock=utcnow, monotonic=clock or Clock())


def test_an_unsharded_run_takes_every_free_shard_and_queries_without_a_shard_filter():
    ownership = _ownership(FakeLeases())
    assert ownership.acquire() == {0, 1, 2, 3} and ownership.shards_filter() is None


def test_a_shard_held_by_another_run_is_left_to_it_and_taken_once_freed():
    leases = FakeLeases()
    other = _ownership(leases, "run-b", shard=2)
    assert other.acquire() == {2}
    mine = _ownership(leases)
    assert mine.acquire() == {0, 1, 3} and mine.shards_filter() == {0, 1, 3} and mine.missing == [2]
    other.release()
    assert mine.acquire() == {0, 1, 2, 3}


def test_a_shard_counts_as_held_only_until_a_margin_before_its_lease_ends_and_is_renewed_well_before():
    clock = Clock()
    ownership = _ownership(FakeLeases(), clock=clock)  # a 30 s lease
    ownership.acquire()
    clock.t = 9.9
    assert not ownership.due_for_renewal()
    clock.t = 27.9
    assert ownership.holds(1) and ownership.due_for_renewal()
    clock.t = 28.0
    assert not ownership.holds(1)


def test_a_lease_taken_over_after_it_expired_is_lost_at_the_next_renewal():
    leases, clock = FakeLeases(), Clock()
    slow = _ownership(leases, clock=clock)
    slow.acquire()
    for key in list(leases.docs):  # its leases ran out while it stalled; another run took shard 0
        doc, version = leases.docs[key]
        leases.docs[key] = ({**doc, "expires_at": utcnow() - timedelta(seconds=1)}, version)
    assert _ownership(leases, "run-b", shard=0).acquire() == {0}
    assert slow.acquire() == {1, 2, 3} and not slow.holds(0)


def test_without_leases_a_run_holds_what_it_wants():
    assert _ownership(None, shard=3).acquire() == {3}
