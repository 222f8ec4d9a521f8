"""runs: fan-out decisions and lease windows."""
from __future__ import annotations

from datetime import timedelta

from functions.domain.runs import lease_key
from functions.domain import runs
from tests.unit.factories import NOW


def test_one_run_keeps_the_work_while_the_backlog_is_within_its_capacity():
    assert runs.shards_to_fan_out(1000, runs.fanout_threshold(32), 16) == []


def test_a_backlog_beyond_one_runs_capacity_fans_out_one_run_per_shard():
    assert runs.shards_to_fan_out(5000, 1600, 4) == [0, 1, 2, 3]


def test_a_single_shard_deployment_never_fans_out():
    assert runs.shards_to_fan_out(10**6, 1, 1) == []


def test_a_run_holds_its_leases_for_its_budget_plus_a_margin():
    assert runs.lease_end(NOW, 50) == NOW + timedelta(seconds=80)


def test_schedule_times_become_safe_document_ids():
    assert lease_key("run", "2024-05-01T12:00:00.123Z", "") == "run-2024-05-01T12_00_00.123Z-"
    assert "/" not in lease_key("watch", "projects/p/locations/us")

