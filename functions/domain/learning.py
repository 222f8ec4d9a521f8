"""What the poller learns from finished operations, and how a new one uses it.

Pure glue between records and functions.domain.adaptive: which summaries a
record belongs to, what duration a finish contributes, and when a record's
first poll should really happen.

An operation's kind (its metadata's `@type`) is only known after a first GET,
so each finish is counted twice: under its kind, and under "any kind" of the
service and location — the summary that places the first poll of a new one.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from functions.domain import adaptive, eta
from functions.domain.adaptive import DurationStats
from functions.domain.names import location_of
from functions.domain.record import Record
from functions.domain.states import State, start_of

ANY_KIND = "*"
# The record's times are kept to the millisecond; a poll due at the soonest end lands within this of it.
SOONEST_SLACK_S = 1.0
# An operation handed over this long after its API created it and finished at its first poll teaches nothing.
LATE_HANDOVER_S = 60.0
# Finishes that say how long the work took (not EXPIRED/TIMED_OUT: those are lrowatch's view).
_LEARNT = (State.SUCCEEDED, State.FAILED, State.CANCELLED)


def kind_of(metadata: dict | None) -> str | None:
    """`type.googleapis.com/google.cloud.documentai.v1.BatchProcessMetadata` → `BatchProcessMetadata`."""
    if not isinstance(metadata, dict) or not isinstance(metadata.get("@type"), str):
        return None
    return metadata["@type"].rsplit("/", 1)[-1].rsplit(".", 1)[-1][:200] or None


def kind_key(record: Record) -> str | None:
    kind = kind_of(record.metadata)
    return adaptive.stats_key(record.service, kind, location_of(record.name)) if kind else None


def any_kind_key(record: Record) -> str:
    return adaptive.stats_key(record.service, ANY_KIND, location_of(record.name))


def believable_start(metadata: dict | None, submitted_at: datetime) -> datetime | None:
    """The creation time the API reports in `metadata` (states.start_of) as the operation's start
    (Record.started_at), when it can be: before the submission (a later one is another clock's: the
    submission is the start) and no further back than the longest duration learnt."""
    api_start = start_of(metadata)
    if api_start is None:
        return None
    earliest = submitted_at - timedelta(seconds=adaptive.MAX_DURATION_S)
    return api_start.astimezone(timezone.utc) if earliest <= api_start < submitted_at else None


def finished_duration(before: Record, after: Record, now: datetime) -> float | None:
    """Seconds the operation took from its start (Record.started: its API's creation time when known),
    when this poll is the one that saw it finish."""
    if before.state.terminal or after.state not in _LEARNT or before.cancel:
        return None  # a cancel we asked for says nothing about how long the work takes
    last_running = before.last_polled_at.timestamp() if before.seen and before.last_polled_at else None
    if last_running is None and (after.submitted_at - after.started).total_seconds() > LATE_HANDOVER_S:
        return None  # it may have finished before it was handed over: how long it took is unknown
    return adaptive.observed_duration(after.started.timestamp(), last_running, now.timestamp())


@dataclass(frozen=True)
class ProgressEnd:
    """What a finish says of its kind's progress trends (adaptive.steered_delay)."""

    early: bool  # the poll that saw it was due by the soonest end allowed, after a gap it could be late in
    score: float  # the time it really had left at its last poll ÷ the soonest end that poll allowed


def progress_end(before: Record, after: Record, now: datetime) -> ProgressEnd | None:
    """For a finish this poll saw, of an operation whose last poll had a progress trend: whether it came
    early for that trend (adaptive.came_early, trusts_progress) and its score (DurationStats.calibration),
    its end taken midway between that poll and this one, as its duration is. None for other finishes."""
    if finished_duration(before, after, now) is None or before.eta_basis not in eta.PROGRESS_BASES:
        return None
    if before.last_polled_at is None or None in (before.eta_low, before.eta, before.eta_high):
        return None
    left = [(when - before.last_polled_at).total_seconds() for when in (before.eta_low, before.eta, before.eta_high)]
    if min(left) <= 0:
        return None
    soonest_s = eta.Remaining(*left).soonest
    soonest = before.last_polled_at + timedelta(seconds=soonest_s + SOONEST_SLACK_S)
    gap = (before.next_poll_at - before.last_polled_at).total_seconds()
    really_left = (now - before.last_polled_at).total_seconds() / 2
    return ProgressEnd(adaptive.came_early(before.next_poll_at.timestamp(), soonest.timestamp(), gap),
                       really_left / soonest_s)


def first_poll_at(record: Record, stats: DurationStats | None) -> datetime | None:
    """When a never-polled record should first be polled, if later than its schedule says: where its
    kind's first finishes come, counted from its start (a listed operation's API said when)."""
    if record.polls or record.seen or record.consecutive_errors:
        return None
    delay = adaptive.first_poll_delay(stats, record.poll_policy)
    when = record.started + timedelta(seconds=delay)
    return when if when > record.next_poll_at else None
