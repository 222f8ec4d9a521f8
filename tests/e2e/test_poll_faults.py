"""poll under faults: real emulators, the simulator, and poll as its own process(es).

What every test checks in the end (`_assert_complete`): each operation reached
the terminal state its script says, and the events topic holds, per operation,
exactly the sequences 1..N — duplicates only as the same event (same event_id,
same content), never a second version of a change.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone

import pytest

from functions.local.emulators import pubsub_emulator
from functions.local.processes import function_process, start_all, stop_all
from functions.local.stack import LocalStack, post_json
from functions.simulator.client import SimulatorAdmin
from tests.e2e.helpers import wait_for

FAST_POLICY = {"initial_delay_s": 0, "multiplier": 1.5, "max_delay_s": 2, "jitter": 0.1}
EXPECTED = {"succeeded": "SUCCEEDED", "failed": "FAILED"}
BASE_ENV = {"LRO_LEASE_S": "5", "LRO_POLL_CONCURRENCY": "32", "LRO_LOG_LEVEL": "WARNING"}


@pytest.fixture(scope="module")
def emulators(own_emulators):
    """Emulators of this module's own: it sends thousands of ordering keys through Pub/Sub."""
    return own_emulators


# ---- helpers ------------------------------------------------------------------

def _stack(emulator_env, tmp_path, **env) -> LocalStack:
    return LocalStack(emulator_env=emulator_env, run_dir=tmp_path / "logs", extra_env={**BASE_ENV, **env})


def _create_and_track(stack: LocalStack, sim: SimulatorAdmin, scripts: list[dict]) -> dict[str, dict]:
    ops = [{**op, **script} for op, script in zip(sim.create_many(scripts), scripts)]
    return _track_all(stack, ops)


def _track_all(stack: LocalStack, ops: list[dict]) -> dict[str, dict]:
    """Records as `submit` makes them, written in bulk (thousands over HTTP would dominate the test)."""
    from google.cloud import firestore
    from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

    from functions.domain.submission import parse_submission

    client = firestore.Client(project=stack.project)
    now = datetime.now(timezone.utc)
    by_id = {}
    for start in range(0, len(ops), 400):
        batch = BulkWriteBatch(client)
        for op in ops[start:start + 400]:
            record = parse_submission({"url": op["url"], "policy": FAST_POLICY}, now,
                                      default_policy=stack.settings.default_policy, notify_url_prefixes=(),
                                      shards=stack.settings.shards)
            batch.create(client.collection(stack.settings.collection).document(record.id), record.to_doc())
            by_id[record.id] = op
        batch.commit()
    return by_id


def _scripts(n: int, seed: int = 7) -> list[dict]:
    import random

    rng = random.Random(seed)
    return [{"kind": rng.choice(["documentai", "vision", "generic"]), "running_s": rng.uniform(0.5, 4),
             "outcome": "failed" if i % 7 == 0 else "succeeded"} for i in range(n)]


def _records(stack: LocalStack) -> dict:
    from functions.adapters.firestore_store import FirestoreStore

    store = FirestoreStore(stack.project, stack.settings.collection)
    return {r.id: r for r in _all(store)}


def _all(store):
    records, token = store.list(limit=500)
    while token:
        page, token = store.list(limit=500, page_token=token)
        records += page
    return records


def _tap(stack: LocalStack, ordering: bool = True) -> str:
    # An ordered subscription costs the Pub/Sub emulator a thread per ordering key (see
    # tests/conftest.py): a test that does not check the order can spare them.
    return stack.topology.create_pull_subscription(stack.settings.events_topic, "tap", ordering=ordering)


def _events(stack: LocalStack, expect: int, timeout: float = 60, seen: list[dict] = ()) -> list[dict]:
    """State-change events until `expect` distinct (operation, sequence) pairs arrived besides those
    `seen` before: a republished event (the same event_id again) is a duplicate and must not count
    twice, nor count as a new one when its first copy came in an earlier pull."""
    events: list[dict] = []
    earlier = {e["event_id"] for e in seen}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        distinct = {e["event_id"] for e in events} - earlier
        if len(distinct) >= expect:
            break
        got = stack.topology.pull_all("tap", timeout=min(5.0, deadline - time.monotonic()),
                                      expect=expect - len(distinct))
        events += [e for e in (m.json() for m in got) if e.get("type") == "lro.state_changed"]
    return events


