"""poll isolates operations from each other: real Firestore and Pub/Sub emulators, the simulator
behind a hostile API. Whatever goes wrong for one operation is that operation's error, with its
own backoff, counted in the summary; the others are recorded and announced as usual."""
from __future__ import annotations

from dataclasses import replace

import pytest

from functions.adapters.firestore_store import FirestoreStore
from functions.adapters.operations_api import OperationsApi
from functions.adapters.pubsub_publisher import Publisher
from functions.config import Settings
from functions.domain.tracking import Decision
from functions.services.poll import PollService
from functions.services.submit import SubmitService
from functions.simulator.client import SimulatorAdmin
from tests.integration.helpers import create_topics, pull_messages, pull_subscription
from tests.unit.fakes import failed

NOW_POLICY = {"initial_delay_s": 0, "max_delay_s": 1, "jitter": 0}


@pytest.fixture
def env(emulators, simulator, hostile, project_id):
    settings = Settings(project=project_id, api_base_url=hostile.base_url, poll_budget_s=10,
                        max_permanent_errors=2)
    create_topics(project_id, "lro-events", "lro-commands")
    pull_subscription(project_id, "lro-events", "events-tap")
    store = FirestoreStore(project_id, settings.collection)
    submit = SubmitService(settings, store, Publisher())
    return settings, store, submit, SimulatorAdmin(simulator.base_url)


def _track(submit, name_or_op) -> str:
    body = ({"url": name_or_op["url"]} if isinstance(name_or_op, dict)
            else {"name": name_or_op, "service": "documentai"})
    return submit.submit({**body, "policy": NOW_POLICY})[0].id


def _due_again(store, op_id):
    store.update_fields(op_id, {"next_poll_at": store.get(op_id).submitted_at})


class RaisingApi(OperationsApi):
    """The real client, except that GETs of one operation raise (a bug, or an escape we missed)."""

    def __init__(self, base_url, victim: str):
        super().__init__(base_url)
        self.victim = victim

    def start_gets(self, requests):
        futures = super().start_gets([r for r in requests if r[0].name != self.victim])
        return [failed(RecursionError("maximum recursion depth exceeded")) if ref.name == self.victim
                else futures.pop(0) for ref, _ in requests]


def test_an_exception_polling_one_operation_is_its_error_and_the_others_finish(env, hostile):
    settings, store, submit, sim = env
    healthy = [_track(submit, op) for op in sim.create_many([{"kind": "documentai", "running_s": 0}] * 5)]
    victim_name = "projects/123/locations/us/operations/hostile-raise-1"
    victim = _track(submit, victim_name)
    settings = replace(settings, max_permanent_errors=4)
    poll = PollService(settings, store, RaisingApi(hostile.base_url, victim_name), Publisher())

    first = poll.run(budget_s=3)  # the victim's retries (1 s, then 2 s later) fit at most twice
    record = store.get(victim)
    assert first.polled == 5 and first.errors >= 1 and first.published == 5
    assert record.state.value == "PENDING" and record.permanent_errors in (1, 2)
    assert record.last_error["status"] == "INTERNAL" and "RecursionError" in record.last_error["message"]
    assert record.next_poll_at > record.last_polled_at  # its own backoff
    assert {store.get(i).state.value for i in healthy} == {"SUCCEEDED"}

    for _ in range(4):
        _due_again(store, victim)
        poll.run(budget_s=1)
        if store.get(victim).state.value == "FAILED":
            break
    failed = store.get(victim)
    assert failed.state.value == "FAILED" and "RecursionError" in failed.error["message"]
    events = pull_messages(settings.project, "events-tap", expect=6)
    assert sorted(e["state"] for e in events) == ["FAILED"] + ["SUCCEEDED"] * 5


def test_hostile_answers_end_failed_after_max_permanent_errors_and_transient_ones_never(env):
    settings, store, submit, sim = env
    permanent = _track(submit, "projects/123/locations/us/operations/hostile-array-1")
    transient = _track(submit, "projects/123/locations/us/operations/hostile-nonjson-1")
    poll = PollService(settings, store, OperationsApi(settings.api_base_url), Publisher())
    for _ in range(8):
        summary = poll.run(budget_s=1.5)
        if store.get(permanent).state.value == "FAILED" and store.get(transient).consecutive_errors >= 4:
            break
        for op_id in (permanent, transient):
            _due_again(store, op_id)
    ended, still = store.get(permanent), store.get(transient)
    assert ended.state.value == "FAILED" and "JSON array" in ended.error["message"]
    assert ended.permanent_errors == settings.max_permanent_errors
    assert still.state.value == "PENDING" and still.consecutive_errors >= 4 and still.permanent_errors == 0
    assert still.last_error["kind"] == "transient" and summary.errors >= 1


class OversizedDecisions(PollService):
    """Decides one operation into a record Firestore refuses (as if a size cap had a hole)."""

    victim = ""

    def _decide(self, record, result) -> Decision:
        decision = super()._decide(record, result)
        if record.name == self.victim:
            return Decision(replace(decision.record, metadata={"blob": "x" * 1_200_000}), decision.event)
        return decision


def test_a_record_firestore_refuses_is_isolated_and_the_rest_of_its_group_lands(env):
    settings, store, submit, sim = env
    ops = sim.create_many([{"kind": "documentai", "running_s": 0}] * 6)
    ids = [_track(submit, op) for op in ops]
    poll = OversizedDecisions(settings, store, OperationsApi(settings.api_base_url), Publisher())
    poll.victim = ops[0]["name"]
    summary = poll.run(budget_s=3)
    victim = store.get(ids[0])
    assert victim.permanent_errors >= 1 and "could not record the poll result" in victim.last_error["message"]
    assert {store.get(i).state.value for i in ids[1:]} == {"SUCCEEDED"}
    assert summary.errors >= 1 and summary.published >= 5
    events = pull_messages(settings.project, "events-tap", expect=5)
    assert {e["operation"]["id"] for e in events if e["state"] == "SUCCEEDED"} == set(ids[1:])
