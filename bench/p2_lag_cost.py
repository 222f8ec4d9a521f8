"""P2 lag and cost: a discrete-event simulation of polling strategies (no I/O).

For each operation of a workload (known true duration D, submitted at t=0) a
strategy produces poll times t1 < t2 < ...; the first poll at or after D sees
the operation done. Lag = that poll's time - D; cost = the number of GETs.

Strategies (each as its library really behaves):
- lrowatch: functions.domain.policy.Policy as the poller uses it: first poll
  at initial_delay_s (no jitter), then poll_delay(k) after the k-th "not done"
  poll (1 s floor, ±jitter). Polls run inside a run that checks due operations
  continuously, so no extra quantisation; a separate informational row adds
  the gap between minutely runs (50 s budget, stop 2 s early).
- lrowatch + adaptation: functions.domain.adaptive, with per-kind duration
  statistics learned from a separate training set of operations (durations as
  lrowatch observes them, lag included).
- google-api-core (google/api_core/future/polling.py DEFAULT_POLLING: initial
  1 s, x1.5, max 20 s): a GET at once when result() is called, then sleeps of
  random.uniform(0, cap) (its exponential_sleep_generator: full jitter). Its
  default 900 s polling timeout is ignored (a caller tracking hours-long
  operations must pass timeout=None).
- Cloud Workflows connectors (initial 1 s, x1.25, max 60 s), deterministic.
- A fixed 10 s poll.

A further section (progress_steering) replays the mixed kinds with each
operation reporting progressPercent (Reporting): adaptation alone against
adaptation steered by each operation's own progress trend
(adaptive.steered_delay, from functions.domain.eta's estimate at each poll).
"""
from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, replace

from datetime import datetime, timedelta, timezone
from typing import Callable

from functions.domain import adaptive, eta
from functions.domain.adaptive import DurationStats
from functions.domain.policy import Policy

SEED = 20240611
GOAL_CALLS_RATIO = 0.60
# Poll schedule: every minute, a run of budget 50 s that stops claiming 2 s early.
SCHEDULE_PERIOD_S = 60.0
RUN_ACTIVE_S = 48.0
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Op:
    kind: str
    duration_s: float


# ---------------------------------------------------------------- workloads

def mixed_kinds(n: int, seed: int, kinds: int = 8) -> list[Op]:
    """`kinds` operation kinds with medians log-spaced 10 s..1 h, each lognormal (sigma 0.5),
    clipped to 3 s..3 h: a mix from seconds to hours where each kind is fairly regular."""
    rng = random.Random(seed)
    medians = [math.exp(math.log(10) + i * (math.log(3600) - math.log(10)) / (kinds - 1)) for i in range(kinds)]
    ops = []
    for i in range(n):
        k = i % kinds
        d = medians[k] * math.exp(rng.gauss(0.0, 0.5))
        ops.append(Op(f"kind{k}", min(max(d, 3.0), 3 * 3600.0)))
    return ops


def log_uniform(n: int, seed: int) -> list[Op]:
    """One kind, durations log-uniform 3 s..3 h: nothing regular for adaptation to learn."""
    rng = random.Random(seed)
    return [Op("any", math.exp(rng.uniform(math.log(3.0), math.log(3 * 3600.0)))) for _ in range(n)]


class Reporting:
    """An operation's progress_percent at time t: queued at 0 %, then a curve (front- or back-loaded)
    up to `ends_at` (1: 100 % at the end; less: an API whose progress leaves its last part unreported)."""

    def __init__(self, duration_s: float, rng: random.Random, ends_at: float = 1.0):
        self.duration_s = duration_s
        self.queued_s = duration_s * rng.uniform(0.0, 0.25)
        self.shape = math.exp(rng.gauss(0.0, 0.35))
        self.ends_at = ends_at

    def percent(self, t: float) -> int:
        run = (t - self.queued_s) / (self.duration_s - self.queued_s)
        return int(100 * self.ends_at * min(max(run, 0.0), 1.0) ** self.shape) if run < 1 else 100


# ---------------------------------------------------------------- strategies
# Each returns (lag_s, calls) for one operation of duration d.

