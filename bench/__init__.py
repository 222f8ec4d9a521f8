"""lrowatch's benchmarks (`make bench`, `python -m bench [--quick] [--only p1,p2,p3,cold,cadence]`).

Not tests: they never fail the build; they print figures and write
docs/benchmarks.md. Shared helpers for the benchmarks that need the emulators
live here.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from functions.local.topology import ensure_topics as create_topics  # noqa: F401 (used by the benchmarks)

ROOT = Path(__file__).resolve().parents[1]
FIRESTORE_HEAP = "-Xmx2g"  # 100k documents do not fit the local stack's 256 MB heap


def new_project(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def emulators(run_dir: Path | None = None):
    """Both emulators, named in os.environ while they run."""
    from functions.local.emulators import JAVA_HEAP, Emulators

    running = Emulators(run_dir=run_dir)
    running.firestore.argv = [FIRESTORE_HEAP if a == JAVA_HEAP else a for a in running.firestore.argv]
    saved = {k: os.environ.get(k) for k in running.env()}
    with running:
        os.environ.update(running.env())
        try:
            yield running
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextmanager
def simulator(latency_ms: float = 50.0):
    """The Operations API simulator in its own process, as the real API is remote:
    in-process it would share the poller's interpreter lock and bill its CPU to lrowatch."""
    from functions.local.processes import simulator_process
    from functions.simulator.client import SimulatorAdmin

    with simulator_process() as process:
        admin = SimulatorAdmin(process.base_url, timeout_s=120)
        admin.set_faults(latency_ms=latency_ms)
        try:
            yield process, process.base_url, admin
        finally:
            admin.close()


def sim_ops(admin, scripts: list[dict], chunk: int = 2000) -> list[dict]:
    out = []
    for start in range(0, len(scripts), chunk):
        out += admin.create_many(scripts[start:start + chunk])
    return out


def due_records(settings, urls: list[str], policy: dict | None = None, due_in_s: float = -1.0,
                age_s: float = 60.0):
    """Records as submit makes them (parse_submission), submitted `age_s` ago, falling due `due_in_s`
    from now."""
    from functions.domain.record import utcnow
    from functions.domain.submission import parse_submission

    now = utcnow()
    submitted = now - timedelta(seconds=age_s)
    records = []
    for url in urls:
        raw = {"url": url}
        if policy:
            raw["policy"] = policy
        record = parse_submission(raw, submitted, default_policy=settings.default_policy,
                                  notify_url_prefixes=(), shards=settings.shards)
        records.append(record.with_changes(next_poll_at=now + timedelta(seconds=due_in_s)))
    return records


def bulk_write(project: str, collection: str, docs: list[tuple[str, dict]], batch_size: int = 500,
               threads: int = 8) -> float:
    """Write (id, doc) pairs in batches of 500 from parallel threads; returns seconds taken."""
    from google.cloud import firestore

    client = firestore.Client(project=project)
    col = client.collection(collection)
    started = time.monotonic()

    def write(chunk):
        batch = client.batch()
        for doc_id, doc in chunk:
            batch.set(col.document(doc_id), doc)
        batch.commit()

    chunks = [docs[i:i + batch_size] for i in range(0, len(docs), batch_size)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, chunks))
    return time.monotonic() - started


class Timings:
    """Thread-safe wall-clock totals per call site."""

    def __init__(self):
        self._lock = threading.Lock()
        self.total = defaultdict(float)
        self.calls = defaultdict(int)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.total[name] += seconds
            self.calls[name] += 1

    def wrap(self, obj, names: list[str], prefix: str) -> None:
        """Replace obj's methods `names` by timed wrappers (instance attributes)."""
        for name in names:
            original = getattr(obj, name, None)
            if original is None:  # the product's adapters change; time what exists
                continue

            def timed(*args, __original=original, __key=f"{prefix}.{name}", **kwargs):
                started = time.perf_counter()
                try:
                    return __original(*args, **kwargs)
                finally:
                    self.add(__key, time.perf_counter() - started)

            setattr(obj, name, timed)

    def table(self) -> list[dict]:
        return [{"call": k, "calls": self.calls[k], "total_s": round(self.total[k], 3),
                 "mean_ms": round(1000 * self.total[k] / self.calls[k], 2) if self.calls[k] else 0.0}
                for k in sorted(self.total, key=lambda k: -self.total[k])]


def build_poll(settings):
    """The poll service exactly as the functions wire it (functions.wiring.build)."""
    from functions import wiring

    return wiring.build(settings).poll


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
            out[name] = times.user + times.system + getattr(times, "children_user", 0) * 0
        except (psutil.Error, TypeError):
            out[name] = float("nan")
    return out
