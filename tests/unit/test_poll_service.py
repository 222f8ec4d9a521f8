"""PollService against in-memory fakes of its ports: writes per poll, shard ownership,
guarded commits, rate limits. The same behaviours are proven on the emulators in
tests/integration/test_poll_cost.py."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from functions.config import Settings
from functions.domain.ratelimit import Limit
from functions.domain.record import utcnow
from functions.domain.states import State
from functions.services.poll import PollService
from tests.unit.factories import DOCAI_NAME, docai_metadata, make_record, operation
from tests.unit.fakes import TOO_MANY, FakeApi, FakeLeases, FakePublisher, FakeStore

SETTINGS = Settings(project="p", poll_concurrency=4, poll_batch=10, shards=4, lease_s=30)


def _records(store: FakeStore, n: int, **changes) -> list:
    now = utcnow()
    records = []
    for i in range(n):
        record = make_record(name=DOCAI_NAME.replace("bc4e1d412863e626", f"op{i:04d}"),
                             submitted_at=now - timedelta(minutes=5), **changes)
        record = record.with_changes(shard=i % SETTINGS.shards, next_poll_at=now - timedelta(seconds=n - i))
        store.put(record)
        records.append(record)
    return records


def _running(name: str) -> dict:
    return operation(name=name, done=False, metadata=docai_metadata("RUNNING"))


def _finished(name: str) -> dict:
    return operation(name=name, done=True, metadata=docai_metadata("SUCCEEDED"), response={})


def _service(store, api, settings=SETTINGS, leases=None, publisher=None) -> PollService:
    return PollService(settings, store, api, publisher or FakePublisher(), leases=leases)


def test_a_quiet_poll_costs_one_write_and_publishes_nothing():
    store = FakeStore(utcnow)
    records = _records(store, 12, state=State.RUNNING, seen=True, polls=1, provider_state="RUNNING",
                       progress_percent=0, metadata=docai_metadata("RUNNING"))
    publisher = FakePublisher()
    summary = _service(store, FakeApi(_running), publisher=publisher).run(budget_s=1)
    assert summary.polled == 12 and summary.changed == 0
    assert store.writes == 12 and not store.outbox and not publisher.sent
    assert all(store.get(r.id).polls == 2 for r in records)


def test_a_change_is_its_record_and_outbox_entry_committed_together_then_published_and_cleared():
    store = FakeStore(utcnow)
    records = _records(store, 8)
    publisher = FakePublisher()
    summary = _service(store, FakeApi(_finished), publisher=publisher).run(budget_s=1)
    assert summary.changed == 8 and summary.published == 8
    assert store.writes == 16  # each: the record and its outbox entry, in one commit
    assert not store.outbox  # cleared once published
    assert sorted(m.data["event_id"] for _, m in publisher.sent) == sorted(f"{r.id}-1" for r in records)


def test_a_shard_run_is_skipped_while_another_run_holds_its_shard():
    store, leases = FakeStore(utcnow), FakeLeases()
    _records(store, 8)
    leases.acquire("shard-2", "another-run", utcnow(), utcnow() + timedelta(seconds=30))
    api = FakeApi(_finished)
    summary = _service(store, api, leases=leases).run(budget_s=1, shard=2)
    assert "owned" in summary.skipped and api.gets == []


def test_an_unsharded_run_polls_only_the_shards_it_holds():
    store, leases = FakeStore(utcnow), FakeLeases()
    records = _records(store, 12)
    leases.acquire("shard-1", "another-run", utcnow(), utcnow() + timedelta(seconds=30))
    api = FakeApi(_finished)
    summary = _service(store, api, leases=leases).run(budget_s=1)
    polled = {r.name for r in records if r.shard != 1}
    assert set(api.gets) == polled and summary.polled == len(polled)
    assert all(store.get(r.id).state == State.PENDING for r in records if r.shard == 1)
    # Its own shards are free again for the next run; the other run's lease stands.
    assert leases.get("shard-0")["expires_at"] <= utcnow() and leases.get("shard-1")["holder"] == "another-run"


def test_a_record_written_by_someone_else_meanwhile_is_decided_again_alone_on_fresh_data():
    store = FakeStore(utcnow)
    records = _records(store, 5)
    raced = records[2].id
    commit, reads = store.commit, []

    def racing_commit(items):
        if not reads and any(v.record.id == raced for v, _ in items):
            store.update_fields(raced, {"correlation_id": "written meanwhile"})
        return commit(items)

    get_versioned = store.get_versioned
    store.commit = racing_commit
    store.get_versioned = lambda op_id: reads.append(op_id) or get_versioned(op_id)
    summary = _service(store, FakeApi(_finished)).run(budget_s=1)
    assert reads == [raced]
    assert store.get(raced).correlation_id == "written meanwhile" and store.get(raced).sequence == 1
    assert summary.changed == 5 and all(store.get(r.id).state == State.SUCCEEDED for r in records)


def test_operations_over_their_services_rate_limit_wait_in_due_order_and_none_is_lost():
    store = FakeStore(utcnow)
    records = _records(store, 30)
    settings = replace(SETTINGS, shards=1, rate_limits=(Limit("documentai.googleapis.com", 10.0),))
    store.docs = {i: (r.with_changes(shard=0), v) for i, (r, v) in store.docs.items()}
    api = FakeApi(_finished)
    first = _service(store, api, settings).run(budget_s=1.6)
    span = api.times[-1] - api.times[0]
    assert 1 <= first.polled <= 10 + 10 * span + 1 and first.throttled > 0  # a second's burst, then 10/s
    due_order = [r.name for r in records]  # next_poll_at ascending
    assert api.gets == due_order[:len(api.gets)]
    for _ in range(4):
        _service(store, api, settings).run(budget_s=1.6)
    assert sorted(api.gets) == sorted(due_order)  # each polled once, none lost
    assert all(store.get(r.id).state == State.SUCCEEDED for r in records)


def test_429_answers_slow_the_service_down_and_keep_the_operation_due():
    store = FakeStore(utcnow)
    records = _records(store, 6)
    settings = replace(SETTINGS, rate_limits=(Limit("documentai.googleapis.com", 100.0),))
    api = FakeApi(lambda name: TOO_MANY)
    summary = _service(store, api, settings).run(budget_s=1)
    record = store.get(records[0].id)
    assert summary.errors >= 6 and record.state == State.PENDING and record.last_error["code"] == 429


@pytest.mark.parametrize("shard", [None, 3])
def test_without_leases_a_run_is_the_only_poller_and_polls_everything_it_is_given(shard):
    store = FakeStore(utcnow)
    records = _records(store, 8)
    api = FakeApi(_finished)
    _service(store, api).run(budget_s=1, shard=shard)
    assert set(api.gets) == {r.name for r in records if shard is None or r.shard == shard}
