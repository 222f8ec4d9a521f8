"""One poll run: leases, fan-out, discovery, and the pipeline that polls.

Crash safety comes from three rules:
- a run works only the shards whose leases it holds (functions.services.ownership),
  and every record write is guarded by the version it was decided on, so no two
  runs GET one operation at once, and a crashed run's shards (with their due
  operations, which it could not move on) are free again within one lease;
- a change and its event are written in one atomic commit (the outbox), and the
  event is published afterwards, so a crash between the two loses nothing;
- every run first publishes what earlier runs left in the outbox, with the same
  event_id and sequence, so consumers can dedupe (functions.services.outbox).

The polling itself is functions.services.pipeline; this module is the run around
it: a Cloud Scheduler retry of a run still going is recognised by its schedule
time; a backlog larger than one run can handle fans out into shard runs (one
Pub/Sub message each, pushed back to poll); watch scopes are listed. The design
and its cost are in docs/poll-design.md.
"""
from __future__ import annotations

import logging
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, fields
from typing import Callable

from functions.config import Settings
from functions.domain import runs
from functions.domain.events import Message
from functions.domain.record import Record, rfc3339, utcnow
from functions.domain.tracking import Decision, Rules, after_poll
from functions.ports import Durations, Leases, OperationsApi, PollStore, Publisher
from functions.services.discovery import Discovery
from functions.services.outbox import OutboxRelay
from functions.services.ownership import ShardOwnership
from functions.services.pipeline import Pipeline
from functions.services.schedule import LearntSchedule

log = logging.getLogger(__name__)

STOP_MARGIN_S = 2.0
LAG_SAMPLES = 10_000


