"""The work of one poll run: due records → GET → decide → commit → publish.

One decide-and-commit path: a GET's answer is decided (functions.domain.tracking)
on the version of the record it was read with, and committed guarded by that
version (functions.ports.PollStore.commit). Where someone else wrote the record
since (handle recording a cancel, say), the record is read again and the same
answer decided again on the fresh version, a bounded number of times.

The stages overlap, so that none waits on another: due records are read ahead a
page at a time on a thread (DueQueue); up to `poll_concurrency` GETs are in flight
on the Operations API client's event loop (OperationsApi.start_gets), and a few
more wait for a slot there so that one that finishes starts the next at once; answers are decided on the loop that drives the run; results are committed
in groups on threads (at most WRITERS groups at once); committed messages are
published in order on one thread. The loop that drives them (Pipeline.run)
dispatches GETs only for shards the run holds (functions.services.ownership)
and within each service's rate limit (functions.domain.ratelimit); due records
over the limit wait in due order, in memory, and whatever is still waiting when
the run ends stays due in Firestore for the next run.
"""
from __future__ import annotations

import contextvars
import logging
from collections import OrderedDict, deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from queue import Empty, SimpleQueue
from typing import Any, Callable

from functions.config import Settings
from functions.domain.ratelimit import RateLimiter, with_defaults
from functions.domain.record import Record, Versioned
from functions.domain.tracking import ApiFailure, Decision, Rules, after_poll
from functions.ports import OperationsApi, PollStore
from functions.services.outbox import OutboxRelay
from functions.services.ownership import ShardOwnership
from functions.services.schedule import LearntSchedule

log = logging.getLogger(__name__)

IDLE_NAP_S = 0.2
LOOP_WAIT_S = 0.05
# How often a run retries the outbox while some operation's events are held back.
FLUSH_EVERY_S = 5.0
# Poll results are committed together once this many wait, or this long; at most
# WRITERS groups are being written at once (results wait meanwhile, so groups grow).
WRITE_GROUP = 100
# The first groups are small and each next one twice as large, so the first results land at once.
FIRST_GROUP = 8
WRITE_MAX_WAIT_S = 0.1
WRITERS = 2
# The loop is woken when this many GETs have finished (or all in flight have, or at LOOP_WAIT_S).
WAKE_AFTER_GETS = 8
# GETs started beyond poll_concurrency: they wait for a slot on the client's loop, and take one as
# soon as a GET finishes instead of waiting for the run's loop to wake.
READY_AHEAD = 8
# Re-decisions on fresh data after lost write guards, before giving up (the record stays due).
COMMIT_ATTEMPTS = 3
# Due records held back by rate limits, at most this many pages' worth (then reading pauses).
PARKED_PAGES = 4


@dataclass(frozen=True)
class Polled:
    """A GET's answer and the decision on it, still to be committed."""

    versioned: Versioned
    result: Any
    decision: Decision
    at: datetime


def submit(pool: Executor, fn: Callable, *args) -> Future:
    """Run fn on the pool in a copy of this context, so its log lines carry the request's trace."""
    return pool.submit(contextvars.copy_context().run, fn, *args)


class Completions:
    """Futures as they finish, in the order they finish, and a wake-up for the loop.

    Why not concurrent.futures.wait over everything in flight: it takes and releases
    every future's lock on each turn of the loop, which cost more CPU than the GETs'
    own bookkeeping. Here each future reports itself once, when it finishes.

    GETs wake the loop a few at a time (`wake_after`, set by the loop): a wake-up per
    GET was a thread switch per GET. Everything else wakes it at once. The wake-up is a
    token in a SimpleQueue (a lock in C), not a threading.Event (a Condition in Python).
    """

    def __init__(self):
        self._finished: deque[Future] = deque()
        self._wakeups: SimpleQueue = SimpleQueue()
        self._waking = False  # a token is on its way: no need for another
        self.wake_after = 1

    def watch(self, future: Future, batched: bool = False) -> Future:
        future.add_done_callback(lambda done: self._report(done, batched))
        return future

    def _report(self, future: Future, batched: bool) -> None:
        self._finished.append(future)
        if (not batched or len(self._finished) >= self.wake_after) and not self._waking:
            self._waking = True
            self._wakeups.put(None)

    @property
    def waking(self) -> bool:
        """The loop has been woken (or will be) and has not waited since."""
        return self._waking

    def wait(self, timeout: float, wake_after: int = 1) -> None:
        """Until a watched future finishes (`wake_after` GETs), or has finished unseen, or the timeout.
        What finished before this returns is in the next drain(); what finishes later wakes the next
        wait (a token left over only makes a wait return early)."""
        self.wake_after = wake_after
        if len(self._finished) < wake_after:
            try:
                self._wakeups.get(timeout=timeout)
            except Empty:
                pass
        while not self._wakeups.empty():
            self._wakeups.get_nowait()
        self._waking = False

    def drain(self) -> list[Future]:
        finished = []
        while self._finished:
            finished.append(self._finished.popleft())
        return finished


