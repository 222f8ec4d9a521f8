"""Scale: one backlog worked by one poll process, then by two shard processes.

Set-up as P1's quiet path (records running and seen, GETs at 50 ms, each polled
once), with 2 shards. Run 1: one process, one unsharded run (it holds both
shards). Run 2: a fresh backlog of the same size, two processes started
together, each a shard run of its own shard (as fan-out starts them). Each
process is a fresh interpreter built by functions.wiring, as a function
instance would be; the machine's two cores are shared by the pollers, both
emulators and the simulator, so this shows how far one more shard process goes
on *this* machine, not on Cloud Run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench import ROOT, bulk_write, cpu_seconds, create_topics, due_records, new_project, sim_ops

LATENCY_MS = 50.0
SHARDS = 2


def _worker() -> None:
    """One poll run in this process; prints its summary and CPU as JSON."""
    import resource

    from functions import wiring
    from functions.config import Settings

    settings = Settings(project=os.environ["BENCH_PROJECT"], api_base_url=os.environ["BENCH_API"],
                        shards=SHARDS, poll_budget_s=float(os.environ["BENCH_BUDGET"]), log_level="ERROR")
    service = wiring.build(settings).poll
    _ = service._store.client, service._publisher.client, service._api.start_gets([])
    shard = os.environ.get("BENCH_SHARD")
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    summary = service.run(budget_s=settings.poll_budget_s, shard=int(shard) if shard else None)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"polled": summary.polled, "wall_s": wall, "cpu_s": cpu, "skipped": summary.skipped}),
          flush=True)


def _load(admin, settings, n: int) -> None:
    from functions.domain.states import State

    from bench.p1_throughput import QUIET_POLICY, _scripts

    ops = sim_ops(admin, _scripts(n, quiet=True))
    records = [r.with_changes(state=State.RUNNING, seen=True, polls=1, sequence=1)
               for r in due_records(settings, [o["url"] for o in ops], policy=QUIET_POLICY)]
    bulk_write(settings.project, settings.collection, [(r.id, r.to_doc()) for r in records])


def _run(emus, base_url: str, admin, n: int, shards: list[int | None], budget: float, sim_pid: int) -> dict:
    from functions.config import Settings

    settings = Settings(project=new_project("scale"), shards=SHARDS, api_base_url=base_url)
    create_topics(settings.project, settings.events_topic, settings.commands_topic)
    _load(admin, settings, n)
    env = {**os.environ, "BENCH_PROJECT": settings.project, "BENCH_API": base_url, "BENCH_BUDGET": str(budget)}
    procs = []
    for shard in shards:
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.scale", "--worker"], cwd=ROOT, text=True,
                                      env={**env, "BENCH_SHARD": "" if shard is None else str(shard)},
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    pids = {"firestore emulator": emus.firestore.pid, "pubsub emulator": emus.pubsub.pid, "simulator": sim_pid}
    before = cpu_seconds(pids)
    started = time.monotonic()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    runs = [json.loads(proc.stdout.readline()) for proc in procs]
    wall = time.monotonic() - started
    after = cpu_seconds(pids)
    for proc in procs:
        proc.wait(timeout=60)
    polled = sum(r["polled"] for r in runs)
    # A run lasts until nothing is due within its budget: its own wall time is when its work ended.
    busy = max(r["wall_s"] for r in runs)
    return {"processes": len(procs), "operations": n, "polled": polled, "wall_s": round(busy, 2),
            "ops_per_s": round(polled / busy, 1) if busy else 0.0,
            "poller_cpu_s": [round(r["cpu_s"], 1) for r in runs],
            "cpu_ms_per_get": round(1000 * sum(r["cpu_s"] for r in runs) / polled, 2) if polled else None,
            "other_cpu_s": {k: round(after[k] - before[k], 1) for k in pids}, "elapsed_s": round(wall, 1)}


def run(emus, quick: bool = False) -> dict:
    from bench import simulator

    n = 1000 if quick else 4000
    budget = 60.0 if quick else 120.0
    with simulator(LATENCY_MS) as (process, base_url, admin):
        one = _run(emus, base_url, admin, n, [None], budget, process.pid)
        two = _run(emus, base_url, admin, n, list(range(SHARDS)), budget, process.pid)
    gain = two["ops_per_s"] / one["ops_per_s"] if one["ops_per_s"] else float("nan")
    print(f"  scale: 1 process {one['ops_per_s']} ops/s, 2 shard processes {two['ops_per_s']} ops/s "
          f"({gain:.2f}x)", flush=True)
    return {"runs": [one, two], "gain": round(gain, 2), "latency_ms": LATENCY_MS, "goal": "reported, not judged"}


if __name__ == "__main__":
    if "--worker" in sys.argv:
        _worker()
