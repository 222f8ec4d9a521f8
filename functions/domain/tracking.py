"""What one poll result does to a record: the pure heart of `poll`.

Given the record, what the Operations API answered and the time, decide the
record's next version, the event to publish (one per change of state) and
any command to send. No I/O here, so every rule is unit-tested directly.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from functions.domain import adaptive, eta, events, learning
from functions.domain.adaptive import DurationStats
from functions.domain.events import Message
from functions.domain.policy import retry_delay
from functions.domain.record import Record, within_limits
from functions.domain.states import State, advance, normalise

CODE_NOT_FOUND = 5
CODE_DEADLINE_EXCEEDED = 4


@dataclass(frozen=True)
class ApiFailure:
    """A GET that did not yield an operation, classified by the REST adapter."""

    kind: str  # "transient" | "not_found" | "permanent"
    status: dict  # google.rpc.Status-like: code (HTTP), status, message
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Rules:
    max_permanent_errors: int = 5
    not_found_grace_s: float = 300.0
    retention_days: int = 35


@dataclass(frozen=True)
class Decision:
    record: Record
    event: Message | None = None
    command: Message | None = None

    @property
    def changed(self) -> bool:
        return self.event is not None


def after_poll(record: Record, result: Mapping[str, Any] | ApiFailure, now: datetime,
               rules: Rules = Rules(), rng: random.Random | None = None,
               stats: DurationStats | None = None) -> Decision:
    """`stats`: durations of finished operations of this kind, when known (adaptive schedule)."""
    if record.state.terminal:
        return Decision(record)
    base = {"last_polled_at": now, "updated_at": now, "lease_owner": None}
    if isinstance(result, ApiFailure):
        decision = _after_failure(record, result, now, rules, base, rng)
    else:
        decision = _after_answer(record, result, now, rules, base, rng, stats)
    if not decision.record.state.terminal and now >= record.deadline_at:
        # One event per poll: a non-terminal change seen by this poll folds into TIMED_OUT,
        # so sequences stay contiguous and previous_state is the last announced state.
        observed = decision.record.with_changes(state=record.state, sequence=record.sequence)
        return timed_out(observed, now, rules)
    return decision


def _after_answer(record: Record, operation: Mapping[str, Any], now: datetime, rules: Rules,
                  base: dict, rng, stats: DurationStats | None = None) -> Decision:
    seen = normalise(operation)
    state = advance(record.state, seen.state)
    # Kept from the first answer that has one (an API cannot move it later), so read only until then.
    started_at = record.started_at or learning.believable_start(seen.metadata, record.submitted_at)
    elapsed_s = (now - (started_at or record.submitted_at)).total_seconds()  # as Record.started counts
    samples, estimate = _estimate(record, elapsed_s, state, seen.progress_percent, now, stats)
    updated = within_limits(record.with_changes(
        **base,
        started_at=started_at,
        state=state,
        done=seen.done and state.terminal,
        provider_state=seen.provider_state,
        progress_percent=seen.progress_percent,
        items=seen.items,
        failed_items=seen.failed_items or None,
        error=seen.error if state in (State.FAILED, State.CANCELLED) else None,
        metadata=seen.metadata,
        response=seen.response,
        truncated=False,
        polls=record.polls + 1,
        seen=True,
        consecutive_errors=0,
        permanent_errors=0,
        last_error=None,
        next_poll_at=now + timedelta(seconds=_poll_delay(record, elapsed_s, now, stats, rng, estimate)),
        progress_samples=samples,
        **(estimate.fields() if estimate else eta.NO_ESTIMATE),
    ))
    return _with_event(record, updated, now, rules)


def _estimate(record: Record, elapsed_s: float, state: State, progress: int | None, now: datetime,
              stats: DurationStats | None) -> tuple[list | None, eta.Estimate | None]:
    """The progress samples of a running operation `elapsed_s` into its life, and the completion
    estimate they and `stats` support."""
    if state is not State.RUNNING:
        return None, None
    samples = eta.add_sample(record.progress_samples, now.timestamp(), progress)
    return samples, eta.estimate(now, elapsed_s, samples, stats)


def _poll_delay(record: Record, elapsed_s: float, now: datetime, stats: DurationStats | None, rng,
                estimate: eta.Estimate | None = None) -> float:
    """The polling schedule (never the retry schedule): the policy's ramp, or the adaptive one on the
    time elapsed since the operation's start, steered by its own progress trend when it has one."""
    policy = record.poll_policy
    if stats is None:
        delay = policy.poll_delay(record.polls + 1, rng)
    else:
        delay = adaptive.next_delay(stats, elapsed_s, record.polls + 1, policy, rng)
    if estimate is None or estimate.soonest is None:
        return delay
    return adaptive.steered_delay(delay, (estimate.soonest - now).total_seconds(), stats, policy, rng)


def _after_failure(record: Record, failure: ApiFailure, now: datetime, rules: Rules,
                   base: dict, rng) -> Decision:
    errors = record.consecutive_errors + 1
    # Only permanent errors count towards FAILED; transient ones between them neither count nor reset.
    permanent = record.permanent_errors + (failure.kind == "permanent")
    last_error = {**failure.status, "kind": failure.kind, "at": now.isoformat()}
    retry_at = now + timedelta(seconds=retry_delay(errors, failure.retry_after_s, rng))
    changes = dict(base, consecutive_errors=errors, permanent_errors=permanent, last_error=last_error,
                   next_poll_at=retry_at)
    age_s = (now - record.submitted_at).total_seconds()
    if failure.kind == "not_found" and (record.seen or age_s >= rules.not_found_grace_s):
        # The API forgot it (past its ~30-day retention), or never knew it.
        error = {"code": CODE_NOT_FOUND, "status": "NOT_FOUND",
                 "message": failure.status.get("message") or "operation not found"}
        updated = record.with_changes(**changes, state=State.EXPIRED, error=error)
    elif failure.kind == "permanent" and permanent >= rules.max_permanent_errors:
        updated = record.with_changes(**changes, state=State.FAILED, error=_rpc_status(failure.status))
    else:
        updated = record.with_changes(**changes)
    return _with_event(record, within_limits(updated), now, rules)


def timed_out(record: Record, now: datetime, rules: Rules = Rules()) -> Decision:
    """The tracking deadline passed; cancel only if the submitter asked for it."""
    error = {"code": CODE_DEADLINE_EXCEEDED, "status": "DEADLINE_EXCEEDED",
             "message": "lrowatch's tracking deadline passed before the operation finished"}
    updated = record.with_changes(state=State.TIMED_OUT, error=error, updated_at=now, lease_owner=None)
    decision = _with_event(record, updated, now, rules)
    command = None
    if record.poll_policy.cancel_on_deadline:
        command = events.cancel_command(record.id, "deadline passed", "lrowatch:cancel_on_deadline")
    return Decision(decision.record, decision.event, command)


def _with_event(before: Record, after: Record, now: datetime, rules: Rules) -> Decision:
    if after.state == before.state:
        return Decision(after)
    if after.state.terminal:
        after = after.with_changes(
            sequence=before.sequence + 1, completed_at=now, done=True,
            expire_at=now + timedelta(days=rules.retention_days),
            progress_samples=None, **eta.NO_ESTIMATE,
        )
    else:
        after = after.with_changes(sequence=before.sequence + 1)
    return Decision(after, events.state_changed(after, before.state.value, now))


def _rpc_status(status: dict) -> dict:
    return {k: status[k] for k in ("code", "status", "message", "details") if k in status}