class DueQueue:
    """Due records read ahead a page at a time, on a thread of their own.

    The query walks the backlog with a cursor rather than starting from the top each
    time; at the end of the backlog it starts over (after a short rest). Less than two
    pages are held, so memory stays flat in the number of pending operations.
    """

    def __init__(self, read_page: Callable[[Any], tuple[list[Versioned], Any]], page_size: int,
                 monotonic: Callable[[], float], reader: Executor,
                 watch: Callable[[Future], Future] = lambda future: future):
        self._read_page, self._page_size = read_page, page_size
        self._watch = watch
        self._monotonic, self._reader = monotonic, reader
        self._items: deque[Versioned] = deque()
        self._cursor: Any = None
        self._rest_until = 0.0
        self.reading: Future | None = None

    def take(self, fresh: Callable[[Versioned], bool]) -> Versioned | None:
        """The next due record that is still `fresh` (not one this run has in hand or wrote since)."""
        self._harvest()
        while self._items:
            candidate = self._items.popleft()
            if fresh(candidate):
                return candidate
        self._read_ahead()
        return None

    def top_up(self) -> None:
        self._harvest()
        self._read_ahead()

    @property
    def empty(self) -> bool:
        return not self._items and self.reading is None

    def wake(self) -> None:
        """Read from the top at once (after the run napped until something fell due)."""
        self._rest_until = 0.0

    def _harvest(self) -> None:
        if self.reading is None or not self.reading.done():
            return
        reading, self.reading = self.reading, None
        page, self._cursor = reading.result()
        queued = {v.record.id for v in self._items}
        self._items.extend(v for v in page if v.record.id not in queued)
        if self._cursor is None:  # the end of the backlog: rest a moment before starting over
            self._rest_until = self._monotonic() + IDLE_NAP_S

    def _read_ahead(self) -> None:
        if self.reading is not None or len(self._items) >= self._page_size:
            return
        if self._cursor is None and (self._items or self._monotonic() < self._rest_until):
            return  # start over from the top only once what is queued has gone
        self.reading = self._watch(submit(self._reader, self._read_page, self._cursor))


