"""Cadence: how soon after an operation falls due does one poll run GET it.

Issue 3, item 2: one run keeps working within its budget, claiming operations as
they fall due and napping until the next due time when idle; the median delay
between an operation's due time and its GET stays under 1 s while the run is not
saturated.

Set-up: the real Firestore and Pub/Sub emulators, the Operations API simulator in
its own process with no added latency (the delay measured is lrowatch's, not the
API's), ~300 operations written straight to Firestore as `submit` would make them,
their next_poll_at spread at random (fixed seed) over 15 s starting a few seconds
after the run begins, so the run starts idle and must pick each one up as it falls
due. One run, its budget covering the whole spread.

Each operation has finished in the simulator, so it is polled once: its due time
is then exactly the one written here (not one the code under test computed), each
operation gives one sample, and every GET is a state change taking the whole path
(claim, GET, record + outbox, publish), the heaviest work a poll does, so the
pipeline behind the GETs is as busy as it gets at this rate. (A re-poll is claimed
by the same due query; its due time is the one the run itself wrote.)

The delay is measured here, independently of the product: a wrapper around the
API client's `start_gets` notes the wall-clock time each GET starts, against the due
time written; the run's own figures (RunSummary.lag_p50_s / lag_p95_s, taken just
before the GET) are shown beside it. Saturation: the wrapper also counts GETs in
flight; the run is unsaturated when that never reaches `poll_concurrency`
(no GET ever waited for a connection).
"""
from __future__ import annotations

import os
import random
import statistics
import threading
import time
from datetime import timedelta

from bench import build_poll, bulk_write, cpu_seconds, create_topics, due_records, new_project, sim_ops

N_OPS = 300
SPREAD_S = 15.0
LEAD_S = 3.0  # the first operation falls due this long after the run starts
CONCURRENCY = 32  # the default poll_concurrency
GOAL_P50_S = 1.0
SEED = 20261123


def _scripts(n: int) -> list[dict]:
    kinds = ("documentai", "vision", "generic")
    return [{"kind": kinds[i % 3], "running_s": 0, "outcome": "succeeded",
             "items": 3 if kinds[i % 3] != "generic" else 0} for i in range(n)]


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _GetProbe:
    """Wraps api.start_gets (a run hands its GETs to the client's event loop, which sends them at
    once unless all `limit` connections are busy): when each operation's GET started, and how many
    are in flight."""

    def __init__(self, api, clock):
        self._lock = threading.Lock()
        self._clock = clock
        self.started: dict[str, list] = {}
        self.in_flight = 0
        self.peak = 0
        self.at_limit = 0  # GETs started while `limit` were already in flight
        self.limit = CONCURRENCY
        original = api.start_gets

        def start_gets(requests):
            now = self._clock()
            with self._lock:
                for ref, _ in requests:
                    self.started.setdefault(ref.url, []).append(now)
                    self.in_flight += 1
                    self.peak = max(self.peak, self.in_flight)
                    if self.in_flight >= self.limit:
                        self.at_limit += 1
            futures = original(requests)
            for future in futures:
                future.add_done_callback(self._finished)
            return futures

        api.start_gets = start_gets

    def _finished(self, _future) -> None:
        with self._lock:
            self.in_flight -= 1


