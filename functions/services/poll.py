"""One poll run: claim due operations, GET them, record changes, publish events.

Crash safety comes from three rules:
- a claim is a lease (next_poll_at pushed past the lease), so a crashed run's
  operations fall due again when the lease ends;
- a change and its event are written in one atomic batch (the outbox), and the
  event is published afterwards, so a crash between the two loses nothing;
- every run first publishes what earlier runs left in the outbox, with the same
  event_id and sequence, so consumers can dedupe (functions.services.outbox).

Within its budget a run works as a pipeline, each stage on its own threads so
that none waits on another: due operations are read ahead a page at a time
(`poll_batch` rows, walking the backlog with a cursor); while up to
`poll_concurrency` GETs are in flight the next ones are claimed (one BatchWrite
each); results are recorded in groups (quiet ones in a BatchWrite, changes with
their outbox entries in one atomic commit, each record guarded by its own write
time); and events are published in batches on one thread, which keeps each
operation's events in order. When nothing is due the run naps until the next due
time, so an operation is polled within a fraction of a second of falling due.

Around that: a Cloud Scheduler retry of a run still going is recognised by its
schedule time; a shard run owns its shard for its duration; a backlog larger
than one run can handle fans out into shard runs (one Pub/Sub message each,
pushed back to poll); watch scopes are listed.
"""
from __future__ import annotations

import contextvars
import logging
import statistics
import threading
import time
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Callable

from functions.adapters.firestore_leases import lease_key
from functions.config import Settings
from functions.domain import learning, runs
from functions.domain.adaptive import DurationStats
from functions.domain.events import Message
from functions.domain.record import rfc3339, utcnow
from functions.domain.tracking import ApiFailure, Decision, Rules, after_poll
from functions.services.outbox import OutboxRelay

log = logging.getLogger(__name__)

STOP_MARGIN_S = 2.0
IDLE_NAP_S = 0.2
# How often a run retries the outbox while some operation's events are held back.
FLUSH_EVERY_S = 5.0
# Poll results are recorded together once this many wait, or this long; at most
# WRITERS groups are being written at once (results wait meanwhile, so groups grow).
WRITE_GROUP = 100
WRITE_MAX_WAIT_S = 0.1
WRITERS = 2
# GETs claimed and queued per worker at most (a claim is one round trip for many operations).
AHEAD = 4
STATS_TTL_S = 60.0
LAG_SAMPLES = 10_000


@dataclass
class RunSummary:
    run_id: str
    shard: int | None = None
    skipped: str | None = None
    claimed: int = 0
    polled: int = 0
    changed: int = 0
    published: int = 0
    errors: int = 0
    publish_errors: int = 0
    deferred_events: int = 0
    recovered: int = 0
    lost_claims: int = 0
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
        with self._lock:  # poll workers count concurrently
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


@dataclass(frozen=True)
class _Polled:
    """A worker's outcome, still to be recorded."""

    claimed: Any
    result: Any
    decision: Decision

    @property
    def outboxed(self) -> bool:
        """Whether it has messages to publish, so its record and outbox entries commit together."""
        return self.decision.changed or self.decision.command is not None


def _submit(pool: Executor, fn: Callable, *args) -> Future:
    """Run fn on the pool in a copy of this context, so its log lines carry the request's trace."""
    return pool.submit(contextvars.copy_context().run, fn, *args)


class _DueQueue:
    """Due operations read ahead a page at a time, on a thread of their own.

    The query walks the backlog with a cursor rather than starting from the top each
    time; at the end of the backlog it starts over (after a short rest). Less than two
    pages are held, so memory stays flat in the number of pending operations.
    """

    def __init__(self, store, shard: int | None, page_size: int, clock: Callable,
                 monotonic: Callable[[], float], reader: Executor):
        self._store, self._shard, self._page_size = store, shard, page_size
        self._clock, self._monotonic, self._reader = clock, monotonic, reader
        self._items: deque = deque()
        self._cursor: Any = None
        self._rest_until = 0.0
        self._taken: set[str] = set()  # handed out since the read in flight began: stale in its page
        self.reading: Future | None = None

    def take(self, n: int, busy: set[str]) -> list:
        """Up to n candidates (none of `busy`'s), and a read ahead started when running low."""
        self._harvest(busy)
        taken = []
        while self._items and len(taken) < n:
            candidate = self._items.popleft()
            if candidate.record.id not in busy:
                taken.append(candidate)
        ids = {c.record.id for c in taken}
        self._taken |= ids
        if self._read_ahead():
            self._taken = ids
        return taken

    @property
    def empty(self) -> bool:
        return not self._items and self.reading is None

    def wake(self) -> None:
        """Read from the top at once (after the run napped until something fell due)."""
        self._rest_until = 0.0

    def _harvest(self, busy: set[str]) -> None:
        if self.reading is None or not self.reading.done():
            return
        reading, self.reading = self.reading, None
        page, self._cursor = reading.result()
        stale = busy | self._taken | {c.record.id for c in self._items}
        self._items.extend(c for c in page if c.record.id not in stale)
        self._taken = set()
        if self._cursor is None:  # the end of the backlog: rest a moment before starting over
            self._rest_until = self._monotonic() + IDLE_NAP_S

    def _read_ahead(self) -> bool:
        if self.reading is not None or len(self._items) >= self._page_size:
            return False
        if self._cursor is None and (self._items or self._monotonic() < self._rest_until):
            return False  # start over from the top only once what is queued has gone
        self.reading = _submit(self._reader, self._store.due_page, self._clock(), self._page_size,
                               self._shard, self._cursor)
        return True


