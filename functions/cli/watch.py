"""`lrowatch watch`: follow an operation (or every operation) as it changes.

Locally the CLI reads the real events: a temporary pull subscription on the
demo's events topic (made before the first read, so no change slips between
the two; deleted on exit). A deployed lrowatch is read over its HTTP surface
instead — polling GET /operations/{id} — so a user needs only the invoker
role, not Pub/Sub access; it shows each state it sees, not every event, with a
live line on a terminal in between. Record reads retry transient failures
(functions.cli.retry), so a blip never ends a watch.
"""
from __future__ import annotations

import sys
import time
import uuid
from typing import Callable

from functions.cli import render
from functions.cli.api import Client
from functions.cli.errors import Unreachable, UsageError
from functions.cli.retry import Backoff

PULL_SLICE_S = 1.0
Emit = Callable[[dict], None]


def watch(client: Client, operation_id: str | None, emit: Emit, *, timeout_s: float | None,
          interval_s: float, backoff: Backoff | None = None) -> dict | None:
    """Emit events until the operation is done or time runs out; returns its last record
    (None when following every operation). Ctrl-C ends a watch of everything quietly."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    get = _reader(client, backoff or Backoff())
    try:
        if client.target.local:
            return _follow_events(client, operation_id, emit, deadline, get)
        if operation_id is None:
            raise UsageError("watching a deployed lrowatch needs an operation id",
                             "to follow every event, subscribe to the events topic (see README)")
        return _follow_record(operation_id, emit, deadline, interval_s, get)
    except KeyboardInterrupt:
        if operation_id:
            raise
        return None


def _reader(client: Client, backoff: Backoff) -> Callable[[str], dict]:
    return lambda operation_id: backoff.call(lambda: client.get(operation_id))


def _follow_events(client: Client, operation_id: str | None, emit: Emit, deadline: float | None,
                   get: Callable[[str], dict]) -> dict | None:
    from functions.config import Settings  # lazily: Pub/Sub clients are slow to import
    from functions.local.topology import Topology

    env = {**(client.target.demo.get("env") or {}), **(client.target.demo.get("emulators") or {})}
    host, project = env.get("PUBSUB_EMULATOR_HOST"), client.target.demo.get("project")
    if not host or not project:
        raise Unreachable("the demo file names no Pub/Sub emulator", "restart the demo with `make demo`")
    settings = Settings(project=project, events_topic=env.get("LRO_EVENTS_TOPIC") or "lro-events")
    with Topology(settings, emulator_host=host) as topology:
        subscription = topology.create_pull_subscription(
            settings.events_topic, f"lrowatch-watch-{uuid.uuid4().hex[:12]}")
        try:
            record = get(operation_id) if operation_id else None
            if record and _announce(record):
                return record
            seen: set[str] = set()
            while deadline is None or time.monotonic() < deadline:
                slice_s = PULL_SLICE_S if deadline is None else min(PULL_SLICE_S, deadline - time.monotonic())
                batch = [m.json() for m in topology.pull_all(subscription, timeout=max(slice_s, 0.1))]
                # Pub/Sub may repeat or reorder: event_id dedupes, sequence orders.
                fresh = [e for e in batch if e.get("event_id") not in seen
                         and (operation_id is None or (e.get("operation") or {}).get("id") == operation_id)]
                for event in sorted(fresh, key=lambda e: e.get("sequence") or 0):
                    seen.add(event.get("event_id"))
                    emit(event)
                    if operation_id and event.get("done") is True:
                        return get(operation_id)
            return get(operation_id) if operation_id else None
        finally:
            topology.subscriber.delete_subscription(request={"subscription": subscription})


def _follow_record(operation_id: str, emit: Emit, deadline: float | None, interval_s: float,
                   get: Callable[[str], dict]) -> dict:
    started = time.monotonic()
    record = get(operation_id)
    if _announce(record):
        return record
    last = (record.get("sequence"), record.get("progress_percent"))
    previous_state = record.get("state")
    line = render.LiveLine()
    try:
        while deadline is None or time.monotonic() + interval_s < deadline:
            line.show(render.wait_line([record], time.monotonic() - started))
            time.sleep(interval_s)
            record = get(operation_id)
            if (record.get("sequence"), record.get("progress_percent")) == last:
                continue
            line.close()
            last = (record.get("sequence"), record.get("progress_percent"))
            emit(_as_event(record, previous_state))
            previous_state = record["state"]
            if record.get("done"):
                break
    finally:
        line.close()
    return record


def _announce(record: dict) -> bool:
    """Say where the operation stands (on stderr, so --json output stays pure); True if done."""
    print(f"{record['id']}: {record['state']} (sequence {record.get('sequence')})"
          + ("; already finished" if record.get("done") else "; waiting for changes, Ctrl-C to stop"),
          file=sys.stderr)
    return bool(record.get("done"))


def _as_event(record: dict, previous_state: str | None) -> dict:
    """A record seen by polling, shaped like the state-change event it stands for."""
    return {
        "type": "lro.state_changed",
        "sequence": record.get("sequence"),
        "operation": {k: record.get(k) for k in ("id", "name", "service", "url")},
        "state": record.get("state"),
        "previous_state": previous_state,
        "done": record.get("done"),
        "provider_state": record.get("provider_state"),
        "progress_percent": record.get("progress_percent"),
        "error": record.get("error"),
        "items": record.get("items"),
        **{k: record[k] for k in ("eta", "eta_low", "eta_high", "eta_basis") if k in record},
        "labels": record.get("labels"),
        "correlation_id": record.get("correlation_id"),
        "observed_at": record.get("updated_at"),
    }