class Pipeline:
    def __init__(self, settings: Settings, store: PollStore, api: OperationsApi, relay: OutboxRelay,
                 ownership: ShardOwnership, schedule: LearntSchedule, summary, *, clock: Callable,
                 monotonic: Callable[[], float], sleep: Callable[[float], None],
                 decide: Callable[[Record, Any], Decision] | None = None):
        """decide: what a GET's answer does to a record (PollService._decide: tracking.after_poll
        with the learnt schedule's statistics)."""
        self._settings = settings
        self._decide_answer = decide or (lambda record, result: after_poll(record, result, self._clock(),
                                                                           self._rules))
        self._store = store
        self._api = api
        self._relay = relay
        self._ownership = ownership
        self._schedule = schedule
        self._summary = summary
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._rules = Rules(settings.max_permanent_errors, settings.not_found_grace_s, settings.retention_days)
        self._shards = max(1, settings.shards)
        self._limits = with_defaults(settings.rate_limits, published=not settings.api_base_url)
        self._limiter = RateLimiter(self._limits, 1.0, monotonic())
        # Records this run has in hand (dispatched, not yet committed), and the versions it wrote:
        # a page read before our write still shows the older version, which is not due any more.
        self._in_hand: set[str] = set()
        self._written: dict[str, Any] = {}
        self._parked: OrderedDict[Any, deque[Versioned]] = OrderedDict()
        self._parked_count = 0
        self._completions = Completions()
        self._stop_at = float("inf")

    # The loop ---------------------------------------------------------------
    def run(self, stop_at: float) -> None:
        """Poll until the monotonic time `stop_at`."""
        held = self._ownership.held
        # A run holding k of the S shards takes k/S of each rate limit (shard runs share them).
        self._limiter = RateLimiter(self._limits, min(1.0, len(held) / self._shards) if held else 1.0,
                                    self._monotonic())
        concurrency = self._settings.poll_concurrency
        in_flight: dict[Future, tuple[Versioned, Any]] = {}
        results: list[Polled] = []
        results_since = self._monotonic()
        writing: list[Future] = []
        to_publish: list = []
        publishing: Future | None = None
        renewing: Future | None = None
        last_flush = self._monotonic()
        group_size = FIRST_GROUP
        completions = self._completions
        self._stop_at = stop_at
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="poll-write") as writers, \
                ThreadPoolExecutor(2, thread_name_prefix="poll-io") as io, \
                ThreadPoolExecutor(1, thread_name_prefix="poll-lease") as leasing:  # never queued behind io
            queue = DueQueue(self._read_page, self._settings.poll_batch, self._monotonic, io, completions.watch)
            while True:
                running = self._monotonic() < self._stop_at
                if renewing is not None and renewing.done():
                    renewing.result()
                    renewing = None
                if running and renewing is None and self._ownership.due_for_renewal():
                    renewing = completions.watch(submit(leasing, self._ownership.acquire))
                if running:
                    self._dispatch(queue, in_flight, concurrency + min(READY_AHEAD, concurrency))
                if in_flight or writing or queue.reading is not None or renewing is not None:
                    # Woken once a few GETs are done, but never waiting for more than are in flight.
                    completions.wait(LOOP_WAIT_S, max(1, min(WAKE_AFTER_GETS, len(in_flight))))
                answered = 0
                for future in completions.drain():
                    if future not in in_flight:
                        continue  # a write, read or renewal: looked at below
                    versioned, key, lag_s = in_flight.pop(future)
                    try:
                        polled, api_answered = self._answered(versioned, future)
                    except Exception:  # _answered isolates failures; this is the last line of defence
                        self._summary.count("errors")
                        self._in_hand.discard(versioned.record.id)
                        log.error("deciding on a GET failed; the operation stays due",
                                  extra={"operation_id": versioned.record.id}, exc_info=True)
                        continue
                    answered += api_answered  # counted once a turn, below: the summary takes a lock
                    self._summary.lag(lag_s)
                    if polled.decision.record.consecutive_errors > versioned.record.consecutive_errors:
                        self._summary.count("errors")
                    self._rated(key, polled.result)
                    if not results:
                        results_since = self._monotonic()
                    results.append(polled)
                if answered:
                    self._summary.count("polled", answered)
                for future in [f for f in writing if f.done()]:
                    writing.remove(future)
                    to_publish += [(kind, message) for d in future.result()
                                   for kind, message in (("events", d.event), ("commands", d.command)) if message]
                if results and len(writing) < WRITERS and (
                        len(results) >= group_size or not in_flight
                        or self._monotonic() - results_since >= WRITE_MAX_WAIT_S):
                    group, results = results[:group_size], results[group_size:]
                    results_since = self._monotonic()
                    writing.append(completions.watch(submit(writers, self._commit, group)))
                    group_size = min(WRITE_GROUP, 2 * group_size)
                if publishing is None or publishing.done():
                    if publishing is not None:
                        publishing.result()  # raise what publishing raised
                        publishing = None
                    # One publisher at a time: an operation's events go out in the order recorded.
                    if to_publish:
                        publishing, to_publish = submit(io, self._relay.publish, to_publish), []
                    elif self._relay.blocked and self._monotonic() - last_flush >= FLUSH_EVERY_S:
                        publishing, last_flush = submit(io, self._relay.flush), self._monotonic()
                idle = not in_flight and not results and not writing
                if not running and idle:
                    break
                if running and idle and queue.empty and not self._parked:
                    if self._nap_until_due(self._stop_at):
                        queue.wake()
                    else:
                        self._stop_at = self._monotonic()
            if publishing is not None:
                publishing.result()
            if renewing is not None:
                renewing.result()
        if to_publish:
            self._relay.publish(to_publish)
        if self._relay.blocked:
            self._relay.flush()

    def _dispatch(self, queue: DueQueue, in_flight: dict, concurrency: int) -> None:
        """Start GETs while there is room (`concurrency`: in flight or waiting for a connection):
        first those waiting on a rate limit, then the queue's; all in one hand-off to the client."""
        now = self._monotonic()
        starting: list[tuple[Versioned, Any]] = []
        try:
            self._pick(queue, now, concurrency - len(in_flight), starting)
        finally:
            self._start(starting, in_flight)

    def _pick(self, queue: DueQueue, now: float, room: int, starting: list) -> None:
        for key in list(self._parked):
            waiting = self._parked[key]
            while waiting and len(starting) < room and self._limiter.take(key, now):
                candidate = waiting.popleft()
                self._parked_count -= 1
                if self._ownership.holds(candidate.record.shard % self._shards):
                    starting.append((candidate, key))
                else:  # its shard's lease was lost meanwhile: another run has it
                    self._in_hand.discard(candidate.record.id)
                    self._summary.count("lost_claims")
            if not waiting:
                del self._parked[key]
        parked_cap = PARKED_PAGES * self._settings.poll_batch
        while len(starting) < room and self._parked_count < parked_cap:
            candidate = queue.take(self._fresh)
            if candidate is None:
                return
            record = candidate.record
            key = self._limiter.key(record.service, record.quota_project)
            if key in self._parked or not self._limiter.take(key, now):
                self._in_hand.add(record.id)
                self._parked.setdefault(key, deque()).append(candidate)
                self._parked_count += 1
                self._summary.count("throttled")
                continue
            self._in_hand.add(record.id)  # before the next take: a page read meanwhile may hold it again
            starting.append((candidate, key))
        queue.top_up()

    def _fresh(self, candidate: Versioned) -> bool:
        record = candidate.record
        if record.id in self._in_hand:
            return False
        written = self._written.get(record.id)
        if written is not None and candidate.version < written:
            return False  # read before our own write: no longer due
        if not self._ownership.holds(record.shard % self._shards):
            self._summary.count("lost_claims")
            return False
        return True

    def _start(self, starting: list[tuple[Versioned, Any]], in_flight: dict) -> None:
        if not starting:
            return
        now = self._clock()
        records = [candidate.record for candidate, _ in starting]
        try:
            futures = self._api.start_gets([(record.ref, record.quota_project) for record in records])
        except Exception as exc:  # a client that cannot even start them: each one's error, not the run's
            futures = [_failed(exc) for _ in starting]
        self._summary.count("claimed", len(starting))
        for (candidate, key), future in zip(starting, futures):
            lag_s = (now - candidate.record.next_poll_at).total_seconds()  # how late the GET started
            in_flight[self._completions.watch(future, batched=True)] = (candidate, key, lag_s)

    def _rated(self, key, result) -> None:
        if isinstance(result, ApiFailure) and result.status.get("code") == 429:
            self._limiter.throttled(key, self._monotonic())

    def _nap_until_due(self, stop_at: float) -> bool:
        """Sleep until the next operation falls due; False when none does within the budget."""
        shards = self._ownership.shards_filter()
        if shards is not None and not shards:  # waiting for another run to free our shards
            self._sleep(IDLE_NAP_S)
            return True
        next_due = self._store.next_due_at(shards)
        remaining = stop_at - self._monotonic()
        wait_s = remaining if next_due is None else (next_due - self._clock()).total_seconds()
        if wait_s >= remaining:
            return False
        # Short naps so that operations submitted meanwhile are picked up quickly.
        self._sleep(max(0.0, min(wait_s, IDLE_NAP_S)))
        return True

    # Reading (on an io thread) ---------------------------------------------------
    def _read_page(self, cursor: Any) -> tuple[list[Versioned], Any]:
        shards = self._ownership.shards_filter()
        if shards is not None and not shards:
            return [], None  # no shard held (yet): nothing this run may poll
        now = self._clock()
        page, cursor = self._store.due_page(now, self._settings.poll_batch, shards, cursor)
        later = self._schedule.first_polls_later(page, now)
        if later:  # new operations of a known kind wait until near their expected finish
            self._store.reschedule_many(later, now)
            self._summary.count("first_polls_deferred", len(later))
            deferred = {v.record.id for v, _ in later}
            page = [v for v in page if v.record.id not in deferred]
        self._schedule.prepare([v.record for v in page])
        return page, cursor

    # Deciding on an answer (on the run's loop) ------------------------------------
    def _answered(self, versioned: Versioned, future: Future) -> tuple[Polled, bool]:
        """The decision on a GET's answer, and whether the API answered: whatever the client or the
        answer does is that operation's error, never the run's. The record stays due if even that
        cannot be decided."""
        record = versioned.record
        try:
            result = future.result()
        except Exception as exc:
            return self._decide(versioned, own_failure(exc, record, "could not handle the API's answer")), False
        try:
            return self._decide(versioned, result), True
        except Exception as exc:
            return self._decide(versioned, own_failure(exc, record, "could not handle the API's answer")), True

    def _decide(self, versioned: Versioned, result: Any, decide: Callable | None = None) -> Polled:
        now = self._clock()
        decision = (decide or self._decide_answer)(versioned.record, result)
        # lease_owner names the run that polled it last, under its shard lease (diagnostics).
        decision = Decision(decision.record.with_changes(lease_owner=self._summary.run_id),
                            decision.event, decision.command)
        return Polled(versioned, result, decision, now)

    # Commit (on a writer) -----------------------------------------------------------
    def _commit(self, group: list[Polled]) -> list[Decision]:
        """Commit a group; returns the committed decisions that have messages to publish. If the
        group fails, its results are committed one by one, so that a record Firestore refuses
        stays that operation's error and the others land (those the group committed are done)."""
        done: set[str] = set()
        try:
            return self._commit_group(group, done)
        except Exception:
            log.warning("recording a group of poll results failed: recording them one by one", exc_info=True)
        committed: list[Decision] = []
        for polled in group:
            if polled.versioned.record.id not in done:
                committed += self._commit_alone(polled)
        return committed

    def _commit_alone(self, polled: Polled) -> list[Decision]:
        try:
            return self._commit_group([polled], set())
        except Exception as exc:
            return self._commit_refused(polled, exc)

    def _commit_refused(self, polled: Polled, exc: Exception) -> list[Decision]:
        """Record what the store refused as the operation's error instead: the record as it was,
        plus this error, is small, and it backs off like any failure."""
        record = polled.versioned.record
        failure = own_failure(exc, record, "could not record the poll result")
        try:
            self._summary.count("errors")
            plain = lambda r, f: after_poll(r, f, self._clock(), self._rules)  # noqa: E731 (no hook: it failed)
            retry = self._decide(polled.versioned, failure, plain)
            version = self._store.commit([(retry.versioned, retry.decision)])[0]
            if version is None or isinstance(version, Exception):
                raise version or RuntimeError("the record was written meanwhile")
            self._done(retry, version)
            return [retry.decision] if retry.decision.event or retry.decision.command else []
        except Exception:
            log.error("could not record an operation's error either; it stays due",
                      extra={"operation_id": record.id}, exc_info=True)
            self._in_hand.discard(record.id)
            return []

    def _commit_group(self, group: list[Polled], done: set[str]) -> list[Decision]:
        """The one decide-and-commit path: commit; where someone else wrote a record since it was
        read, decide the same answer again on the fresh version (a bounded number of times)."""
        committed: list[Decision] = []
        pending = group
        for attempt in range(COMMIT_ATTEMPTS):
            versions = self._store.commit([(p.versioned, p.decision) for p in pending])
            lost = []
            for polled, version in zip(pending, versions):
                if isinstance(version, Exception):  # refused for itself: that operation's error
                    committed += self._commit_refused(polled, version)
                    continue
                if version is None:
                    lost.append(polled)
                    continue
                self._done(polled, version)
                done.add(polled.versioned.record.id)
                if polled.decision.event is not None or polled.decision.command is not None:
                    committed.append(polled.decision)
            if not lost:
                break
            if attempt == COMMIT_ATTEMPTS - 1:
                for polled in lost:  # the record stays due: a later poll records it
                    log.warning("gave up recording a poll result after repeated write conflicts",
                                extra={"operation_id": polled.versioned.record.id})
                    self._in_hand.discard(polled.versioned.record.id)
                break
            pending = [p for p in (self._redecide(p) for p in lost) if p is not None]
            if not pending:
                break
        self._summary.count("changed", sum(d.changed for d in committed))
        return committed

    def _redecide(self, polled: Polled) -> Polled | None:
        """Someone else wrote the record since it was read: decide the same answer on fresh data."""
        record_id = polled.versioned.record.id
        fresh = self._store.get_versioned(record_id)
        if fresh is None or not self._ownership.holds(fresh.record.shard % self._shards):
            self._in_hand.discard(record_id)
            return None
        return self._decide(fresh, polled.result)

    def _done(self, polled: Polled, version: Any) -> None:
        record_id = polled.versioned.record.id
        self._written[record_id] = version
        self._in_hand.discard(record_id)
        self._schedule.learn(polled.versioned.record, polled.decision.record, polled.at)


def own_failure(exc: Exception, record: Record, what: str) -> ApiFailure:
    """An exception while polling one operation, as that operation's failure: permanent, so
    that an answer lrowatch can never handle ends it FAILED after max_permanent_errors."""
    log.error("%s; recorded as the operation's error", what,
              extra={"operation_id": record.id, "operation": record.name}, exc_info=exc)
    return ApiFailure("permanent", {"code": 500, "status": "INTERNAL",
                                    "message": f"lrowatch {what}: {type(exc).__name__}: {str(exc)[:300]}"})


def _failed(exc: Exception) -> Future:
    future: Future = Future()
    future.set_exception(exc)
    return future