def run_lrowatch(d: float, policy: Policy, rng: random.Random, stats: DurationStats | None = None,
                 gaps: bool = False, offset_s: float = 0.0, trace: list | None = None,
                 progress: Callable[[float], int] | None = None,
                 ends: DurationStats | None = None, polls: list | None = None,
                 handed_over_s: float = 0.0, from_submission: bool = False) -> tuple[float, int]:
    """`progress`: the operation's progressPercent at a time; given, each delay is steered by the
    estimate from its trend as functions.domain.tracking does. `ends`: where its finish is counted
    as early or not (functions.domain.learning.progress_end). `polls`: gets the time of every poll
    that saw it running. Times count from the operation's start; `handed_over_s`: when it was
    submitted to lrowatch (first polled from then on); `from_submission`: the schedule counts the
    time elapsed from then, not from the start its API reports (Record.started)."""
    def served(t: float) -> float:
        # With minutely runs, a poll due between runs waits for the next run.
        if not gaps:
            return t
        phase = (offset_s + t) % SCHEDULE_PERIOD_S
        return t if phase < RUN_ACTIVE_S else t + (SCHEDULE_PERIOD_S - phase)

    origin = handed_over_s if from_submission else 0.0
    t = served(handed_over_s + (adaptive.first_poll_delay(stats, policy) if stats is not None
                                else policy.initial_delay_s))
    calls, samples, soonest_at, last_t = 0, None, None, handed_over_s
    while True:
        calls += 1
        if t >= d:
            if trace is not None:
                trace.append(t)
            if ends is not None and soonest_at is not None:
                # As learning.progress_end: its end taken midway between the last two polls.
                ends.add_progress_end(adaptive.came_early(t, soonest_at, t - last_t))
                ends.add_progress_score((t - last_t) / 2 / (soonest_at - last_t))
            return t - d, calls
        if trace is not None:
            trace[:] = [t]
        if polls is not None:
            polls.append(t)
        if stats is not None:
            delay = adaptive.next_delay(stats, t - origin, calls, policy, rng)
        else:
            delay = policy.poll_delay(calls, rng)
        if progress is not None:
            delay, samples, soonest = steered(delay, t, samples, progress(t), stats, policy, rng, origin)
            soonest_at = None if soonest is None else t + soonest
        last_t, t = t, served(t + delay)


def steered(delay: float, t: float, samples: list | None, percent: int, stats: DurationStats | None,
            policy: Policy, rng: random.Random, origin: float = 0.0) -> tuple[float, list | None, float | None]:
    """The planned `delay` after a poll at `t` that saw `percent`, steered by the progress trend as
    functions.domain.tracking steers it; the progress samples with this one added; and the time
    left to the soonest end the trend allows (None without a trend)."""
    now = EPOCH + timedelta(seconds=t)
    samples = eta.add_sample(samples, now.timestamp(), percent)
    estimate = eta.estimate(now, t - origin, samples, stats)
    if estimate is None or estimate.soonest is None:
        return delay, samples, None
    soonest = (estimate.soonest - now).total_seconds()
    return adaptive.steered_delay(delay, soonest, stats, policy, rng), samples, soonest


def run_api_core(d: float, rng: random.Random, initial: float = 1.0, multiplier: float = 1.5,
                 maximum: float = 20.0) -> tuple[float, int]:
    t, calls, cap = 0.0, 0, min(initial, maximum)
    while True:
        calls += 1
        if t >= d:
            return t - d, calls
        t += rng.uniform(0.0, cap)
        cap = min(cap * multiplier, maximum)


def run_ramp(d: float, initial: float, multiplier: float, maximum: float) -> tuple[float, int]:
    t, calls, delay = initial, 0, initial
    while True:
        calls += 1
        if t >= d:
            return t - d, calls
        delay = min(delay * multiplier, maximum)
        t += delay


def learn(ops: list[Op], policy: Policy, seed: int) -> dict[str, DurationStats]:
    """Per-kind stats as lrowatch would learn them: only poll times are known, so each duration
    is adaptive.observed_duration (midpoint of the last "running" and the "done" poll). Two
    passes: first under the plain policy, then under adaptation with what the first pass learnt
    (the steady state of a deployment that keeps learning)."""
    stats: dict[str, DurationStats] = {}
    for _ in range(2):
        rng = random.Random(seed)
        learnt: dict[str, DurationStats] = {}
        for op in ops:
            trace: list = []
            run_lrowatch(op.duration_s, policy, rng, stats.get(op.kind), trace=trace)
            last_running = trace[0] if len(trace) == 2 else None
            learnt.setdefault(op.kind, DurationStats()).add(
                adaptive.observed_duration(0.0, last_running, trace[-1]))
        stats = learnt
    return stats


# ---------------------------------------------------------------- evaluation

