"""`make demo`: the whole system running locally, on real parts, in about a minute.

Starts the Firestore and Pub/Sub emulators, the Operations API simulator and
the four functions as functions-framework processes with Pub/Sub push; submits
a realistic mix of operations (over HTTP and over Pub/Sub); drives `poll` the
way Cloud Scheduler would; cancels one operation mid-way; shows every state
change live; then checks the outcome and stops everything it started.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import requests

from functions.local.processes import DEFAULT_RUN_DIR
from functions.local.stack import LocalStack
from functions.simulator.client import SimulatorAdmin

TIME_LIMIT_S = 75
POLL_RUN_S = 8  # one compressed "minute" of Cloud Scheduler: a run with this budget
DEMO_POLICY = {"initial_delay_s": 1, "multiplier": 1.5, "max_delay_s": 3}


@dataclass
class DemoOperation:
    label: str
    script: dict
    expected: str
    via: str = "http"  # or "pubsub"
    cancel_after_s: float | None = None
    expect_failed_items: int | None = None
    op: dict = field(default_factory=dict)
    id: str = ""


def scenario() -> list[DemoOperation]:
    return [
        DemoOperation("vision import (2 of 20 items fail)", dict(
            kind="vision", type="IMPORT_PRODUCT_SETS", running_s=5, outcome="succeeded", items=20,
            failed_items=2), "SUCCEEDED", expect_failed_items=2),
        DemoOperation("vision purge", dict(kind="vision", type="PURGE_PRODUCTS", running_s=3,
                                           outcome="succeeded"), "SUCCEEDED"),
        DemoOperation("docai batch (1 of 12 docs fails)", dict(
            kind="documentai", queued_s=1, running_s=7, outcome="succeeded", items=12, failed_items=1,
            human_review_errors=1), "SUCCEEDED", expect_failed_items=1),
        DemoOperation("docai batch that fails", dict(
            kind="documentai", queued_s=1, running_s=4, outcome="failed",
            error={"code": 3, "message": "Invalid GCS input: gs://demo/in/ has no documents."}), "FAILED"),
        DemoOperation("docai batch cancelled mid-way", dict(
            kind="documentai", queued_s=1, running_s=120, outcome="succeeded", cancel_delay_s=2),
            "CANCELLED", cancel_after_s=5),
        DemoOperation("speech (via Pub/Sub)", dict(kind="generic", running_s=9, outcome="succeeded"),
                      "SUCCEEDED", via="pubsub"),
        # APIs the old hand-written registry refused, found in Google's discovery documents:
        DemoOperation("bigtable admin (operations/... name)", dict(
            kind="generic", host="bigtableadmin.googleapis.com", version="v2", running_s=4,
            name=f"operations/projects/demo/instances/i1/clusters/c1/locations/us-east1-b/operations/{_id()}"),
            "SUCCEEDED"),
        DemoOperation("cloud run (regional host)", dict(
            kind="generic", host="us-central1-run.googleapis.com", version="v2", running_s=6,
            name=f"projects/demo/locations/us-central1/operations/{_id()}"), "SUCCEEDED"),
        DemoOperation("firestore export of (default)", dict(
            kind="firestore", running_s=5, items=3,
            name=f"projects/demo/databases/(default)/operations/{_id()}"), "SUCCEEDED"),
    ]


def _id() -> str:
    return os.urandom(8).hex()


class Demo:
    def __init__(self, stack: LocalStack, out=sys.stdout):
        self.stack = stack
        self.out = out
        self.sim = SimulatorAdmin(stack.urls["simulator"])
        self.submit_url = stack.urls["submit"]
        self.ops = scenario()
        self.events: list[dict] = []
        self.poll_runs: list[dict] = []
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._tty = out.isatty()

    # Set-up ---------------------------------------------------------------------
    def submit_all(self) -> None:
        created = self.sim.create_many([o.script for o in self.ops])
        for demo_op, op in zip(self.ops, created):
            demo_op.op = op
            body = {"url": op["url"], "labels": {"demo": "yes"}, "correlation_id": demo_op.label[:40],
                    "policy": DEMO_POLICY}
            if demo_op.via == "pubsub":
                self.stack.topology.publish(self.stack.settings.submissions_topic, body)
                demo_op.id = self._wait_for_record(op)
            else:
                response = requests.post(f"{self.submit_url}/operations", json=body, timeout=30)
                response.raise_for_status()
                demo_op.id = response.json()["id"]
        self.say(f"submitted {len(self.ops)} operations "
                 f"({sum(o.via == 'pubsub' for o in self.ops)} via the submissions topic)")

    def _wait_for_record(self, op: dict) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            listed = requests.get(f"{self.submit_url}/operations", params={"label.demo": "yes", "limit": 50},
                                  timeout=10).json()["operations"]
            for record in listed:
                if record["name"] == op["name"]:
                    return record["id"]
            time.sleep(0.2)
        raise RuntimeError(f"the Pub/Sub submission of {op['name']} never arrived")

    # Drivers --------------------------------------------------------------------
    def scheduler(self) -> None:
        """Back-to-back poll runs, as a compressed minutely Cloud Scheduler job."""
        while not self._stop.is_set():
            try:
                self.poll_runs.append(self.stack.poll(budget_s=POLL_RUN_S))
                if not self.poll_runs[-1]["claimed"]:
                    self._stop.wait(1)  # nothing was due: the next "minute" comes a little later
            except Exception as exc:  # shown in the summary, and the demo fails
                self.problems.append(f"poll run failed: {exc}")
                self._stop.wait(1)

    def cancel_due(self, started: float) -> None:
        for demo_op in self.ops:
            if demo_op.cancel_after_s is not None and time.monotonic() - started >= demo_op.cancel_after_s:
                response = requests.post(f"{self.submit_url}/operations/{demo_op.id}:cancel",
                                         json={"reason": "demo: no longer needed"}, timeout=10)
                self.say(f"POST /operations/{demo_op.id[:8]}…:cancel → {response.status_code}")
                demo_op.cancel_after_s = None

    def collect_events(self) -> None:
        for message in self.stack.topology.pull_all("demo-tap", timeout=0.3):
            event = message.json()
            self.events.append(event)
            label = next((o.label for o in self.ops if o.id == event["operation"]["id"]), "?")
            if event["type"] == "lro.state_changed":
                extra = f" items={event['items']}" if event.get("items") else ""
                self.say(f"event #{event['sequence']} {label}: {event['previous_state']} → {event['state']}"
                         f" ({event.get('provider_state') or '-'}){extra}")
            else:
                self.say(f"event {event['type']} {label}: {event.get('outcome')}")

    # Display --------------------------------------------------------------------
    def records(self) -> dict[str, dict]:
        listed = requests.get(f"{self.submit_url}/operations", params={"label.demo": "yes", "limit": 50},
                              timeout=10).json()["operations"]
        return {r["id"]: r for r in listed}

    def table(self, records: dict[str, dict]) -> str:
        rows = [f"{'operation':36} {'state':10} {'provider':11} {'items':10} {'polls':>5}  handled by `handle`"]
        for demo_op in self.ops:
            r = records.get(demo_op.id, {})
            items = r.get("items") or {}
            items_text = f"{items.get('failed', 0)}/{items.get('total')} bad" if items else "-"
            rows.append(f"{demo_op.label[:36]:36} {r.get('state', '?'):10} {(r.get('provider_state') or '-')[:11]:11} "
                        f"{items_text:10} {r.get('polls', 0):>5}  {handled(r)}")
        return "\n".join(rows)

    def say(self, line: str) -> None:
        print(f"  {line}", file=self.out, flush=True)

    # Run --------------------------------------------------------------------------
    def run(self) -> bool:
        self.stack.topology.create_pull_subscription(self.stack.settings.events_topic, "demo-tap", ordering=True)
        self.submit_all()
        started = time.monotonic()
        driver = threading.Thread(target=self.scheduler, name="scheduler", daemon=True)
        driver.start()
        last_table = ""
        try:
            while time.monotonic() - started < TIME_LIMIT_S:
                self.cancel_due(started)
                self.collect_events()
                records = self.records()
                table = self.table(records)
                if table != last_table:
                    print(f"\n[{time.monotonic() - started:5.1f}s]\n{table}\n", file=self.out, flush=True)
                    last_table = table
                if self.finished(records):
                    break
                time.sleep(0.5)
        finally:
            self._stop.set()
        driver.join(timeout=POLL_RUN_S + 15)
        self.collect_events()
        return self.summary(self.records(), time.monotonic() - started)

    def finished(self, records: dict[str, dict]) -> bool:
        return len(records) == len(self.ops) and all(
            r["state"] in ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "TIMED_OUT") and r.get("completion")
            for r in records.values())

    def summary(self, records: dict[str, dict], elapsed: float) -> bool:
        problems = list(self.problems)
        for demo_op in self.ops:
            r = records.get(demo_op.id, {})
            if r.get("state") != demo_op.expected:
                problems.append(f"{demo_op.label}: {r.get('state')} (expected {demo_op.expected})")
            if demo_op.expect_failed_items is not None and (r.get("items") or {}).get("failed") != demo_op.expect_failed_items:
                problems.append(f"{demo_op.label}: items {r.get('items')}")
            if not r.get("completion"):
                problems.append(f"{demo_op.label}: handle recorded no completion")
            changes = [e for e in self.events if e["type"] == "lro.state_changed" and e["operation"]["id"] == demo_op.id]
            sequences = sorted({e["sequence"] for e in changes})
            if sequences != list(range(1, r.get("sequence", 0) + 1)):
                problems.append(f"{demo_op.label}: events {sequences} for sequence {r.get('sequence')}")
        ids = [e["event_id"] for e in self.events]
        cancelled = [e for e in self.events if e["type"] == "lro.cancel_outcome"]
        if not cancelled or cancelled[0].get("outcome") != "sent":
            problems.append(f"cancel outcome: {[e.get('outcome') for e in cancelled]}")
        stats = self.sim.stats()
        print("\n" + "=" * 78, file=self.out)
        print(self.table(records), file=self.out)
        print("=" * 78, file=self.out)
        print(f"summary: {len(self.ops)} operations in {elapsed:.1f} s; "
              f"{sum(1 for e in self.events if e['type'] == 'lro.state_changed')} state-change events "
              f"({len(ids) - len(set(ids))} duplicate deliveries), {len(cancelled)} cancel outcome(s); "
              f"{len(self.poll_runs)} poll runs; {sum(stats['gets'].values())} GETs, "
              f"{sum(stats['cancels'].values())} :cancel call(s) to the Operations API simulator",
              file=self.out)
        for problem in problems:
            print(f"PROBLEM: {problem}", file=self.out)
        print("demo " + ("OK" if not problems else "FAILED"), file=self.out, flush=True)
        return not problems


def handled(record: dict) -> str:
    parts = []
    cancel = record.get("cancel")
    if cancel:
        parts.append(f"cancel {cancel.get('outcome')}")
    completion = record.get("completion")
    if completion:
        parts.append(f"completed in {completion.get('duration_s', 0):.1f}s")
    return ", ".join(parts) or "-"


# What `--keep` suggests trying (tests/e2e/test_cli_documented_commands.py runs them).
TRY_COMMANDS = ("lrowatch --local list", "lrowatch --local watch", "lrowatch --local wait ID")


def keep_running(stack: LocalStack) -> None:
    """`--keep`: leave the stack up, polled every few seconds, until Ctrl-C (for trying the CLI)."""
    print("\nthe stack stays up for you (Ctrl-C stops it). Try, in another terminal"
          " (ID: an id from the list):\n" + "\n".join(f"  .venv/bin/{c}" for c in TRY_COMMANDS), flush=True)
    try:
        while True:
            stack.poll(budget_s=POLL_RUN_S)
            time.sleep(1)
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> int:
    keep = "--keep" in (sys.argv[1:] if argv is None else argv)
    print("lrowatch demo: starting the Firestore and Pub/Sub emulators, the Operations API simulator "
          "and the four functions…", flush=True)
    began = time.monotonic()
    with LocalStack(project="lrowatch-demo") as stack:
        DEFAULT_RUN_DIR.mkdir(exist_ok=True)
        state_file = DEFAULT_RUN_DIR / "demo.json"
        state_file.write_text(json.dumps({"project": stack.project, **stack.urls, "env": stack.env}))
        print(f"up in {time.monotonic() - began:.1f} s: submit at {stack.urls['submit']}", flush=True)
        try:
            ok = Demo(stack).run()
            if keep:
                keep_running(stack)
        except Exception as exc:
            print(f"demo FAILED: {exc}\n{stack.log_tails()}", flush=True)
            ok = False
        finally:
            state_file.unlink(missing_ok=True)
    print("stopped everything the demo started.", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