@dataclass
class RunSummary:
    run_id: str
    shard: int | None = None
    skipped: str | None = None
    claimed: int = 0  # due records taken to GET, under the run's shard leases
    polled: int = 0
    changed: int = 0
    published: int = 0
    errors: int = 0
    publish_errors: int = 0
    deferred_events: int = 0
    recovered: int = 0
    lost_claims: int = 0  # due records left alone: their shard's lease was lost (another run has them)
    throttled: int = 0  # due records that waited for their service's rate limit
    first_polls_deferred: int = 0
    discovered: int = 0
    shard_runs: int = 0  # shard runs this run requested (each logs its own summary)
    lag_p50_s: float | None = None
    lag_p95_s: float | None = None
    duration_s: float = 0.0

    def __post_init__(self):
        self._lock = threading.Lock()
        self._lags: list[float] = []

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:  # the run's threads (loop, writers, publisher) count concurrently
            setattr(self, name, getattr(self, name) + n)

    def lag(self, seconds: float) -> None:
        with self._lock:
            if len(self._lags) < LAG_SAMPLES:
                self._lags.append(seconds)

    def close(self, duration_s: float) -> None:
        self.duration_s = round(duration_s, 3)
        if self._lags:
            ordered = sorted(self._lags)
            self.lag_p50_s = round(statistics.median(ordered), 4)
            self.lag_p95_s = round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 4)

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class PollService:
    def __init__(self, settings: Settings, store: PollStore, api: OperationsApi, publisher: Publisher, *,
                 leases: Leases | None = None, durations: Durations | None = None,
                 discovery: Discovery | None = None, fan_out: bool = False, clock: Callable = utcnow,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 fanout_threshold: int | None = None):
        """leases: run markers and shard ownership (without them this is the only poller);
        durations: the learnt schedule; discovery: watch scopes; fan_out: publish shard runs when
        the backlog outgrows one run. Each is optional: without it that feature is off."""
        self._settings = settings
        self._store = store
        self._api = api
        self._publisher = publisher
        self._leases = leases
        self._schedule = LearntSchedule(durations, monotonic)
        self._discovery = discovery
        self._fan_out_enabled = fan_out
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._fanout_threshold = fanout_threshold or runs.fanout_threshold(settings.poll_concurrency)
        self._rules = Rules(settings.max_permanent_errors, settings.not_found_grace_s, settings.retention_days)

    def run(self, budget_s: float | None = None, shard: int | None = None, *,
            schedule_time: str | None = None) -> RunSummary:
        started = self._monotonic()
        budget = min(budget_s or self._settings.poll_budget_s, self._settings.poll_budget_s)
        # Stop starting GETs a little before the budget ends (one in flight may take its timeout).
        stop_at = started + budget - min(STOP_MARGIN_S, budget / 4)
        summary = RunSummary(run_id=uuid.uuid4().hex[:16], shard=shard)
        marker = None
        ownership = ShardOwnership(self._leases, summary.run_id, max(1, self._settings.shards), shard,
                                   self._settings.lease_s, clock=self._clock, monotonic=self._monotonic)
        try:
            marker = self._mark(summary, budget, shard, schedule_time)
            if summary.skipped is None and shard is not None and not ownership.acquire():
                summary.skipped = f"shard {shard} is owned by another run"  # a duplicate delivery, say
            if summary.skipped is None:
                self._work(summary, ownership, shard, budget, stop_at)
        finally:
            ownership.release()
            self._schedule.save()
            self._unmark(summary, marker)
            summary.close(self._monotonic() - started)
        log.info("poll run finished", extra={"summary": summary.to_json()})
        return summary

    def _work(self, summary: RunSummary, ownership: ShardOwnership, shard: int | None, budget: float,
              stop_at: float) -> None:
        relay = OutboxRelay(self._settings, self._store, self._publisher, summary,
                            clock=self._clock, monotonic=self._monotonic)
        # Earlier runs' leftovers go out first, with the same event_id and sequence. (It is also the
        # run's first Firestore call: the client libraries' first calls must not race each other.)
        relay.start()
        pipeline = Pipeline(self._settings, self._store, self._api, relay, ownership, self._schedule, summary,
                            clock=self._clock, monotonic=self._monotonic, sleep=self._sleep, decide=self._decide)
        if shard is None:
            if self._discovery is not None:
                summary.discovered = self._discovery.run(summary.run_id, stop_at).tracked
            targets = self._fan_out_targets()
            # If no shard run could be requested, this run does what it can itself.
            if targets and self._fan_out(targets, budget, summary):
                return
            ownership.acquire()  # what it could not take yet, it takes when a late run frees it
        pipeline.run(stop_at)

    def _decide(self, record: Record, result) -> Decision:
        """What a GET's answer does to a record: the pure rules, with the learnt schedule's statistics."""
        return after_poll(record, result, self._clock(), self._rules, stats=self._schedule.stats_for(record))

    def _mark(self, summary: RunSummary, budget: float, shard: int | None,
              schedule_time: str | None) -> tuple[str, object] | None:
        """Take the run's Scheduler-tick marker (dedupes retries); sets `skipped` when it is taken."""
        if self._leases is None or not schedule_time:
            return None
        now = self._clock()
        key = runs.schedule_key(schedule_time, shard)
        version = self._leases.acquire(key, summary.run_id, now, runs.lease_end(now, budget), kind="schedule")
        if not version:
            summary.skipped = "a run for this schedule time is running or done"
            return None
        return key, version

    def _unmark(self, summary: RunSummary, marker: tuple[str, object] | None) -> None:
        """A schedule marker stays a while after the run (a late retry is still a duplicate)."""
        if marker is None:
            return
        now = self._clock()
        try:
            self._leases.renew(dict([marker]), runs.marker_kept_until(now), finished_at=now)
        except Exception:  # the marker ends on its own; never fail a run over it
            log.warning("could not keep the run marker %s", marker[0], exc_info=True)

    # Fan-out ------------------------------------------------------------------
    def _fan_out_targets(self) -> list[int]:
        if not self._fan_out_enabled or self._settings.shards <= 1:
            return []
        backlog = self._store.due_count(self._clock(), None, self._fanout_threshold + 1)
        return runs.shards_to_fan_out(backlog, self._fanout_threshold, self._settings.shards)

    def _fan_out(self, targets: list[int], budget: float, summary: RunSummary) -> int:
        """Request one run per shard over Pub/Sub (pushed back to poll) and return at once.

        Pub/Sub carries the identity (the push subscription's OIDC token), so no code
        mints tokens or calls URLs; a duplicate delivery is skipped by the shard lease.
        """
        log.info("due backlog exceeds one run: fanning out", extra={"shards": len(targets)})
        requested_at = rfc3339(self._clock())
        messages = [Message(runs.shard_request(k, budget, requested_at), {"type": runs.SHARD_MESSAGE_TYPE})
                    for k in targets]
        results = self._publisher.publish(self._settings.topic_path(self._settings.poll_shards_topic), messages)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:  # those shards wait for the next tick; if none went out, run() works unsharded
            log.warning("could not request %d shard runs: %s", len(failed), str(failed[0])[:200])
        summary.shard_runs = len(results) - len(failed)
        return summary.shard_runs