def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def evaluate(name: str, ops: list[Op], run, seed: int) -> dict:
    rng = random.Random(seed)
    lags, calls, by_kind = [], [], {}
    for op in ops:
        lag, n = run(op, rng)
        lags.append(lag)
        calls.append(n)
        by_kind.setdefault(op.kind, []).append(lag)
    return {"strategy": name, "lag_p50_s": _pct(lags, 0.5), "lag_p95_s": _pct(lags, 0.95),
            "lag_max_s": max(lags), "calls_per_op": statistics.fmean(calls), "calls_p50": _pct(calls, 0.5),
            "worst_kind_lag_p95_s": max(_pct(kind_lags, 0.95) for kind_lags in by_kind.values())}


def strategies(policy: Policy, stats: dict[str, DurationStats], recommended: Policy | None):
    rows = [
        ("google-api-core default (1 s, x1.5, max 20 s, full jitter)",
         lambda op, rng: run_api_core(op.duration_s, rng), "baseline"),
        ("Cloud Workflows connector default (1 s, x1.25, max 60 s)",
         lambda op, rng: run_ramp(op.duration_s, 1.0, 1.25, 60.0), ""),
        ("fixed 10 s", lambda op, rng: run_ramp(op.duration_s, 10.0, 1.0, 10.0), ""),
        (f"lrowatch default Policy {_policy_text(policy)}",
         lambda op, rng: run_lrowatch(op.duration_s, policy, rng), "lrowatch"),
        ("lrowatch default Policy + adaptation",
         lambda op, rng: run_lrowatch(op.duration_s, policy, rng, stats.get(op.kind)), "lrowatch"),
        ("(info) lrowatch default + adaptation, gaps between minutely runs",
         lambda op, rng: run_lrowatch(op.duration_s, policy, rng, stats.get(op.kind), gaps=True,
                                      offset_s=rng.uniform(0, SCHEDULE_PERIOD_S)), ""),
    ]
    if recommended is not None and recommended != policy:
        rows += [
            (f"lrowatch recommended defaults {_policy_text(recommended)}",
             lambda op, rng: run_lrowatch(op.duration_s, recommended, rng), "lrowatch"),
            ("lrowatch recommended defaults + adaptation",
             lambda op, rng: run_lrowatch(op.duration_s, recommended, rng, stats.get(op.kind)), "lrowatch"),
        ]
    return rows


def _policy_text(p: Policy) -> str:
    return f"({p.initial_delay_s:g} s, x{p.multiplier:g}, max {p.max_delay_s:g} s, jitter {p.jitter:g})"


def _meets(row: dict, base: dict) -> bool:
    return row["lag_p95_s"] <= base["lag_p95_s"] and row["calls_per_op"] <= GOAL_CALLS_RATIO * base["calls_per_op"]


def recommend(train: dict, test: dict, base_policy: Policy, seed: int) -> tuple[Policy, list[dict]]:
    """Grid search of default policies: meets the goal on every workload, with adaptation
    (the shipped configuration) and, preferably, without; fewest calls wins."""
    candidates = []
    for initial in (1.0, 2.0, 5.0):
        for multiplier in (1.5, 2.0):
            for max_delay in (10.0, 15.0, 20.0, 30.0, 60.0, 120.0):
                if initial <= max_delay:
                    candidates.append(replace(base_policy, initial_delay_s=initial, multiplier=multiplier,
                                              max_delay_s=max_delay))
    scored = []
    for policy in candidates:
        met_plain = met_adapt = 0
        calls = 0.0
        for wl in test:
            base = test[wl]["api_core"]
            stats = learn(train[wl], policy, seed + 7)
            plain = evaluate("p", test[wl]["ops"], lambda op, rng: run_lrowatch(op.duration_s, policy, rng), seed)
            adapt = evaluate("a", test[wl]["ops"],
                             lambda op, rng: run_lrowatch(op.duration_s, policy, rng, stats.get(op.kind)), seed)
            met_plain += _meets(plain, base)
            met_adapt += _meets(adapt, base)
            calls += adapt["calls_per_op"] / base["calls_per_op"]
        scored.append({"policy": policy, "met_plain": met_plain, "met_adapt": met_adapt, "calls_ratio_sum": calls,
                       "ok_plain": met_plain == len(test), "ok_adapt": met_adapt == len(test)})
    # Most workloads meeting the goal with adaptation (the shipped setup), then without, then fewest calls.
    best = min(scored, key=lambda s: (-s["met_adapt"], -s["met_plain"], s["calls_ratio_sum"]))
    return best["policy"], scored