def run_cadence(emus, base_url: str, admin, n: int, spread_s: float, sim_pid: int | None = None) -> dict:
    from functions.config import Settings
    from functions.domain.record import utcnow

    budget = LEAD_S + spread_s + 10.0  # covers the spread, the stop margin and slack
    settings = Settings(project=new_project("cad"), poll_concurrency=CONCURRENCY, poll_budget_s=budget,
                        api_base_url=base_url, log_level="ERROR")
    create_topics(settings.project, settings.events_topic, settings.commands_topic)
    ops = sim_ops(admin, _scripts(n))
    service = build_poll(settings)  # as main.py wires it
    store, api, publisher = service._store, service._api, service._publisher
    _ = store.client, publisher.client, api.start_gets([])  # clients (and the GETs' loop) built before the clock
    probe = _GetProbe(api, utcnow)

    rng = random.Random(SEED)
    offsets = sorted(rng.uniform(0.0, spread_s) for _ in range(n))
    records = due_records(settings, [o["url"] for o in ops], policy={"initial_delay_s": 0})
    # Due times are set from the moment of writing, so the write itself eats into LEAD_S, not the spread.
    base = utcnow() + timedelta(seconds=LEAD_S)
    records = [r.with_changes(next_poll_at=base + timedelta(seconds=off)) for r, off in zip(records, offsets)]
    load_s = bulk_write(settings.project, settings.collection, [(r.id, r.to_doc()) for r in records])
    due = {r.url: r.next_poll_at for r in records}

    pids = {"bench process (poller)": os.getpid(), "firestore emulator": emus.firestore.pid,
            "pubsub emulator": emus.pubsub.pid}
    if sim_pid:
        pids["simulator process"] = sim_pid
    cpu_before = cpu_seconds(pids)
    run_started_at = utcnow()
    started = time.monotonic()
    summary = service.run(budget_s=budget)
    wall = time.monotonic() - started
    cpu_after = cpu_seconds(pids)

    delays = sorted((times[0] - due[url]).total_seconds() for url, times in probe.started.items() if url in due)
    gets = sum(len(t) for t in probe.started.values())
    early = sum(1 for d in delays if d < 0)
    last_due_s = (max(due.values()) - run_started_at).total_seconds()
    polled_all = len(delays) == n
    unsaturated = probe.at_limit == 0
    p50 = statistics.median(delays) if delays else None
    verdict = "PASS" if (polled_all and unsaturated and p50 is not None and p50 < GOAL_P50_S) else "MISS"
    return {
        "operations": n, "spread_s": spread_s, "lead_s": round((min(due.values()) - run_started_at).total_seconds(), 2),
        "budget_s": budget, "concurrency": CONCURRENCY, "load_s": round(load_s, 2),
        "polled_ops": len(delays), "gets": gets, "early_gets": early,
        "delay_p50_s": round(p50, 3) if p50 is not None else None,
        "delay_p95_s": round(_pct(delays, 0.95), 3) if delays else None,
        "delay_max_s": round(delays[-1], 3) if delays else None,
        "delay_min_s": round(delays[0], 3) if delays else None,
        "summary_lag_p50_s": summary.lag_p50_s, "summary_lag_p95_s": summary.lag_p95_s,
        "peak_in_flight": probe.peak, "gets_at_limit": probe.at_limit, "unsaturated": unsaturated,
        "claimed": summary.claimed, "polled": summary.polled, "changed": summary.changed,
        "published": summary.published, "errors": summary.errors, "lost_claims": summary.lost_claims,
        "first_polls_deferred": summary.first_polls_deferred,
        "wall_s": round(wall, 2), "last_due_s": round(last_due_s, 2),
        "ended_after_last_due_s": round(wall - last_due_s, 2),
        "cpu_s": {k: round(cpu_after[k] - cpu_before[k], 1) for k in pids},
        "complete": polled_all, "verdict": verdict,
    }


def run(emus, quick: bool = False) -> dict:
    from bench import simulator

    # Quick mode keeps the rate (20 due per second) and shortens the spread.
    n, spread = (100, 5.0) if quick else (N_OPS, SPREAD_S)
    with simulator(latency_ms=0.0) as (process, base_url, admin):
        result = run_cadence(emus, base_url, admin, n, spread, sim_pid=process.pid)
    result["goal"] = f"median due→GET delay < {GOAL_P50_S:g} s while the run is not saturated"
    print(f"  cadence: {result['polled_ops']}/{n} polled, due→GET p50 {result['delay_p50_s']} s, "
          f"p95 {result['delay_p95_s']} s, max {result['delay_max_s']} s; peak in flight "
          f"{result['peak_in_flight']}/{CONCURRENCY} → {result['verdict']}", flush=True)
    return result