class PollService:
    def __init__(self, settings: Settings, store, api, publisher, *, leases=None, durations=None,
                 discovery=None, fan_out: bool = False, clock: Callable = utcnow,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 fanout_threshold: int | None = None):
        """leases: run markers and shard ownership; durations: adaptive schedule; discovery: watch
        scopes; fan_out: publish shard runs when the backlog outgrows one run. Each is optional:
        without it that feature is off."""
        self._settings = settings
        self._store = store
        self._api = api
        self._publisher = publisher
        self._leases = leases
        self._durations = durations
        self._discovery = discovery
        self._fan_out_enabled = fan_out
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._fanout_threshold = fanout_threshold or runs.fanout_threshold(settings.poll_concurrency)
        self._rules = Rules(settings.max_permanent_errors, settings.not_found_grace_s, settings.retention_days)
        self._stats: dict[str, DurationStats | None] = {}
        self._stats_read_at = 0.0
        self._learnt: dict[str, DurationStats] = {}
        self._learnt_lock = threading.Lock()

    # The run ------------------------------------------------------------------
    def run(self, budget_s: float | None = None, shard: int | None = None, *,
            schedule_time: str | None = None) -> RunSummary:
        started = self._monotonic()
        budget = min(budget_s or self._settings.poll_budget_s, self._settings.poll_budget_s)
        # Stop claiming a little before the budget ends (an in-flight GET may take its timeout).
        stop_at = started + budget - min(STOP_MARGIN_S, budget / 4)
        summary = RunSummary(run_id=uuid.uuid4().hex[:16], shard=shard)
        held: list[str] = []
        try:
            if self._enter(summary, budget, shard, schedule_time, held):
                relay = OutboxRelay(self._settings, self._store, self._publisher, summary,
                                    clock=self._clock, monotonic=self._monotonic)
                relay.start()
                if shard is None and self._discovery is not None:
                    summary.discovered = self._discovery.run(summary.run_id, stop_at).tracked
                targets = self._fan_out_targets(shard)
                # If no shard run could be requested, this run does what it can itself.
                if not (targets and self._fan_out(targets, budget, summary)):
                    self._work(shard, stop_at, relay, summary)
        finally:
            self._save_learnt()
            self._leave(summary, held)
            summary.close(self._monotonic() - started)
        log.info("poll run finished", extra={"summary": summary.to_json()})
        return summary

    def _enter(self, summary: RunSummary, budget: float, shard: int | None, schedule_time: str | None,
               held: list[str]) -> bool:
        """Take the run's leases: its Scheduler tick (dedupes retries) and its shard."""
        if self._leases is None:
            return True
        now = self._clock()
        until = runs.lease_end(now, budget)
        if schedule_time:
            key = lease_key("run", schedule_time, "" if shard is None else str(shard))
            if not self._leases.acquire(key, summary.run_id, now, until, kind="schedule"):
                summary.skipped = "a run for this schedule time is running or done"
                return False
            held.append(key)
        if shard is not None:
            key = lease_key("shard", str(shard))
            if not self._leases.acquire(key, summary.run_id, now, until, kind="shard"):
                summary.skipped = f"shard {shard} is owned by another run"
                return False
            held.append(key)
        return True

    def _leave(self, summary: RunSummary, held: list[str]) -> None:
        now = self._clock()
        for key in held:
            try:
                # A schedule marker stays (a late retry is still a duplicate); a shard is freed.
                until = runs.marker_kept_until(now) if key.startswith("run-") else now
                self._leases.extend(key, summary.run_id, until, finished_at=now)
            except Exception:  # the lease ends on its own; never fail a run over it
                log.warning("could not release lease %s", key, exc_info=True)

    # Fan-out ------------------------------------------------------------------
    def _fan_out_targets(self, shard: int | None) -> list[int]:
        if shard is not None or not self._fan_out_enabled or self._settings.shards <= 1:
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
        messages = [Message({"type": runs.SHARD_MESSAGE_TYPE, "shard": k, "budget_s": budget,
                             "requested_at": requested_at}, {"type": runs.SHARD_MESSAGE_TYPE})
                    for k in targets]
        results = self._publisher.publish(self._settings.topic_path(self._settings.poll_shards_topic), messages)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:  # those shards wait for the next tick; if none went out, run() works unsharded
            log.warning("could not request %d shard runs: %s", len(failed), str(failed[0])[:200])
        summary.shard_runs = len(results) - len(failed)
        return summary.shard_runs

    # The pipeline -------------------------------------------------------------
    def _work(self, shard: int | None, stop_at: float, relay: OutboxRelay, summary: RunSummary) -> None:
        concurrency = self._settings.poll_concurrency
        in_flight: dict[Future, str] = {}
        results: list[_Polled] = []
        results_since = self._monotonic()
        writing: list[Future] = []
        to_publish: list[tuple[str, Message]] = []
        publishing: Future | None = None
        claiming: Future | None = None
        last_flush = self._monotonic()
        with ThreadPoolExecutor(concurrency, thread_name_prefix="poll") as pool, \
                ThreadPoolExecutor(WRITERS, thread_name_prefix="poll-write") as writers, \
                ThreadPoolExecutor(3, thread_name_prefix="poll-io") as io:  # query, claims, publishing
            queue = _DueQueue(self._store, shard, self._settings.poll_batch, self._clock, self._monotonic, io)
            while True:
                running = self._monotonic() < stop_at
                if claiming is not None and claiming.done():
                    for claimed, due_at in claiming.result():
                        in_flight[_submit(pool, self._poll_one, claimed, due_at, summary)] = claimed.record.id
                    claiming = None
                # Keep more waves claimed behind the GETs in flight, so workers never wait on a claim.
                room = AHEAD * concurrency - len(in_flight)
                if running and claiming is None and room >= max(1, concurrency // 2):
                    due = queue.take(room, set(in_flight.values()))
                    if due:
                        claiming = _submit(io, self._claim, due, summary)
                pending = [f for f in (queue.reading, claiming) if f is not None and not f.done()]
                waitables = [*in_flight, *writing, *pending]
                if waitables:
                    wait(waitables, timeout=0.05, return_when=FIRST_COMPLETED)
                for future in [f for f in in_flight if f.done()]:
                    operation_id = in_flight.pop(future)
                    if not results:
                        results_since = self._monotonic()
                    try:
                        results.append(future.result())
                    except Exception:  # _poll_one isolates failures; this is the last line of defence
                        summary.count("errors")
                        log.error("a poll worker failed; the operation falls due again when its lease ends",
                                  extra={"operation_id": operation_id}, exc_info=True)
                for future in [f for f in writing if f.done()]:
                    writing.remove(future)
                    to_publish += [(kind, message) for d in future.result()
                                   for kind, message in (("events", d.event), ("commands", d.command)) if message]
                if results and len(writing) < WRITERS and (
                        len(results) >= WRITE_GROUP or not in_flight
                        or self._monotonic() - results_since >= WRITE_MAX_WAIT_S):
                    group, results = results[:WRITE_GROUP], results[WRITE_GROUP:]
                    results_since = self._monotonic()
                    writing.append(_submit(writers, self._write, group, pool, summary))
                if publishing is None or publishing.done():
                    if publishing is not None:
                        publishing.result()  # raise what publishing raised
                        publishing = None
                    # One publisher at a time: an operation's events go out in the order recorded.
                    if to_publish:
                        publishing, to_publish = _submit(io, relay.publish, to_publish), []
                    elif relay.blocked and self._monotonic() - last_flush >= FLUSH_EVERY_S:
                        publishing, last_flush = _submit(io, relay.flush), self._monotonic()
                if not running and not in_flight and not results and not writing and claiming is None:
                    break
                if running and not in_flight and not results and not writing and claiming is None and queue.empty:
                    if self._nap_until_due(shard, stop_at):
                        queue.wake()
                    else:
                        stop_at = self._monotonic()
            if publishing is not None:
                publishing.result()
        if to_publish:
            relay.publish(to_publish)
        if relay.blocked:
            relay.flush()

    def _claim(self, due: list, summary: RunSummary) -> list[tuple[Any, datetime]]:
        """Lease due operations (one BatchWrite); returns those this run holds, with their due times."""
        now = self._clock()
        due = self._defer_first_polls(due, now, summary)
        if not due:
            return []
        lease_until = now + timedelta(seconds=self._settings.lease_s)
        claimed = self._store.claim_many(due, summary.run_id, lease_until, now)
        summary.count("lost_claims", len(due) - len(claimed))
        summary.count("claimed", len(claimed))
        due_at = {c.record.id: c.record.next_poll_at for c in due}
        self._refresh_stats([c.record for c in claimed])
        return [(c, due_at[c.record.id]) for c in claimed]

    def _defer_first_polls(self, due: list, now: datetime, summary: RunSummary) -> list:
        """New operations of a known kind wait until near their expected finish (adaptive first poll)."""
        if self._durations is None:
            return due
        fresh = [c for c in due if not c.record.polls and not c.record.seen]
        if not fresh:
            return due
        self._refresh_stats([c.record for c in fresh], first=True)
        later = []
        for c in fresh:
            when = learning.first_poll_at(c.record, self._stats.get(learning.any_kind_key(c.record)))
            if when is not None and when > now:
                later.append((c, when))
        if not later:
            return due
        self._store.reschedule_many(later, now)
        summary.count("first_polls_deferred", len(later))
        deferred = {c.record.id for c, _ in later}
        return [c for c in due if c.record.id not in deferred]

    def _poll_one(self, claimed, due_at: datetime, summary: RunSummary) -> _Polled:
        summary.lag((self._clock() - due_at).total_seconds())
        try:
            result = self._api.get(claimed.record.ref, claimed.record.quota_project)
            summary.count("polled")
            decision = self._decide(claimed.record, result)
        except Exception as exc:  # whatever one answer does is that operation's error, never the run's
            result = _own_failure(exc, claimed.record, "could not handle the API's answer")
            decision = self._decide(claimed.record, result)
        if decision.record.consecutive_errors > claimed.record.consecutive_errors:
            summary.count("errors")
        return _Polled(claimed, result, decision)

    def _decide(self, record, result) -> Decision:
        stats = self._stats_for(record)
        decision = after_poll(record, result, self._clock(), self._rules, stats=stats)
        duration = learning.finished_duration(record, decision.record, self._clock())
        if duration is not None and self._durations is not None:
            self._learn(decision.record, duration)
        return decision

    def _write(self, group: list[_Polled], pool, summary: RunSummary) -> list[Decision]:
        """Record a group of results (see _write_group); if that fails, record them one by one,
        so that one record Firestore refuses stays that operation's error and the others land.
        What the group already committed is skipped then: its lease is no longer this run's."""
        try:
            return self._write_group(group, pool, summary)
        except Exception:
            log.warning("recording a group of poll results failed: recording them one by one", exc_info=True)
        alone = [_submit(pool, self._commit_alone, p, summary) for p in group]
        return [d for d in (f.result() for f in alone) if d is not None and (d.event or d.command)]

    def _commit_alone(self, polled: _Polled, summary: RunSummary) -> Decision | None:
        claimed = polled.claimed
        try:
            return self._commit_change(claimed, polled.result, polled.decision, summary)
        except Exception as exc:
            failure = _own_failure(exc, claimed.record, "could not record the poll result")
        try:  # the record as it was, plus this error: small, and it backs off like any failure
            summary.count("errors")
            decision = after_poll(claimed.record, failure, self._clock(), self._rules)
            return self._commit_change(claimed, failure, decision, summary)
        except Exception:
            log.error("could not record an operation's error either; it falls due again when its lease ends",
                      extra={"operation_id": claimed.record.id}, exc_info=True)
            return None

    def _write_group(self, group: list[_Polled], pool, summary: RunSummary) -> list[Decision]:
        """Record a group of results; returns the decisions with messages to publish, as committed.

        Quiet results go in one BatchWrite, each write guarded on its own; results with
        messages go with their outbox entries in one atomic commit, which fails as a whole
        if any record's guard fails. What lost its guard (someone wrote meanwhile) is redone
        one by one, so only the conflicting operation is decided again on fresh data.
        """
        quiet = [p for p in group if not p.outboxed]
        outboxed = [p for p in group if p.outboxed]
        retry = []
        if quiet:
            times = self._store.commit_quiet([(p.claimed, p.decision) for p in quiet])
            retry += [_submit(pool, self._redo, p, summary) for p, t in zip(quiet, times) if t is None]
        committed: list[Decision] = []
        if outboxed and self._store.commit_many([(p.claimed, p.decision) for p in outboxed]) is not None:
            committed = [p.decision for p in outboxed]
            summary.count("changed", sum(d.changed for d in committed))
        elif outboxed:
            retry += [_submit(pool, self._commit_change, p.claimed, p.result, p.decision, summary)
                      for p in outboxed]
        return committed + [d for d in (f.result() for f in retry) if d is not None and
                            (d.event is not None or d.command is not None)]

    def _commit_change(self, claimed, result, decision: Decision, summary: RunSummary) -> Decision | None:
        """Record and outbox entry atomically; on a write race, decide again on fresh data."""
        for _ in range(3):
            if self._store.commit(claimed, decision) is not None:
                if decision.changed:
                    summary.count("changed")
                return decision
            # Someone else (handle recording a cancel, say) wrote meanwhile.
            fresh = self._store.get_with_time(claimed.record.id)
            if fresh is None or fresh.record.lease_owner != summary.run_id:
                return None
            claimed = fresh
            decision = after_poll(claimed.record, result, self._clock(), self._rules,
                                  stats=self._stats_for(claimed.record))
        log.warning("gave up recording a poll result after repeated write conflicts",
                    extra={"operation_id": claimed.record.id})
        return None

    def _redo(self, polled: _Polled, summary: RunSummary) -> Decision | None:
        fresh = self._store.get_with_time(polled.claimed.record.id)
        if fresh is None or fresh.record.lease_owner != summary.run_id:
            return None
        decision = self._decide(fresh.record, polled.result)
        return self._commit_change(fresh, polled.result, decision, summary)

    def _nap_until_due(self, shard: int | None, stop_at: float) -> bool:
        """Sleep until the next operation falls due; False when none does within the budget."""
        next_due = self._store.next_due_at(shard)
        remaining = stop_at - self._monotonic()
        wait_s = remaining if next_due is None else (next_due - self._clock()).total_seconds()
        if wait_s >= remaining:
            return False
        # Short naps so that operations submitted meanwhile are picked up quickly.
        self._sleep(max(0.0, min(wait_s, IDLE_NAP_S)))
        return True

    # Adaptive schedule --------------------------------------------------------
    def _refresh_stats(self, records: list, first: bool = False) -> None:
        """Read the duration summaries these records need (cached for STATS_TTL_S)."""
        if self._durations is None:
            return
        if self._monotonic() - self._stats_read_at > STATS_TTL_S:
            self._stats, self._stats_read_at = {}, self._monotonic()
        keys = {learning.any_kind_key(r) for r in records}
        if not first:
            keys |= {k for k in (learning.kind_key(r) for r in records) if k}
        missing = [k for k in keys if k not in self._stats]
        if missing:
            found = self._durations.read(missing)
            for key in missing:
                self._stats[key] = found.get(key)

    def _stats_for(self, record) -> DurationStats | None:
        if self._durations is None:
            return None
        key = learning.kind_key(record)
        stats = self._stats.get(key) if key else None
        return stats if stats is not None else self._stats.get(learning.any_kind_key(record))

    def _learn(self, record, duration_s: float) -> None:
        with self._learnt_lock:
            for key in filter(None, (learning.kind_key(record), learning.any_kind_key(record))):
                self._learnt.setdefault(key, DurationStats()).add(duration_s)

    def _save_learnt(self) -> None:
        with self._learnt_lock:
            learnt, self._learnt = self._learnt, {}
        if learnt and self._durations is not None:
            try:
                self._durations.add(learnt)
            except Exception:  # statistics are an optimisation: never fail a run over them
                log.warning("could not save duration statistics", exc_info=True)


def _own_failure(exc: Exception, record, what: str) -> ApiFailure:
    """An exception while polling one operation, as that operation's failure: permanent, so
    that an answer lrowatch can never handle ends it FAILED after max_permanent_errors."""
    log.error("%s; recorded as the operation's error", what,
              extra={"operation_id": record.id, "operation": record.name}, exc_info=exc)
    return ApiFailure("permanent", {"code": 500, "status": "INTERNAL",
                                    "message": f"lrowatch {what}: {type(exc).__name__}: {str(exc)[:300]}"})
