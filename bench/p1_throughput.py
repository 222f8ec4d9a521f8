"""P1 throughput and cost: operations polled per second by one poll run, and what each poll costs.

Set-up: the real Firestore and Pub/Sub emulators, the Operations API simulator
in its own process with 50 ms latency on every call, N due operations written
straight to Firestore as `submit` would make them, due now. Two paths:

- all changes: every operation has finished in the simulator (80 % SUCCEEDED,
  10 % FAILED, 10 % CANCELLED), so every poll is a state change and takes the
  whole path: GET, record + outbox entry, publish, outbox delete;
- quiet: every operation is RUNNING, already seen RUNNING, and still running,
  so every poll changes no state: GET, one record write.

No operation falls due again within the run, so it ends when the N are polled.
Firestore reads, writes and deletes are counted at the adapter boundary
(functions.adapters.firestore_usage), over the whole run: per poll, the records'
and the outbox's (outbox recovery included); per run, the side collections'
(shard leases, learnt durations), which do not grow with the polls.

Baselines, same run, same emulators and simulator: a naive loop over a subset,
one operation at a time: GET → Firestore write (→ synchronous publish, on the
all-changes path).
"""
from __future__ import annotations

import os
import time

from bench import Timings, build_poll, bulk_write, cpu_seconds, create_topics, due_records, new_project, sim_ops

LATENCY_S = 0.05
GOAL_RATIO = 40.0
GOAL_UTILISATION = 0.50
GOAL_CPU_MS = 1.5
GOAL_QUIET_WRITES = 1.0
POLICY = {"initial_delay_s": 0}
# Quiet records: polled once, then not again for ten minutes (beyond the run).
QUIET_POLICY = {"initial_delay_s": 600, "multiplier": 1, "max_delay_s": 600, "jitter": 0}
PATHS = ("all changes", "quiet")


def _scripts(n: int, quiet: bool) -> list[dict]:
    kinds = ("documentai", "vision", "generic")
    scripts = []
    for i in range(n):
        kind = kinds[i % 3]
        outcome = "failed" if i % 10 == 0 else "cancelled" if i % 10 == 1 else "succeeded"
        scripts.append({"kind": kind, "running_s": 36000 if quiet else 0, "outcome": outcome,
                        "items": 3 if kind != "generic" else 0})
    return scripts


def _load(settings, admin, n: int, quiet: bool = False) -> list:
    from functions.domain.states import State

    ops = sim_ops(admin, _scripts(n, quiet))
    records = due_records(settings, [o["url"] for o in ops], policy=QUIET_POLICY if quiet else POLICY)
    if quiet:  # seen RUNNING by an earlier poll: this one changes no state
        records = [r.with_changes(state=State.RUNNING, seen=True, polls=1, sequence=1) for r in records]
    bulk_write(settings.project, settings.collection, [(r.id, r.to_doc()) for r in records])
    return records


def run_lrowatch(emus, base_url: str, admin, n: int, concurrency: int, budget_s: float,
                 sim_pid: int | None = None, quiet: bool = False, profile_to: str | None = None) -> dict:
    from functions.config import Settings

    settings = Settings(project=new_project("p1"), poll_concurrency=concurrency, poll_budget_s=budget_s,
                        api_base_url=base_url, log_level="ERROR")
    create_topics(settings.project, settings.events_topic, settings.commands_topic)
    load_started = time.monotonic()
    _load(settings, admin, n, quiet)
    load_s = time.monotonic() - load_started
    service = build_poll(settings)  # as main.py wires it: leases, learnt durations, outbox relay
    store, api, publisher = service._store, service._api, service._publisher
    _ = store.client, publisher.client, api.start_gets([])  # clients (and the GETs' loop) built before the clock
    timings = Timings()
    timings.wrap(store, ["due_page", "commit", "delete_outbox", "outbox_pages", "next_due_at",
                         "get_versioned"], "firestore")
    timings.wrap(api, ["start_gets"], "api")  # the hand-off to the event loop; each GET's wait is its latency
    timings.wrap(publisher, ["publish"], "pubsub")
    pids = {"bench process (poller)": os.getpid(), "firestore emulator": emus.firestore.pid,
            "pubsub emulator": emus.pubsub.pid}
    if sim_pid:
        pids["simulator process"] = sim_pid
    cpu_before = cpu_seconds(pids)
    usage_before, side_before = store.usage.counts(), store.side_usage.counts()
    spy = _py_spy(profile_to)
    started = time.monotonic()
    summary = service.run(budget_s=budget_s)
    wall = time.monotonic() - started
    _stop(spy)
    cpu_after = cpu_seconds(pids)
    own = store.usage.counts() - usage_before
    side = store.side_usage.counts() - side_before
    usage = own + side
    polled = summary.polled
    poller_cpu = cpu_after["bench process (poller)"] - cpu_before["bench process (poller)"]
    rate = polled / wall if wall else 0.0
    ceiling = concurrency / LATENCY_S
    return {
        "concurrency": concurrency, "operations": n, "polled": polled, "claimed": summary.claimed,
        "changed": summary.changed, "published": summary.published, "errors": summary.errors,
        "publish_errors": summary.publish_errors, "lost_claims": summary.lost_claims,
        "wall_s": round(wall, 2), "ops_per_s": round(rate, 1), "ceiling_ops_per_s": ceiling,
        "utilisation": rate / ceiling, "complete": polled >= n, "load_s": round(load_s, 1),
        "cpu_s": {k: round(cpu_after[k] - cpu_before[k], 1) for k in pids},
        "cpu_ms_per_get": round(1000 * poller_cpu / polled, 2) if polled else None,
        "path": "quiet" if quiet else "all changes",
        "firestore": {"reads": usage.reads, "writes": usage.writes, "deletes": usage.deletes},
        # Per poll: everything the run did, over its polls (what the cost table uses); own: the records' and
        # the outbox's alone; per run: the side collections' (leases, learnt durations), whatever the polls.
        "per_poll": _per(usage, polled),
        "per_poll_own": _per(own, polled),
        "per_run_side": {"reads": side.reads, "writes": side.writes, "deletes": side.deletes},
        "throttled": summary.throttled,
        "profile": timings.table(),
    }


