"""Poll runs around the pipeline: Scheduler retries, shard ownership, watch scopes, adaptive first polls."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from functions.adapters.firestore_durations import FirestoreDurations
from functions.adapters.firestore_leases import FirestoreLeases
from functions.adapters.firestore_store import FirestoreStore
from functions.adapters.operations_api import OperationsApi
from functions.adapters.pubsub_publisher import Publisher
from functions.config import Settings
from functions.domain import learning
from functions.domain.adaptive import DurationStats
from functions.domain.policy import Policy
from functions.services.discovery import Discovery
from functions.services.poll import PollService
from functions.services.submit import SubmitService
from functions.simulator.client import SimulatorAdmin
from tests.integration.helpers import create_topics, pull_messages, pull_subscription


@pytest.fixture
def env(emulators, simulator, project_id):
    settings = Settings(project=project_id, api_base_url=simulator.base_url, poll_budget_s=10)
    create_topics(project_id, "lro-events", "lro-commands")
    store = FirestoreStore(project_id, settings.collection)
    leases = FirestoreLeases(store, settings.leases_collection)
    api = OperationsApi(simulator.base_url)

    def poll(**kw):
        s = kw.pop("settings", settings)
        return PollService(s, store, api, Publisher(), leases=leases, **kw)

    return settings, store, leases, api, SimulatorAdmin(simulator.base_url), poll


def test_a_scheduler_retry_of_a_run_still_going_does_not_start_a_second_run(env):
    settings, store, leases, api, sim, poll = env
    first: dict = {}
    tick = "2024-05-01T12:00:00Z"
    thread = threading.Thread(target=lambda: first.update(
        summary=poll().run(budget_s=3, schedule_time=tick)))
    thread.start()
    try:
        import time
        from functions.domain import runs
        deadline = time.monotonic() + 30
        while leases.get(runs.schedule_key(tick, None)) is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first run has taken its marker (however loaded the machine)
        retry = poll().run(budget_s=3, schedule_time=tick)
    finally:
        thread.join()
    assert retry.skipped and retry.claimed == 0
    assert first["summary"].skipped is None
    assert poll().run(budget_s=1, schedule_time=tick).skipped  # finished: still recognised
    assert poll().run(budget_s=1, schedule_time="2024-05-01T12:01:00Z").skipped is None


def test_a_shard_is_owned_by_one_run_at_a_time(env):
    settings, store, leases, api, sim, poll = env
    from datetime import datetime, timedelta, timezone
    now = datetime.now(timezone.utc)
    assert leases.acquire("shard-3", "someone-else", now, now + timedelta(seconds=30))
    assert "owned" in poll().run(budget_s=1, shard=3).skipped
    assert poll().run(budget_s=1, shard=4).skipped is None


def test_watch_scopes_track_listed_operations_once_with_source_watch(env):
    settings, store, leases, api, sim, poll = env
    parent = "projects/777/locations/us"
    for _ in range(3):
        sim.create(kind="documentai", project="777", location="us", running_s=60)
    watched = replace(settings, watch_scopes=(("documentai.googleapis.com", parent, ""),))
    discovery = Discovery(watched, store, leases, api)
    summary = discovery.run("run-a", stop_at=float("inf"))
    assert (summary.found, summary.tracked) == (3, 3)
    assert discovery.run("run-b", stop_at=float("inf")).scopes_listed == 0  # within its interval
    records, _ = store.list(limit=10)
    assert len(records) == 3 and {r.source for r in records} == {"watch"}
    # The same operation submitted afterwards is the same record.
    _, created = SubmitService(settings, store, Publisher()).submit(
        {"name": records[0].name, "service": "documentai"})
    assert created is False


def test_a_listed_operation_counts_from_the_start_its_listing_gives_so_an_old_one_is_polled_at_once(env):
    settings, store, leases, api, sim, poll = env
    durations = FirestoreDurations(store, settings.durations_collection)
    old = sim.create(kind="documentai", project="781", location="us", running_s=900, created_ago_s=300)
    new = sim.create(kind="documentai", project="781", location="us", running_s=900)
    watched = replace(settings, watch_scopes=(("documentai.googleapis.com", "projects/781/locations/us", ""),),
                      default_policy=Policy(initial_delay_s=0, max_delay_s=120))
    assert Discovery(watched, store, leases, api).run("run-a", stop_at=float("inf")).tracked == 2
    records = {r.name: r for r in store.list(limit=10)[0]}
    assert 299 <= (records[old["name"]].submitted_at - records[old["name"]].started_at).total_seconds() <= 310
    assert 0 <= (records[new["name"]].submitted_at - records[new["name"]].started_at).total_seconds() <= 10
    # Its kind ends after ~90 s: the new one waits for that, the one 300 s into its life does not.
    durations.add({learning.any_kind_key(records[old["name"]]): DurationStats().add(90, 50)})
    summary = poll(durations=durations).run(budget_s=2)
    gets = sim.stats()["gets"]
    assert summary.first_polls_deferred == 1 and gets.get(new["name"]) is None
    assert gets.get(old["name"], 0) >= 1  # at once (and again as its ramp says: initial_delay_s 0)


def test_a_new_operation_of_a_known_kind_waits_for_its_expected_finish_before_its_first_get(env):
    settings, store, leases, api, sim, poll = env
    durations = FirestoreDurations(store, settings.durations_collection)
    op = sim.create(kind="documentai", running_s=60)
    record, _ = SubmitService(settings, store, Publisher()).submit(
        {"url": op["url"], "policy": {"initial_delay_s": 0, "max_delay_s": 120}})
    durations.add({learning.any_kind_key(record): DurationStats().add(90, 50)})
    summary = poll(durations=durations).run(budget_s=2)
    assert summary.first_polls_deferred == 1 and summary.polled == 0
    moved = store.get(record.id)
    assert 60 < (moved.next_poll_at - record.submitted_at).total_seconds() <= 120
    assert sim.stats()["gets"].get(op["name"]) is None


def test_an_operation_whose_progress_puts_its_end_far_off_is_not_polled_until_near_it(env):
    settings, store, leases, api, sim, poll = env
    every_second = {"initial_delay_s": 0, "multiplier": 1, "max_delay_s": 60, "jitter": 0}
    submit = SubmitService(settings, store, Publisher())
    reporting = sim.create(kind="generic", running_s=100)  # Speech-style progressPercent, 1 % a second
    silent = sim.create(kind="documentai", running_s=100)  # no progress to go on
    records = [submit.submit({"url": op["url"], "policy": every_second})[0] for op in (reporting, silent)]
    gaps = {}
    for _ in range(30):  # polled every second until the trend has two samples that moved
        poll().run(budget_s=1)
        now = [store.get(r.id) for r in records]
        if now[0].eta_basis == "progress":
            gaps = {r.name: (r.next_poll_at - r.last_polled_at).total_seconds() for r in now}
            break
        time.sleep(0.5)
    assert gaps, "no progress trend seen"
    assert 5 < gaps[reporting["name"]] <= 60  # ~90 s left: the polls the plan had before it are skipped
    assert gaps[silent["name"]] == 1


def test_finishes_that_came_before_their_progress_trend_allowed_are_counted_by_concurrent_runs(env):
    settings, store, *_ = env
    durations = FirestoreDurations(store, settings.durations_collection)
    key = "speech.googleapis.com~LongRunningRecognizeMetadata~global"
    first = DurationStats().add(100, 3).add_progress_end(True).add_progress_end(False).add_progress_end(False)
    first.add_progress_score(0.5).add_progress_score(2.0).add_progress_score(2.0)
    second = DurationStats().add(200).add_progress_end(True).add_progress_score(2.0)
    durations.add({key: first})
    durations.add({key: second})
    read = durations.read([key])[key]
    assert (read.count, read.progress_ends, read.progress_early) == (4, 4, 2)
    assert sorted(read.progress_scores.values()) == [1, 3]
    assert read == first.merge(second)


def test_a_backlog_beyond_one_run_requests_one_shard_run_per_shard_over_pubsub(env):
    settings, store, leases, api, sim, poll = env
    settings = replace(settings, shards=4)
    create_topics(settings.project, settings.poll_shards_topic)
    pull_subscription(settings.project, settings.poll_shards_topic, "shards-tap")
    for op in sim.create_many([{"running_s": 60}] * 3):
        SubmitService(settings, store, Publisher()).submit({"url": op["url"], "policy": {"initial_delay_s": 0}})
    summary = poll(settings=settings, fan_out=True, fanout_threshold=2).run(budget_s=7)
    assert summary.shard_runs == 4 and summary.polled == 0  # requested, not waited for
    messages = pull_messages(settings.project, "shards-tap", expect=4)
    assert sorted(m["shard"] for m in messages) == [0, 1, 2, 3]
    assert all(m["type"] == "poll_shard" and m["budget_s"] == 7 and m["requested_at"] for m in messages)


def test_without_the_shards_topic_a_run_does_the_work_itself(env):
    settings, store, leases, api, sim, poll = env
    settings = replace(settings, shards=4, poll_shards_topic="no-such-topic")
    for op in sim.create_many([{"running_s": 60}] * 2):
        SubmitService(settings, store, Publisher()).submit({"url": op["url"], "policy": {"initial_delay_s": 0}})
    summary = poll(settings=settings, fan_out=True, fanout_threshold=1).run(budget_s=2)
    assert summary.shard_runs == 0 and summary.polled >= 2  # (the project may hold earlier tests' operations)