def _assert_complete(records: dict, by_id: dict, events: list[dict]) -> None:
    wrong = {i: (r.state.value, by_id[i]["outcome"]) for i, r in records.items()
             if r.state.value != EXPECTED[by_id[i]["outcome"]]}
    assert not wrong, f"{len(wrong)} operations in a wrong state, e.g. {list(wrong.items())[:3]}"
    seen: dict[tuple[str, int], dict] = {}
    for event in events:
        key = (event["operation"]["id"], event["sequence"])
        assert event["event_id"] == f"{key[0]}-{key[1]}"
        if key in seen:
            assert seen[key] == event, f"sequence {key} was published with two different contents"
        seen[key] = event
    expected = {(i, n) for i, r in records.items() for n in range(1, r.sequence + 1)}
    assert set(seen) == expected, f"missing {len(expected - set(seen))}, unexpected {len(set(seen) - expected)}"
    for (op_id, n), event in seen.items():
        if n == records[op_id].sequence:
            assert event["state"] == records[op_id].state.value


def _outbox_size(stack: LocalStack) -> int:
    from google.cloud import firestore

    outbox = firestore.Client(project=stack.project).collection(stack.settings.outbox_collection)
    return sum(1 for _ in outbox.select([]).stream())


def _poll_until_done(stack: LocalStack, url: str, by_id: dict, rounds: int = 12, budget_s: float = 15) -> dict:
    """Run poll (as Cloud Scheduler would, back to back) until every operation is terminal
    and the outbox is drained: entries a killed run left are republished once their grace ends.
    Fails, naming the runs, if the outbox still holds events after the last round: what is
    missing from the topic then is the product's loss, not the test's pull."""
    summaries = []
    for _ in range(rounds):
        summary = post_json(url, {"budget_s": budget_s}, timeout=budget_s + 60)
        summaries.append({k: v for k, v in (summary or {}).items() if v})
        records = _records(stack)
        if all(r.state.terminal for r in records.values()) and len(records) == len(by_id):
            if _outbox_size(stack) == 0:
                return records
            time.sleep(2)  # the next run republishes them once they are past the outbox grace
    left = _outbox_size(stack)
    assert left == 0, f"{left} events still in the outbox after {rounds} poll runs: {summaries}"
    return _records(stack)


# ---- the tests ------------------------------------------------------------------

def test_a_poll_process_killed_mid_run_loses_no_state_and_no_event_and_duplicates_no_change(
        emulators, tmp_path):
    with _stack(emulators.env(), tmp_path) as stack:
        sim = SimulatorAdmin(stack.urls["simulator"])
        _tap(stack)
        by_id = _create_and_track(stack, sim, _scripts(300))
        sim.set_faults(latency_ms=200)  # slow GETs: at any moment a wave of claims is in flight
        poll = stack.functions["poll"]
        killed = threading.Thread(target=_swallow, args=(post_json, poll.url, {"budget_s": 30}, 60))
        killed.start()
        # Mid-run: claims held, changes committed, some events not yet published. Wait for the
        # first claims rather than a fixed time, which a slow start on a busy machine outlasts.
        wait_for(lambda: any(r.lease_owner for r in _records(stack).values()), 60, "the run's first claims",
                 every=0.5)
        time.sleep(1)
        os.killpg(poll.pid, signal.SIGKILL)
        assert any(r.lease_owner for r in _records(stack).values()), "the kill came after the run's work"
        killed.join()

        survivor = function_process("poll", env=stack.env, run_dir=tmp_path / "logs")
        start_all([survivor])
        try:
            records = _poll_until_done(stack, survivor.url, by_id)
        finally:
            stop_all([survivor])
        events = _events(stack, expect=sum(r.sequence for r in records.values()))
    _assert_complete(records, by_id, events)


