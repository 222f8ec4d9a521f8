"""The cost of tracking 1,000 operations, at list prices, from what P1 and P2 measured.

Job mix: the P2 single-kind workload (Document AI-style batch jobs lasting
3 s to 3 h, log-uniform), 1,000 operations, each with two state changes
(PENDING → RUNNING → a terminal state). GETs per operation come from P2's
simulation of each strategy; Firestore reads, writes and deletes per poll, and
poller CPU per GET, from P1's counts on each path (quiet, all changes).

Side by side: the same tracking as a Cloud Workflows connector call (each
polling attempt is a billed internal step) and as google-api-core's
`Operation.result()` in a VM (GETs cost nothing; the VM does, while it waits).

Prices are list prices (USD, no free tier), with their sources; check the
pages for today's figures.
"""
from __future__ import annotations

OPERATIONS = 1000
CHANGES_PER_OP = 2
EVENT_BYTES = 2000  # an event with its metadata; Pub/Sub bills at least 1,000 bytes a message
DELIVERIES_PER_EVENT = 2  # the publish, and handle's push subscription

PRICES = {
    "firestore_read": (0.06 / 100_000, "https://cloud.google.com/firestore/pricing (document reads, $0.06 per 100,000)"),
    "firestore_write": (0.18 / 100_000, "https://cloud.google.com/firestore/pricing (document writes, $0.18 per 100,000)"),
    "firestore_delete": (0.02 / 100_000, "https://cloud.google.com/firestore/pricing (document deletes, $0.02 per 100,000)"),
    "pubsub_byte": (40.0 / 2**40, "https://cloud.google.com/pubsub/pricing (message delivery, $40 per TiB)"),
    "cpu_second": (0.000024, "https://cloud.google.com/run/pricing (request-based billing, $0.000024 per vCPU-second)"),
    "gib_second": (0.0000025, "https://cloud.google.com/run/pricing (request-based billing, $0.0000025 per GiB-second)"),
    "workflows_step": (0.01 / 1000, "https://cloud.google.com/workflows/pricing (internal steps, $0.01 per 1,000; "
                                    "each connector polling attempt is a step)"),
    "vm_hour": (0.0168, "https://cloud.google.com/compute/vm-instance-pricing (e2-small, us-central1, $0.0168 an hour)"),
}
# The poll function's size (infra: 512Mi, 1 vCPU), and a Workflows execution's fixed steps
# around the connector call (call, assign, return).
POLL_GIB = 0.5
WORKFLOW_FIXED_STEPS = 3
# api-core: a VM holding 1,000 waiting threads for as long as the longest job (3 h).
VM_HOURS = 3.0


def _row(p2: dict, prefix: str) -> dict | None:
    workload = next((w for w in p2.get("workloads", []) if w["name"].startswith("single kind")), None)
    if workload is None:
        return None
    return next((r for r in workload["rows"] if r["strategy"].startswith(prefix)), None)


def _path(p1: dict, path: str) -> dict | None:
    return next((r for r in p1.get("runs", []) if r.get("path") == path and r.get("per_poll")), None)


def run(p1: dict, p2: dict) -> dict:
    lro_row = _row(p2, "lrowatch default Policy + adaptation")
    api_core = _row(p2, "google-api-core")
    workflows = _row(p2, "Cloud Workflows connector")
    quiet, changes = _path(p1, "quiet"), _path(p1, "all changes")
    if not (lro_row and api_core and workflows and quiet and changes):
        return {"error": "needs P1 (both paths) and P2 in the same run"}
    price = {k: v for k, (v, _) in PRICES.items()}
    gets = lro_row["calls_per_op"] * OPERATIONS
    changed = CHANGES_PER_OP * OPERATIONS
    quiet_polls = max(0.0, gets - changed)

    def per(path: dict, key: str) -> float:
        return path["per_poll"][key] or 0.0

    reads = quiet_polls * per(quiet, "reads") + changed * per(changes, "reads")
    writes = OPERATIONS + quiet_polls * per(quiet, "writes") + changed * per(changes, "writes")  # + each creation
    deletes = quiet_polls * per(quiet, "deletes") + changed * per(changes, "deletes")
    cpu_s = (quiet_polls * quiet["cpu_ms_per_get"] + changed * changes["cpu_ms_per_get"]) / 1000
    pubsub_bytes = changed * DELIVERIES_PER_EVENT * max(1000, EVENT_BYTES)
    lrowatch = {
        "Firestore reads": reads * price["firestore_read"],
        "Firestore writes": writes * price["firestore_write"],
        "Firestore deletes": deletes * price["firestore_delete"],
        "Pub/Sub": pubsub_bytes * price["pubsub_byte"],
        "function CPU + memory (marginal)": cpu_s * (price["cpu_second"] + POLL_GIB * price["gib_second"]),
    }
    steps = (workflows["calls_per_op"] + WORKFLOW_FIXED_STEPS) * OPERATIONS
    return {
        "operations": OPERATIONS,
        "job_mix": "P2 single kind: log-uniform 3 s..3 h, two state changes each",
        "gets_per_op": {"lrowatch": lro_row["calls_per_op"], "workflows": workflows["calls_per_op"],
                        "api_core": api_core["calls_per_op"]},
        "counts": {"GETs": round(gets), "Firestore reads": round(reads), "Firestore writes": round(writes),
                   "Firestore deletes": round(deletes), "poller CPU s": round(cpu_s, 1),
                   "Pub/Sub bytes": pubsub_bytes},
        "lrowatch": {k: round(v, 5) for k, v in lrowatch.items()},
        "lrowatch_total": round(sum(lrowatch.values()), 4),
        "fixed_poll_month": round(30 * 24 * 60 * 50 * (price["cpu_second"] + POLL_GIB * price["gib_second"]), 2),
        "workflows_total": round(steps * price["workflows_step"], 4),
        "workflows_steps": round(steps),
        "api_core_total": round(VM_HOURS * price["vm_hour"], 4),
        "prices": {k: {"usd": v, "source": src} for k, (v, src) in PRICES.items()},
        "goal": "reported, not judged",
    }