def run(quick: bool = False) -> dict:
    started = time.monotonic()
    n = 400 if quick else 1200
    default = Policy()
    workloads = {
        "mixed kinds (8 kinds, medians 10 s..1 h, lognormal sigma 0.5, 3 s..3 h)":
            (mixed_kinds(n, SEED + 1), mixed_kinds(n, SEED)),
        "single kind, log-uniform 3 s..3 h": (log_uniform(n, SEED + 1), log_uniform(n, SEED)),
    }
    train = {wl: tr for wl, (tr, _) in workloads.items()}
    test = {}
    for wl, (_, ops) in workloads.items():
        test[wl] = {"ops": ops, "api_core": evaluate("api-core", ops, lambda op, rng: run_api_core(op.duration_s, rng),
                                                     SEED)}
    recommended, scored = recommend(train, test, default, SEED)
    results = {"workloads": [], "goal": f"lrowatch p95 lag <= api-core's, calls/op <= {GOAL_CALLS_RATIO:.0%} of api-core's",
               "default_policy": default.to_dict(), "recommended_policy": recommended.to_dict(),
               "recommended_workloads_met": next((s["met_adapt"], s["met_plain"]) for s in scored if s["policy"] == recommended),
               "grid_size": len(scored), "grid_meeting_plain": sum(s["ok_plain"] for s in scored),
               "grid_meeting_adaptive": sum(s["ok_adapt"] for s in scored), "n_ops": n}
    for wl, (train_ops, ops) in workloads.items():
        stats = learn(train_ops, default, SEED + 7)
        rec_stats = learn(train_ops, recommended, SEED + 7)
        base = test[wl]["api_core"]
        rows = []
        for name, fn, role in strategies(default, stats, recommended):
            if "recommended" in name:
                fn = _rebind(name, recommended, rec_stats)
            row = evaluate(name, ops, fn, SEED)
            row["role"] = role
            row["lag_p95_vs_api_core"] = row["lag_p95_s"] / base["lag_p95_s"] if base["lag_p95_s"] else float("nan")
            row["calls_vs_api_core"] = row["calls_per_op"] / base["calls_per_op"]
            row["verdict"] = ("PASS" if _meets(row, base) else "MISS") if role == "lrowatch" else ""
            rows.append(row)
        results["workloads"].append({"name": wl, "rows": rows})
    results["seed_checks"] = seed_checks(n, default)
    results["progress_steering"] = progress_steering(n, default)
    results["late_handover"] = late_handover(n, default)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    return results


# The tables use SEED; the shipped setup (default policy + adaptation) is also checked on these.
CHECK_SEEDS = tuple(SEED + 100 * k for k in range(8))


def seed_checks(n: int, policy: Policy) -> list[dict]:
    """The shipped setup against api-core on fresh workloads of every seed in CHECK_SEEDS: each
    seed draws its own training and test operations (and api-core's own jitter)."""
    rows = []
    for seed in CHECK_SEEDS:
        for name, make in (("mixed kinds", mixed_kinds), ("single kind, log-uniform", log_uniform)):
            train, ops = make(n, seed + 1), make(n, seed)
            base = evaluate("api-core", ops, lambda op, rng: run_api_core(op.duration_s, rng), seed)
            stats = learn(train, policy, seed + 7)
            row = evaluate("lrowatch", ops,
                           lambda op, rng: run_lrowatch(op.duration_s, policy, rng, stats.get(op.kind)), seed)
            rows.append({"seed": seed, "workload": name, "lag_p95_s": row["lag_p95_s"],
                         "api_core_lag_p95_s": base["lag_p95_s"],
                         "lag_p95_vs_api_core": row["lag_p95_s"] / base["lag_p95_s"],
                         "calls_vs_api_core": row["calls_per_op"] / base["calls_per_op"],
                         "verdict": "PASS" if _meets(row, base) else "MISS"})
    return rows


# Progress steering is checked on these (each draws its own training and test operations).
STEERING_SEEDS = CHECK_SEEDS[:3]
STEERED = "adaptation + progress"
# (info) A misleading API: its progress stops here when the operation ends (the rest unreported).
SHORT_PROGRESS = 0.6


