"""P1 throughput: operations polled per second by one poll run.

Set-up: the real Firestore and Pub/Sub emulators, the Operations API simulator
in this process with 50 ms latency on every call, N due operations written
straight to Firestore as `submit` would make them (initial delay 0: due now).
Records were submitted a minute ago with initial_delay_s 0 and are due now.
All operations have finished in the simulator (80 % SUCCEEDED, 10 % FAILED,
10 % CANCELLED), so every poll is a state change and takes the whole path:
claim, GET, record + outbox entry, publish, outbox delete; and no operation
falls due again, so the run ends when the N operations are polled.

Baseline, same run, same emulators and simulator: a naive loop over a subset,
one operation at a time: GET → Firestore write → synchronous publish.
"""
from __future__ import annotations

import os
import time

from bench import Timings, build_poll, bulk_write, cpu_seconds, create_topics, due_records, new_project, sim_ops

LATENCY_S = 0.05
GOAL_RATIO = 30.0
GOAL_UTILISATION = 0.60
POLICY = {"initial_delay_s": 0}


def _scripts(n: int) -> list[dict]:
    kinds = ("documentai", "vision", "generic")
    scripts = []
    for i in range(n):
        kind = kinds[i % 3]
        outcome = "failed" if i % 10 == 0 else "cancelled" if i % 10 == 1 else "succeeded"
        scripts.append({"kind": kind, "running_s": 0, "outcome": outcome, "items": 3 if kind != "generic" else 0})
    return scripts


def _load(settings, admin, n: int) -> list:
    ops = sim_ops(admin, _scripts(n))
    records = due_records(settings, [o["url"] for o in ops], policy=POLICY)
    bulk_write(settings.project, settings.collection, [(r.id, r.to_doc()) for r in records])
    return records


def run_lrowatch(emus, base_url: str, admin, n: int, concurrency: int, budget_s: float,
                 sim_pid: int | None = None) -> dict:
    from functions.config import Settings

    settings = Settings(project=new_project("p1"), poll_concurrency=concurrency, poll_budget_s=budget_s,
                        api_base_url=base_url, log_level="ERROR")
    create_topics(settings.project, settings.events_topic, settings.commands_topic)
    load_started = time.monotonic()
    _load(settings, admin, n)
    load_s = time.monotonic() - load_started
    service = build_poll(settings)  # as main.py wires it: leases, learnt durations, outbox relay
    store, api, publisher = service._store, service._api, service._publisher
    _ = store.client, publisher.client, api.session  # clients built before the clock starts
    timings = Timings()
    timings.wrap(store, ["due", "due_page", "claim", "claim_many", "commit", "commit_many", "commit_quiet",
                         "delete_outbox", "outbox", "next_due_at", "get_with_time"], "firestore")
    timings.wrap(api, ["get"], "api")
    timings.wrap(publisher, ["publish"], "pubsub")
    pids = {"bench process (poller)": os.getpid(), "firestore emulator": emus.firestore.pid,
            "pubsub emulator": emus.pubsub.pid}
    if sim_pid:
        pids["simulator process"] = sim_pid
    cpu_before = cpu_seconds(pids)
    started = time.monotonic()
    summary = service.run(budget_s=budget_s)
    wall = time.monotonic() - started
    cpu_after = cpu_seconds(pids)
    polled = summary.polled
    rate = polled / wall if wall else 0.0
    ceiling = concurrency / LATENCY_S
    return {
        "concurrency": concurrency, "operations": n, "polled": polled, "claimed": summary.claimed,
        "changed": summary.changed, "published": summary.published, "errors": summary.errors,
        "publish_errors": summary.publish_errors, "lost_claims": summary.lost_claims,
        "wall_s": round(wall, 2), "ops_per_s": round(rate, 1), "ceiling_ops_per_s": ceiling,
        "utilisation": rate / ceiling, "complete": polled >= n, "load_s": round(load_s, 1),
        "cpu_s": {k: round(cpu_after[k] - cpu_before[k], 1) for k in pids},
        "profile": timings.table(),
    }


def run_baseline(base_url: str, admin, n: int) -> dict:
    """Sequential: GET → write the record → publish and wait, one operation at a time."""
    import requests
    from google.cloud import firestore, pubsub_v1

    from functions.config import Settings
    from functions.domain.record import utcnow
    from functions.domain.tracking import after_poll

    settings = Settings(project=new_project("p1base"), api_base_url=base_url)
    create_topics(settings.project, settings.events_topic)
    records = _load(settings, admin, n)
    session = requests.Session()
    collection = firestore.Client(project=settings.project).collection(settings.collection)
    publisher = pubsub_v1.PublisherClient()
    topic = settings.topic_path(settings.events_topic)
    timings = Timings()
    started = time.monotonic()
    for record in records:
        t0 = time.perf_counter()
        body = session.get(f"{base_url}/{record.endpoint}/{record.api_version}/{record.name}", timeout=10).json()
        t1 = time.perf_counter()
        decision = after_poll(record, body, utcnow())
        collection.document(record.id).set(decision.record.to_doc())
        t2 = time.perf_counter()
        if decision.event is not None:
            publisher.publish(topic, decision.event.encoded(), **decision.event.attributes).result()
        t3 = time.perf_counter()
        timings.add("api.get", t1 - t0)
        timings.add("firestore.set", t2 - t1)
        timings.add("pubsub.publish+wait", t3 - t2)
    wall = time.monotonic() - started
    return {"operations": n, "wall_s": round(wall, 2), "ops_per_s": round(n / wall, 2), "profile": timings.table()}


def run(emus, quick: bool = False, concurrencies: tuple[int, ...] = (32, 64)) -> dict:
    from bench import simulator

    n = 1000 if quick else 5000
    n_base = 100 if quick else 300
    budget = 90.0 if quick else 240.0
    results = {"latency_ms": LATENCY_S * 1000, "operations": n, "baseline_operations": n_base,
               "goal": f">= {GOAL_RATIO:g}x the naive baseline and >= {GOAL_UTILISATION:.0%} of concurrency/latency",
               "runs": []}
    with simulator(LATENCY_S * 1000) as (process, base_url, admin):
        results["baseline"] = run_baseline(base_url, admin, n_base)
        for concurrency in concurrencies:
            row = run_lrowatch(emus, base_url, admin, n, concurrency, budget, sim_pid=process.pid)
            row["ratio"] = row["ops_per_s"] / results["baseline"]["ops_per_s"]
            row["verdict"] = "PASS" if (row["ratio"] >= GOAL_RATIO and row["utilisation"] >= GOAL_UTILISATION
                                        and row["complete"]) else "MISS"
            results["runs"].append(row)
            print(f"  P1 concurrency {concurrency}: {row['ops_per_s']} ops/s "
                  f"({row['ratio']:.1f}x baseline, {row['utilisation']:.0%} of {row['ceiling_ops_per_s']:.0f})",
                  flush=True)
    return results