def _per(counts, polled: int) -> dict:
    return {k: round(getattr(counts, k) / polled, 3) if polled else None for k in ("reads", "writes", "deletes")}


def _py_spy(path: str | None):
    """py-spy sampling this process (every thread) while the run goes, when asked and installed."""
    import shutil
    import subprocess
    import sys

    spy = shutil.which("py-spy") or str(__import__("pathlib").Path(sys.executable).with_name("py-spy"))
    if not path or not os.path.exists(spy):
        return None
    proc = subprocess.Popen([spy, "record", "--pid", str(os.getpid()), "--rate", "200", "--format", "raw",
                             "--output", path, "--nonblocking"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the run starts
    return proc


def _stop(proc) -> None:
    import signal

    if proc is not None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()


def run_baseline(base_url: str, admin, n: int, quiet: bool = False) -> dict:
    """Sequential: GET → write the record (→ publish and wait), one operation at a time."""
    import requests
    from google.cloud import firestore, pubsub_v1

    from functions.config import Settings
    from functions.domain.record import utcnow
    from functions.domain.tracking import after_poll

    settings = Settings(project=new_project("p1base"), api_base_url=base_url)
    create_topics(settings.project, settings.events_topic)
    records = _load(settings, admin, n, quiet)
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
    return {"operations": n, "wall_s": round(wall, 2), "ops_per_s": round(n / wall, 2), "profile": timings.table(),
            "path": "quiet" if quiet else "all changes"}


def run(emus, quick: bool = False, concurrencies: tuple[int, ...] = (32, 64), profile: bool = True) -> dict:
    from bench import ROOT, simulator

    n = 1000 if quick else 5000
    n_base = 100 if quick else 300
    budget = 90.0 if quick else 240.0
    results = {"latency_ms": LATENCY_S * 1000, "operations": n, "baseline_operations": n_base,
               "goal": (f">= {GOAL_RATIO:g}x the naive baseline, >= {GOAL_UTILISATION:.0%} of concurrency/latency, "
                        f"<= {GOAL_CPU_MS:g} ms poller CPU per GET, <= {GOAL_QUIET_WRITES:g} write per quiet poll"),
               "runs": [], "baselines": {}}
    with simulator(LATENCY_S * 1000) as (process, base_url, admin):
        for path in PATHS:
            quiet = path == "quiet"
            base = run_baseline(base_url, admin, n_base, quiet=quiet)
            results["baselines"][path] = base
            for concurrency in concurrencies:
                spy_path = None
                if profile and concurrency == concurrencies[0]:
                    spy_path = str(ROOT / ".run" / f"p1-{'quiet' if quiet else 'changes'}.pyspy")
                    os.makedirs(os.path.dirname(spy_path), exist_ok=True)
                row = run_lrowatch(emus, base_url, admin, n, concurrency, budget, sim_pid=process.pid,
                                   quiet=quiet, profile_to=spy_path)
                if spy_path and os.path.exists(spy_path):
                    from bench import flame
                    row["hot_spots"] = flame.top(spy_path)
                row["ratio"] = row["ops_per_s"] / base["ops_per_s"]
                writes_ok = not quiet or (row["per_poll_own"]["writes"] or 0) <= GOAL_QUIET_WRITES
                row["verdict"] = "PASS" if (row["ratio"] >= GOAL_RATIO and row["utilisation"] >= GOAL_UTILISATION
                                            and (row["cpu_ms_per_get"] or 99) <= GOAL_CPU_MS and writes_ok
                                            and row["complete"]) else "MISS"
                results["runs"].append(row)
                print(f"  P1 {path}, concurrency {concurrency}: {row['ops_per_s']} ops/s "
                      f"({row['ratio']:.1f}x baseline, {row['utilisation']:.0%} of {row['ceiling_ops_per_s']:.0f}), "
                      f"{row['cpu_ms_per_get']} ms CPU/GET, per poll {row['per_poll']}", flush=True)
    results["baseline"] = results["baselines"]["all changes"]
    return results
