"""What a poll costs, and the rate limits, on the real Firestore and Pub/Sub emulators and the
simulator: Firestore writes counted at the adapter boundary, GETs counted by the simulator."""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from functions.adapters.firestore_leases import FirestoreLeases
from functions.adapters.firestore_store import FirestoreStore
from functions.adapters.operations_api import OperationsApi
from functions.adapters.pubsub_publisher import Publisher
from functions.config import Settings
from functions.domain.ratelimit import Limit
from functions.domain.record import utcnow
from functions.domain.states import State
from functions.domain.submission import parse_submission
from functions.services.poll import PollService
from tests.integration.helpers import create_topics, pull_messages, pull_subscription

# Due now, and after a poll not again for ten minutes: each operation is polled once per run.
ONCE = {"initial_delay_s": 600, "multiplier": 1, "max_delay_s": 600, "jitter": 0}


class TimedApi(OperationsApi):
    """The real client, noting when each GET was started."""

    def __init__(self, base_url):
        super().__init__(base_url)
        self.times: list[float] = []
        self._lock = threading.Lock()

    def start_gets(self, requests):
        with self._lock:
            self.times += [time.monotonic()] * len(requests)
        return super().start_gets(requests)


@pytest.fixture
def env(emulators, simulator, sim, project_id):
    settings = Settings(project=project_id, api_base_url=simulator.base_url, poll_budget_s=30, shards=4)
    create_topics(project_id, "lro-events", "lro-commands")
    pull_subscription(project_id, "lro-events", "events-tap")
    store = FirestoreStore(project_id, settings.collection)
    # Leases on a store object of their own, so that `store.usage` counts the records and the outbox only.
    leases = FirestoreLeases(FirestoreStore(project_id, settings.collection), settings.leases_collection)
    return settings, store, leases, sim


def _track(settings, store, ops: list[dict], **changes) -> list:
    """Records as submit makes them, due now (written directly: 300 submits would dominate the test)."""
    now = utcnow()
    records = []
    for op in ops:
        record = parse_submission({"url": op["url"], "policy": ONCE}, now - timedelta(seconds=60),
                                  default_policy=settings.default_policy, notify_url_prefixes=(),
                                  shards=settings.shards)
        record = record.with_changes(next_poll_at=now - timedelta(seconds=1), **changes)
        store.create(record)
        records.append(record)
    return records


def test_a_quiet_poll_is_one_firestore_write_and_a_change_is_its_record_and_outbox_entry(env):
    settings, store, leases, sim = env
    quiet = _track(settings, store, sim.create_many([{"kind": "documentai", "running_s": 3600}] * 20),
                   state=State.RUNNING, seen=True, polls=1, sequence=1)
    before = store.usage.counts()
    summary = PollService(settings, store, OperationsApi(settings.api_base_url), Publisher(), leases=leases).run(
        budget_s=10)
    used = store.usage.counts() - before
    assert summary.polled == 20 and summary.changed == 0
    assert used.writes == 20 and used.deletes == 0  # one write per quiet poll, nothing else

    changes = _track(settings, store, sim.create_many([{"kind": "documentai", "running_s": 0}] * 20))
    before = store.usage.counts()
    summary = PollService(settings, store, OperationsApi(settings.api_base_url), Publisher(), leases=leases).run(
        budget_s=10)
    used = store.usage.counts() - before
    assert summary.polled == 20 and summary.changed == 20 and summary.published == 20
    assert used.writes == 40 and used.deletes == 20  # record + outbox entry each, then the entry's clean-up
    assert {store.get(r.id).state for r in changes} == {State.SUCCEEDED}
    assert all(store.get(r.id).polls == 2 for r in quiet)


def test_three_hundred_due_operations_of_one_service_are_held_to_its_limit_and_none_is_lost(env):
    settings, store, leases, sim = env
    settings = replace(settings, rate_limits=(Limit("documentai.googleapis.com", 40.0),))
    records = _track(settings, store, sim.create_many([{"kind": "documentai", "running_s": 0}] * 300))
    api = TimedApi(settings.api_base_url)
    first = PollService(settings, store, api, Publisher(), leases=leases).run(budget_s=8)
    span = api.times[-1] - api.times[0]
    assert first.throttled > 0 and 0 < first.polled < 300
    assert first.polled <= 40 + 40 * span + 1  # a second's burst, then 40 a second
    for _ in range(12):
        if all(store.get(r.id).state.terminal for r in records):
            break
        PollService(settings, store, api, Publisher(), leases=leases).run(budget_s=8)
    assert {store.get(r.id).state for r in records} == {State.SUCCEEDED}
    gets = sim.stats()["gets"]
    assert sorted(gets.get(r.name) for r in records) == [1] * 300  # each polled once: none lost, none twice
    events = pull_messages(settings.project, "events-tap", expect=300, timeout_s=20)
    assert sorted(e["operation"]["id"] for e in events) == sorted(r.id for r in records)