def test_three_poll_processes_get_each_due_operation_once_per_due_time(emulators, tmp_path):
    # One shard: the three runs share the whole backlog (no fan-out into shard runs).
    with _stack(emulators.env(), tmp_path, LRO_POLL_BUDGET_S="40", LRO_SHARDS="1") as stack:
        sim = SimulatorAdmin(stack.urls["simulator"])
        _tap(stack, ordering=False)  # checks sets of sequences, not their order
        by_id = _create_and_track(stack, sim, _scripts(2000, seed=11))
        others = [function_process("poll", env=stack.env, run_dir=tmp_path / "logs") for _ in range(2)]
        start_all(others)
        try:
            urls = [stack.urls["poll"]] + [p.url for p in others]
            threads = [threading.Thread(target=post_json, args=(u, {"budget_s": 40}, 120)) for u in urls]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            records = _poll_until_done(stack, urls[0], by_id, rounds=3)
        finally:
            stop_all(others)
        gets = sim.stats()["gets"]
        events = _events(stack, expect=sum(r.sequence for r in records.values()))
    by_name = {op["name"]: i for i, op in by_id.items()}
    mismatched = [(n, g, records[by_name[n]].polls) for n, g in gets.items() if g != records[by_name[n]].polls]
    assert not mismatched, f"{len(mismatched)} operations were GET more often than polled, e.g. {mismatched[:3]}"
    _assert_complete(records, by_id, events)


def test_events_recorded_while_pubsub_is_down_are_all_published_in_order_after_it_returns(
        emulators, tmp_path):
    # The outage freezes the emulator (SIGSTOP) rather than killing it: Pub/Sub stops answering, as
    # in a real outage, and its topics and subscriptions are there when it comes back, so the tap
    # that saw the RUNNING events is the one that must see every finish. (Restarting it lost them
    # with its state: the tap had to be made again, and a fresh-clone run once missed 12 finishes.)
    pubsub = pubsub_emulator(run_dir=tmp_path / "logs")
    start_all([pubsub])
    env = {"FIRESTORE_EMULATOR_HOST": emulators.firestore.host, "PUBSUB_EMULATOR_HOST": pubsub.host}
    try:
        with _stack(env, tmp_path) as stack:
            sim = SimulatorAdmin(stack.urls["simulator"])
            _tap(stack)
            # The operations run until the simulator's clock is moved on, so that every finish
            # falls inside the outage, however fast or slow this machine is.
            scripts = [dict(s, running_s=3600) for s in _scripts(60, seed=3)]
            by_id = _create_and_track(stack, sim, scripts)
            outage_run: dict = {}
            run = threading.Thread(target=lambda: outage_run.update(
                post_json(stack.urls["poll"], {"budget_s": 35}, 120)))
            run.start()
            before = _events(stack, expect=len(by_id))  # every PENDING → RUNNING went out
            assert len({e["event_id"] for e in before}) == len(by_id)
            os.killpg(pubsub.pid, signal.SIGSTOP)
            try:
                sim.advance(3600)  # every operation finishes now, while Pub/Sub does not answer
                run.join()  # the run records the finishes, fails to publish them, and ends: nothing is left to poll
            finally:
                os.killpg(pubsub.pid, signal.SIGCONT)
            assert all(r.state.terminal for r in _records(stack).values()), "a finish was not recorded in the outage"
            assert outage_run["publish_errors"] > 0 or outage_run["deferred_events"] > 0, outage_run
            records = _poll_until_done(stack, stack.urls["poll"], by_id, rounds=6)
            # A RUNNING event whose publish timed out on a slow emulator but got through comes again
            # from the outbox: a duplicate of one in `before`, which must not stand in for a finish.
            after = _events(stack, expect=sum(r.sequence for r in records.values()) - len(by_id), seen=before)
    finally:
        pubsub.stop()
    events = before + after
    _assert_complete(records, by_id, events)
    per_op = defaultdict(list)
    for event in after:
        per_op[event["operation"]["id"]].append(event["sequence"])
    assert all(seqs == sorted(seqs) for seqs in per_op.values()), "an operation's events came out of order"


def test_api_faults_at_twenty_percent_never_end_an_operation_wrongly(emulators, tmp_path):
    with _stack(emulators.env(), tmp_path, LRO_MAX_PERMANENT_ERRORS="3") as stack:
        sim = SimulatorAdmin(stack.urls["simulator"])
        _tap(stack)
        by_id = _create_and_track(stack, sim, _scripts(200, seed=5))
        sim.set_faults(rate=0.2, kinds=["429", "503", "timeout", "garbage", "reset"], retry_after_s=1,
                       timeout_s=1, timeout_sleep_s=1, seed=1)
        records = _poll_until_done(stack, stack.urls["poll"], by_id, rounds=4, budget_s=20)
        stats = sim.stats()
        events = _events(stack, expect=sum(r.sequence for r in records.values()))
    # Each operation needs one clean GET at least, so 200 operations take ~250 GETs and ~50 faults
    # even when every operation has finished by its first poll (a slow machine); 25 is 4 sd below.
    assert stats["faults_injected"] >= 25
    _assert_complete(records, by_id, events)


