"""P3 memory: peak RSS of one poll run over 10,000 and 100,000 pending operations.

Design: every pending operation is a real record in the Firestore emulator
(written in batches of 500 from parallel threads). The same fixed slice of
them (DUE operations) is due now and finished in the simulator; the others
fall due in an hour. One poll run, in a fresh subprocess, polls the slice and
ends when nothing else falls due within its budget. The work done is the same
at both sizes, so any growth of the peak RSS comes from the number of pending
operations (queries, paging, the outbox), which is what "memory flat in the
number of pending operations" is about. (All due with a short budget would
make the work depend on the emulator's query speed over 100k documents
instead.)

Peak RSS is the child's VmHWM from /proc/self/status (its own high-water mark;
ru_maxrss is reported too but is wrong here: Linux carries the pre-exec
high-water mark of the forked parent into it). The child also reports its RSS
after imports and client construction, before the run (its floor).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench import ROOT, bulk_write, create_topics, due_records, new_project, sim_ops

GOAL_MB = 250.0
GOAL_GROWTH = 1.3


def _child() -> None:
    import resource

    import psutil

    from bench import build_poll
    from functions.config import Settings

    settings = Settings(project=os.environ["BENCH_PROJECT"], api_base_url=os.environ["BENCH_API"],
                        poll_budget_s=float(os.environ["BENCH_BUDGET"]), log_level="ERROR")
    service = build_poll(settings)
    store, api, publisher = service._store, service._api, service._publisher
    _ = store.client, publisher.client, api.start_gets([])
    floor = psutil.Process().memory_info().rss
    trace = os.environ.get("BENCH_TRACEMALLOC")
    if trace:  # diagnosis only: tracemalloc slows the run and adds its own memory
        import tracemalloc
        tracemalloc.start(12)
    samples = []
    started = time.monotonic()
    if os.environ.get("BENCH_SAMPLE_RSS"):  # diagnosis: RSS over time, tagged with the call in progress
        import threading
        phase = {"now": "start"}
        for name in ("due", "claim", "commit", "delete_outbox", "outbox", "next_due_at"):
            original = getattr(store, name)

            def tagged(*a, __o=original, __n=name, **k):
                phase["now"] = __n
                return __o(*a, **k)
            setattr(store, name, tagged)
        proc = psutil.Process()

        def sample():
            while not phase.get("stop"):
                samples.append((round(time.monotonic() - started, 2), phase["now"], proc.memory_info().rss >> 20))
                time.sleep(0.05)
        threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    summary = service.run(budget_s=settings.poll_budget_s)
    if samples:
        phase["stop"] = True
        step = max(1, len(samples) // 40)
        print(samples[::step], file=sys.stderr)
    if trace:
        snapshot = tracemalloc.take_snapshot()
        print(f"traced peak {tracemalloc.get_traced_memory()[1] / 2**20:.1f} MB", file=sys.stderr)
        for stat in snapshot.statistics("traceback")[:5]:
            print(stat, *stat.traceback.format()[-8:], sep="\n", file=sys.stderr)
    print("BENCH_RESULT " + json.dumps({
        "peak_rss_mb": _vm_hwm_kib() / 1024.0,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "floor_rss_mb": floor / 2**20, "polled": summary.polled, "published": summary.published,
        "run_s": round(time.monotonic() - started, 2)}), flush=True)


def _vm_hwm_kib() -> float:
    """Peak RSS of this process image. Not ru_maxrss: on Linux that also keeps the high-water mark
    of the forked copy of the parent from before exec (fs/exec.c setmax_mm_hiwater_rss), so it
    grew with the parent's memory (the loaded records), not the child's."""
    import resource

    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure(base_url: str, admin, pending: int, due: int, budget_s: float) -> dict:
    from functions.config import Settings

    settings = Settings(project=new_project("p3"))
    create_topics(settings.project, settings.events_topic, settings.commands_topic)
    done_ops = sim_ops(admin, [{"kind": "generic", "running_s": 0} for _ in range(due)])
    records = due_records(settings, [o["url"] for o in done_ops])
    later = [f"https://documentai.googleapis.com/v1/projects/123456/locations/us/operations/p3-{i:07d}"
             for i in range(pending - due)]
    records += due_records(settings, later, due_in_s=3600.0)
    docs = [(r.id, r.to_doc()) for r in records]
    del records
    load_s = bulk_write(settings.project, settings.collection, docs)
    del docs
    env = {**os.environ, "BENCH_PROJECT": settings.project, "BENCH_API": base_url, "BENCH_BUDGET": str(budget_s),
           "PYTHONPATH": str(ROOT), "LRO_LOG_LEVEL": "WARNING"}
    proc = subprocess.run([sys.executable, "-m", "bench.p3_memory", "--child"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=budget_s + 120)
    if os.environ.get("BENCH_TRACEMALLOC") or os.environ.get("BENCH_SAMPLE_RSS"):
        print(proc.stderr[-6000:])
    line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
    if line is None:
        return {"pending": pending, "due": due, "error": (proc.stderr or proc.stdout)[-1500:], "load_s": load_s}
    result = json.loads(line.split(" ", 1)[1])
    result.update({"pending": pending, "due": due, "load_s": round(load_s, 1)})
    return result


def run(emus, quick: bool = False) -> dict:
    from bench import simulator

    sizes = (2_000, 20_000) if quick else (10_000, 100_000)
    due = 500 if quick else 1000
    budget = 120.0
    results = {"sizes": [], "due_per_run": due, "goal": f"peak RSS <= {GOAL_MB:g} MB and growth <= {GOAL_GROWTH}x"}
    with simulator(50.0) as (_server, base_url, admin):
        for pending in sizes:
            row = measure(base_url, admin, pending, due, budget)
            results["sizes"].append(row)
            print(f"  P3 {pending} pending: {row.get('peak_rss_mb', float('nan')):.1f} MB peak "
                  f"(loaded in {row['load_s']} s)", flush=True)
    rows = results["sizes"]
    if all("peak_rss_mb" in r for r in rows):
        results["growth"] = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        peak = max(r["peak_rss_mb"] for r in rows)
        # The verdict is on memory; a run the budget cut short is flagged (the emulator's queries slow
        # down with collection size: it has no real indexes), not counted as a miss.
        results["complete"] = all(r["polled"] >= r["due"] for r in rows)
        results["verdict"] = "PASS" if peak <= GOAL_MB and results["growth"] <= GOAL_GROWTH else "MISS"
    else:
        results["verdict"] = "ERROR"
    return results


if __name__ == "__main__" and "--child" in sys.argv:
    _child()
