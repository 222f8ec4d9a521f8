"""One poll run: claim due operations, GET them, record changes, publish events.

Crash safety comes from three rules:
- a claim is a lease (next_poll_at pushed past the lease), so a crashed run's
  operations fall due again when the lease ends;
- a change and its event are written in one atomic batch (the outbox), and the
  event is published afterwards, so a crash between the two loses nothing;
- every run first publishes what earlier runs left in the outbox, with the same
  event_id and sequence, so consumers can dedupe.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Callable

from functions.config import Settings
from functions.domain.events import Message, outbox_id
from functions.domain.record import utcnow
from functions.domain.tracking import Decision, Rules, after_poll

log = logging.getLogger(__name__)

STOP_MARGIN_S = 2.0
# The outbox entries a live run may still be publishing are left to it this long.
OUTBOX_GRACE_S = 10.0
IDLE_NAP_S = 0.25


@dataclass
class RunSummary:
    run_id: str
    claimed: int = 0
    polled: int = 0
    changed: int = 0
    published: int = 0
    errors: int = 0
    publish_errors: int = 0
    recovered: int = 0
    lost_claims: int = 0
    duration_s: float = 0.0

    def __post_init__(self):
        self._lock = threading.Lock()

    def count(self, field: str, n: int = 1) -> None:
        with self._lock:  # poll workers count concurrently
            setattr(self, field, getattr(self, field) + n)

    def to_json(self) -> dict:
        return asdict(self)


class PollService:
    def __init__(self, settings: Settings, store, api, publisher, *, clock: Callable = utcnow,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._settings = settings
        self._store = store
        self._api = api
        self._publisher = publisher
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._rules = Rules(settings.max_permanent_errors, settings.not_found_grace_s, settings.retention_days)

    def run(self, budget_s: float | None = None, shard: int | None = None) -> RunSummary:
        started = self._monotonic()
        budget = min(budget_s or self._settings.poll_budget_s, self._settings.poll_budget_s)
        # Stop claiming a little before the budget ends (an in-flight GET may take its timeout).
        stop_at = started + budget - min(STOP_MARGIN_S, budget / 4)
        summary = RunSummary(run_id=uuid.uuid4().hex[:16])
        self._flush_outbox(summary)
        with ThreadPoolExecutor(self._settings.poll_concurrency, thread_name_prefix="poll") as pool:
            while self._monotonic() < stop_at:
                now = self._clock()
                due = self._store.due(now, self._settings.poll_batch, shard)
                if not due:
                    if not self._nap_until_due(shard, stop_at):
                        break
                    continue
                decisions = [d for d in pool.map(lambda c: self._poll_one(c, summary), due) if d]
                self._publish([d for d in decisions if d.event or d.command], summary)
        summary.duration_s = round(self._monotonic() - started, 3)
        log.info("poll run finished", extra={"summary": summary.to_json()})
        return summary

    def _nap_until_due(self, shard: int | None, stop_at: float) -> bool:
        """Sleep until the next operation falls due; False when none does within the budget."""
        next_due = self._store.next_due_at(shard)
        remaining = stop_at - self._monotonic()
        if next_due is None:
            wait = remaining
        else:
            wait = (next_due - self._clock()).total_seconds()
        if wait >= remaining:
            return False
        # Short naps so that operations submitted meanwhile are picked up quickly.
        self._sleep(max(0.0, min(wait, IDLE_NAP_S)))
        return True

    def _poll_one(self, candidate, summary: RunSummary) -> Decision | None:
        now = self._clock()
        claimed = self._store.claim(candidate, summary.run_id,
                                    now + timedelta(seconds=self._settings.lease_s), now)
        if claimed is None:
            summary.count("lost_claims")
            return None
        summary.count("claimed")
        result = self._api.get(claimed.record.ref, claimed.record.quota_project)
        summary.count("polled")
        for _ in range(3):
            decision = after_poll(claimed.record, result, self._clock(), self._rules)
            if decision.record.consecutive_errors > claimed.record.consecutive_errors:
                summary.count("errors")
            if self._store.commit(claimed, decision) is not None:
                if decision.changed:
                    summary.count("changed")
                return decision
            # Someone else (handle recording a cancel, say) wrote meanwhile: decide again on fresh data.
            fresh = self._store.get_with_time(claimed.record.id)
            if fresh is None or fresh.record.lease_owner != summary.run_id:
                return None
            claimed = fresh
        log.warning("gave up recording a poll result after repeated write conflicts",
                    extra={"operation_id": claimed.record.id})
        return None

    def _publish(self, decisions: list[Decision], summary: RunSummary) -> None:
        events = [d.event for d in decisions if d.event]
        commands = [d.command for d in decisions if d.command]
        self._publish_and_forget(events, "events", summary)
        self._publish_and_forget(commands, "commands", summary)

    def _publish_and_forget(self, messages: list[Message], topic_kind: str, summary: RunSummary) -> list[str]:
        """Publish, then delete what was published from the outbox; failures stay for a later run."""
        if not messages:
            return []
        topic = self._settings.topic_path(
            self._settings.events_topic if topic_kind == "events" else self._settings.commands_topic)
        results = self._publisher.publish(topic, messages)
        done = []
        for message, result in zip(messages, results):
            if isinstance(result, Exception):
                summary.count("publish_errors")
                log.warning("publish failed; the event stays in the outbox",
                            extra={"event_id": message.data.get("event_id"), "error": str(result)[:300]})
            else:
                summary.count("published")
                done.append(outbox_id(topic_kind, message))
        if done:
            self._store.delete_outbox(done)
        return done

    def _flush_outbox(self, summary: RunSummary) -> None:
        """Publish what earlier runs recorded but did not publish (crash, Pub/Sub outage)."""
        older_than = self._clock() - timedelta(seconds=OUTBOX_GRACE_S)
        entries = self._store.outbox(older_than)
        for kind in ("events", "commands"):
            messages = [e.message for e in entries if e.topic == kind]
            before = summary.published
            self._publish_and_forget(messages, kind, summary)
            summary.count("recovered", summary.published - before)