def progress_steering(n: int, policy: Policy, seeds: tuple[int, ...] = STEERING_SEEDS) -> list[dict]:
    """Mixed kinds reporting progressPercent: adaptation alone, and steered by each operation's own
    progress trend, against api-core, seed by seed (the same operations and progress curves for all)."""
    rows = []
    for seed in seeds:
        train, ops = mixed_kinds(n, seed + 1), mixed_kinds(n, seed)
        curves = {id(op): Reporting(op.duration_s, random.Random(f"{seed}/{i}")) for i, op in enumerate(ops)}
        short = {id(op): Reporting(op.duration_s, random.Random(f"{seed}/{i}"), ends_at=SHORT_PROGRESS)
                 for i, op in enumerate(ops)}
        stats = learn(train, policy, seed + 7)
        base = evaluate("api-core", ops, lambda op, rng: run_api_core(op.duration_s, rng), seed)
        plain = evaluate("adaptation", ops,
                         lambda op, rng: run_lrowatch(op.duration_s, policy, rng, stats.get(op.kind)), seed)

        def steering(name: str, curve: dict, counted: bool) -> dict:
            # As deployed, each kind counts and scores its finishes as they come (learning.progress_end).
            kinds = {kind: DurationStats.from_dict(s.to_dict()) for kind, s in stats.items()}
            row = evaluate(name, ops, lambda op, rng: run_lrowatch(
                op.duration_s, policy, rng, kinds.get(op.kind), progress=curve[id(op)].percent,
                ends=kinds.get(op.kind) if counted else None), seed)
            return row | {"early_share": _early_share(kinds) if counted else None}

        steered = steering(STEERED, curves, True)
        trusted = steering("(info) adaptation + progress, every trend trusted as it is", curves, False)
        misled = steering(f"(info) adaptation + progress that stops at {SHORT_PROGRESS:.0%}", short, True)
        misled_trusted = steering(f"(info) adaptation + progress that stops at {SHORT_PROGRESS:.0%}, "
                                  "every trend trusted as it is", short, False)
        for row in (base, plain, steered, trusted, misled, misled_trusted):
            rows.append({"seed": seed, **row, "lag_p95_vs_api_core": row["lag_p95_s"] / base["lag_p95_s"],
                         "calls_vs_api_core": row["calls_per_op"] / base["calls_per_op"],
                         "calls_vs_adaptation": row["calls_per_op"] / plain["calls_per_op"],
                         "verdict": ("PASS" if _meets(row, base) else "MISS") if any(row is r for r in (plain, steered))
                         else ""})
    return rows


# (info) Operations handed to lrowatch this share of their life late at most (uniformly from 0).
LATE_HANDOVER_SHARE = 0.75


def handed_over(ops: list[Op], seed: int) -> list[float]:
    """When each operation was submitted to lrowatch, from its start: up to LATE_HANDOVER_SHARE of its life."""
    rng = random.Random(seed + 5)
    return [rng.uniform(0.0, LATE_HANDOVER_SHARE) * op.duration_s for op in ops]


def late_handover(n: int, policy: Policy, seeds: tuple[int, ...] = STEERING_SEEDS) -> list[dict]:
    """(info) Mixed kinds, each operation submitted to lrowatch up to LATE_HANDOVER_SHARE of its life after its
    API started it: the learnt schedule counting the time elapsed from the submission (as before
    Record.started_at) and from the start its API reports, against api-core polling from the submission."""
    rows = []
    for seed in seeds:
        train, ops = mixed_kinds(n, seed + 1), mixed_kinds(n, seed)
        late = dict(zip(map(id, ops), handed_over(ops, seed)))
        stats = learn(train, policy, seed + 7)
        base = evaluate("api-core", ops, lambda op, rng: run_api_core(op.duration_s - late[id(op)], rng), seed)
        rows.append({"seed": seed, **base, "lag_p95_vs_api_core": 1.0, "calls_vs_api_core": 1.0})
        for name, from_submission in (("adaptation, elapsed from the submission", True),
                                      ("adaptation, elapsed from the API's start", False)):
            row = evaluate(name, ops, lambda op, rng: run_lrowatch(
                op.duration_s, policy, rng, stats.get(op.kind), handed_over_s=late[id(op)],
                from_submission=from_submission), seed)
            rows.append({"seed": seed, **row, "lag_p95_vs_api_core": row["lag_p95_s"] / base["lag_p95_s"],
                         "calls_vs_api_core": row["calls_per_op"] / base["calls_per_op"]})
    return rows


def _early_share(stats: dict[str, DurationStats]) -> float:
    """Of the finishes with a progress trend, the share that came early (adaptive.came_early)."""
    ends = sum(s.progress_ends for s in stats.values())
    return sum(s.progress_early for s in stats.values()) / ends if ends else float("nan")


def _rebind(name: str, policy: Policy, stats: dict):
    if "adaptation" in name:
        return lambda op, rng: run_lrowatch(op.duration_s, policy, rng, stats.get(op.kind))
    return lambda op, rng: run_lrowatch(op.duration_s, policy, rng)


if __name__ == "__main__":
    import json
    print(json.dumps(run(quick=True), indent=1, default=str))