def _swallow(fn, *args):
    try:
        fn(*args)
    except Exception:  # the process was killed under the request
        pass


def _shard_summaries(process, expect: int, timeout: float = 90) -> list[dict]:
    """The summaries that shard runs logged (each run logs its own; nobody waits for them)."""
    import json

    deadline = time.monotonic() + timeout
    while True:
        found = []
        for line in process.log_text().splitlines():
            if '"poll run finished"' in line:
                entry = json.loads(line)
                if entry["summary"]["shard"] is not None:
                    found.append({**entry["summary"], "time": datetime.fromisoformat(entry["time"])})
        if len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _push_envelope(data: dict) -> dict:
    import base64
    import json

    return {"message": {"data": base64.b64encode(json.dumps(data).encode()).decode(), "messageId": "dup-1"},
            "subscription": "projects/p/subscriptions/lro-poll-shards-poll"}


def _running_shard(stack: LocalStack, timeout: float = 30) -> int:
    """A shard whose run is going now (its lease ends in the future; a finished run ends it)."""
    from google.cloud import firestore

    leases = firestore.Client(project=stack.project).collection(f"{stack.settings.collection}_leases")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = datetime.now(timezone.utc)
        for doc in leases.stream():
            lease = doc.to_dict()
            if lease.get("kind") == "shard" and lease["expires_at"] > now:
                return int(doc.id.split("-")[1])
        time.sleep(0.2)
    raise AssertionError("no shard run started")


def test_a_backlog_beyond_one_run_fans_out_into_shard_runs_over_pubsub_push(emulators, tmp_path):
    # Concurrency 2 makes one run's capacity small (fan-out threshold 100 due operations);
    # slow GETs keep the shard runs going while duplicates of them arrive.
    with _stack(emulators.env(), tmp_path, LRO_SHARDS="4", LRO_POLL_CONCURRENCY="2",
                LRO_LOG_LEVEL="INFO") as stack:
        sim = SimulatorAdmin(stack.urls["simulator"])
        by_id = _create_and_track(stack, sim, _scripts(300))
        sim.set_faults(latency_ms=200)
        poll = stack.functions["poll"]
        first = post_json(poll.url, {"budget_s": 10}, timeout=30)
        # A second delivery of a shard message while its run goes on: answered at once, skipped.
        shard = _running_shard(stack)
        began = time.monotonic()
        duplicate = post_json(poll.url, _push_envelope(
            {"type": "poll_shard", "shard": shard, "budget_s": 10, "requested_at": "2024-01-01T00:00:00Z"}))
        answered_in = time.monotonic() - began
        second = post_json(poll.url, {"budget_s": 10}, timeout=30)  # fans out again, over shards still owned
        shard_runs = _shard_summaries(poll, expect=9)
        records = _records(stack)
        gets = sim.stats()["gets"]
    assert first["shard_runs"] == 4 and first["polled"] == 0  # requested, not waited for
    assert second["shard_runs"] == 4 and second["polled"] == 0
    assert duplicate["shard"] == shard and "owned" in duplicate["skipped"] and answered_in < 3
    assert len(shard_runs) == 9, poll.log_tail()  # one per message (8) and the duplicate
    worked = [r for r in shard_runs if r["skipped"] is None]
    assert {r["shard"] for r in worked if r["polled"] > 0} == {0, 1, 2, 3}
    assert all("owned" in r["skipped"] and r["duration_s"] < 3 for r in shard_runs if r["skipped"])
    for k in range(4):  # one run per shard at a time (a lease is handed over just before the log line)
        spans = sorted((r["time"].timestamp() - r["duration_s"], r["time"].timestamp())
                       for r in worked if r["shard"] == k)
        assert all(later[0] > earlier[1] - 0.5 for earlier, later in zip(spans, spans[1:])), (k, spans)
    # Every GET came from a shard run, and each due operation was polled once per due time.
    assert sum(r.polls for r in records.values()) == sum(r["polled"] for r in worked)
    by_name = {op["name"]: i for i, op in by_id.items()}
    mismatched = [(n, g, records[by_name[n]].polls) for n, g in gets.items() if g != records[by_name[n]].polls]
    assert not mismatched, f"{len(mismatched)} operations were GET more often than polled, e.g. {mismatched[:3]}"
    assert len(records) == len(by_id)
