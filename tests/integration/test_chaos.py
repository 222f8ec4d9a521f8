"""Chaos: 50 healthy operations beside 10 hostile API answers, through the real `submit` and
`poll` functions (functions-framework), on the real Firestore and Pub/Sub emulators.

Every healthy operation ends SUCCEEDED with its event, every poll run answers 2xx, and every
hostile one ends with a recorded error (FAILED, or a transient last_error and a retry
scheduled), never stuck and never stopping the others.
"""
from __future__ import annotations

import itertools
import json
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from functions.adapters.firestore_store import FirestoreStore
from tests.integration.helpers import api_app, create_topics, pull_messages, pull_subscription

FAST = {"initial_delay_s": 0, "multiplier": 1.5, "max_delay_s": 1, "jitter": 0.1}
MAX_PERMANENT_ERRORS = 2
# Hostile mode → what it ends as: a state, and for FAILED what its error says.
EXPECTED = {
    "deep": ("FAILED", "levels deep"),
    "details": ("FAILED", "internal"),
    "metadata": ("SUCCEEDED", None),
    "nonjson": ("PENDING", "not usable JSON"),
    "array": ("FAILED", "JSON array"),
    "types": ("FAILED", "done is a string"),
    "redirect": ("FAILED", "HTTP 302"),
    "hang": ("PENDING", "Timeout"),
    "mismatch": ("FAILED", "different operation"),
    "reset": ("PENDING", "Connection reset"),
}


@pytest.fixture
def functions(emulators, hostile, project_id, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project_id)
    monkeypatch.setenv("LRO_API_BASE_URL", hostile.base_url)
    monkeypatch.setenv("LRO_MAX_PERMANENT_ERRORS", str(MAX_PERMANENT_ERRORS))
    create_topics(project_id, "lro-events", "lro-commands", "lro-poll-shards")
    pull_subscription(project_id, "lro-events", "events-tap")
    return api_app("submit").test_client(), api_app("poll").test_client(), FirestoreStore(project_id,
                                                                                          "lro_operations")


@pytest.fixture
def events_of(project_id):
    return lambda expect: pull_messages(project_id, "events-tap", expect=expect, timeout_s=15)


def _submit(submit, body: dict) -> str:
    response = submit.post("/operations", json={**body, "policy": FAST})
    assert response.status_code == 201, response.json
    return response.json["id"]


def _hostile_name(mode: str) -> str:
    return f"projects/123/locations/us/operations/hostile-{mode}-1"


def test_fifty_healthy_operations_finish_beside_ten_hostile_answers(functions, sim, events_of):
    submit, poll, store = functions
    rng = random.Random(10)
    scripts = [{"kind": rng.choice(["documentai", "vision", "generic"]), "running_s": rng.uniform(0.2, 2)}
               for _ in range(50)]
    healthy = [_submit(submit, {"url": op["url"]}) for op in sim.create_many(scripts)]
    hostile = {mode: _submit(submit, {"name": _hostile_name(mode), "service": "documentai"}) for mode in EXPECTED}

    started, runs = time.monotonic(), []
    for _ in range(8):
        response = poll.post("/", json={"budget_s": 15})
        assert response.status_code == 200, response.json
        runs.append(response.json)
        records = {i: store.get(i) for i in healthy + list(hostile.values())}
        if _settled(records, healthy, hostile):
            break
        for mode, op_id in hostile.items():  # the transient ones: due again rather than wait out their backoff
            if not records[op_id].state.terminal:
                store.update_fields(op_id, {"next_poll_at": records[op_id].submitted_at})
    elapsed = time.monotonic() - started

    assert {records[i].state.value for i in healthy} == {"SUCCEEDED"}
    for mode, op_id in hostile.items():
        state, says = EXPECTED[mode]
        record = records[op_id]
        assert record.state.value == state, (mode, record.last_error)
        if state == "FAILED":
            assert says in (record.error["message"]), (mode, record.error)
        elif state == "PENDING":
            assert record.last_error["kind"] == "transient" and says in record.last_error["message"], mode
            assert record.consecutive_errors >= 1 and record.next_poll_at > record.last_polled_at
    details, metadata = records[hostile["details"]], records[hostile["metadata"]]
    assert details.truncated and len(details.error["details"]) <= 20
    assert metadata.truncated and metadata.metadata is None

    finished = len(healthy) + sum(1 for m, (state, _) in EXPECTED.items() if state != "PENDING")
    events = events_of(sum(r.sequence for r in records.values()))
    final = {e["operation"]["id"]: e for e in events if e["done"]}
    assert len(final) == finished
    assert all(final[i]["state"] == "SUCCEEDED" for i in healthy)
    assert final[hostile["details"]]["error"]["code"] == 13
    assert final[hostile["metadata"]]["truncated"] is True
    errors = sum(run["errors"] for run in runs)
    print(f"\nchaos: {len(runs)} poll runs in {elapsed:.1f} s, all 2xx; {len(healthy)} healthy SUCCEEDED; "
          f"hostile: {sum(1 for m in EXPECTED if records[hostile[m]].state.value == 'FAILED')} FAILED, "
          f"1 SUCCEEDED truncated, 3 transient (retrying); operation errors counted: {errors}; "
          f"events: {len(events)}")


def _settled(records, healthy, hostile) -> bool:
    done = all(records[i].state.terminal for i in healthy)
    for mode, op_id in hostile.items():
        state, _ = EXPECTED[mode]
        record = records[op_id]
        done = done and (record.state.value == state if state != "PENDING" else record.consecutive_errors >= 2)
    return done


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=15)
operation_like = st.fixed_dictionaries({}, optional={
    "done": st.booleans() | json_values, "metadata": json_values, "response": json_values,
    "error": st.fixed_dictionaries({}, optional={"code": json_values, "message": json_values,
                                                 "details": json_values}) | json_values})
examples = itertools.count()


@hsettings(max_examples=10, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.binary(max_size=200) | json_values.map(json.dumps).map(str.encode)
       | operation_like.map(lambda op: op), status=st.sampled_from([200, 200, 400, 500]))
def test_any_api_answer_leaves_poll_answering_2xx_and_the_record_readable(functions, hostile, body, status):
    submit, poll, store = functions
    name = _hostile_name(f"prop{next(examples)}")
    if isinstance(body, dict):  # an Operation-like object naming this operation
        body = json.dumps({"name": name, **body}).encode()
    hostile.script(name.rsplit("/", 1)[1], status, body)
    op_id = _submit(submit, {"name": name, "service": "documentai"})
    run = poll.post("/", json={"budget_s": 2.5})
    assert run.status_code == 200, run.json
    read = submit.get(f"/operations/{op_id}")
    assert read.status_code == 200
    assert read.json["polls"] + read.json["consecutive_errors"] >= 1  # it was polled, and what came of it recorded
