"""ETA accuracy: how close functions.domain.eta's estimate is to the true finish (no I/O).

Replays P2's workloads (bench/p2_lag_cost.py: true durations, per-kind
statistics learnt from a separate training set exactly as lrowatch learns
them, polls at lrowatch's adaptive schedule) plus a progress-reporting
workload. At 25 %, 50 % and 75 % of each operation's life, the estimate on
the record is the one computed at the last poll before that moment, from the
progress samples seen so far and the learnt statistics. Error = |eta - true
end| / true time remaining at that moment.

Strategies, all from the same polls:
- lrowatch blend: functions.domain.eta.estimate (progress trend and history);
- linear progress alone: eta.from_progress, a linear fit of the progress
  samples extrapolated to 100 % (with its own interval);
- per-kind median alone: submission + the kind's median duration, interval
  the kind's 10th..90th percentile (what a dashboard of past runs says);
- (info) naive progress: elapsed x (100 - p) / p from submission, no interval.
The figures compare the strategies on the moments where every one of them
gave an estimate ("paired"); each one's answered share is shown beside.
Beside the three checkpoints, one moment per operation drawn uniformly over its
life ("random"): the reader the estimator is built for (functions.domain.eta),
so the one where its 80 % interval should cover 80 %. The verdicts use the
three checkpoints, on every seed of SEEDS.
"""
from __future__ import annotations

import bisect
import itertools
import math
import random
import time
from datetime import datetime, timedelta

from bench.p2_lag_cost import (EPOCH, SEED, Op, Reporting, _pct, handed_over, learn, log_uniform, mixed_kinds,
                                run_lrowatch)
from functions.domain import adaptive, eta
from functions.domain.adaptive import DurationStats
from functions.domain.policy import Policy

CHECKPOINTS = (0.25, 0.50, 0.75)
RANDOM = "random"  # a moment drawn uniformly over each operation's life
MOMENTS = (*CHECKPOINTS, RANDOM)
# The workloads' seeds: the first gives the tables, every one a verdict (operations differ between them).
SEEDS = (SEED, SEED + 100, SEED + 200)
BLEND, LINEAR, MEDIAN, NAIVE = "lrowatch blend", "linear progress alone", "per-kind median alone", "(info) naive progress"
STRATEGIES = (BLEND, LINEAR, MEDIAN, NAIVE)
BASELINES = (LINEAR, MEDIAN)
# History's weight D^-w swept for information: 1 is the estimator's (a random moment of life), 0 a fixed time.
SWEEP_WEIGHTS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0)


def poll_times(op: Op, policy: Policy, stats: DurationStats | None, rng: random.Random,
               progress: Reporting | None = None, ends: DurationStats | None = None) -> list[float]:
    """Times of the polls that saw the operation still running, on bench.p2_lag_cost.run_lrowatch's
    schedule: steered by the progress trend when the operation reports one, its finish counted in `ends`."""
    times: list[float] = []
    run_lrowatch(op.duration_s, policy, rng, stats, progress=progress.percent if progress else None, ends=ends,
                 polls=times)
    return times


def estimates(op: Op, polls: list[float], progress: Reporting | None, stats: DurationStats | None,
              read: set[int], blend=eta.estimate) -> dict[int, dict]:
    """What each strategy said at the polls `read` (indices): {strategy: (eta_s, low_s, high_s) | None},
    times from submission. Every poll adds its progress sample, as on the record."""
    out, samples = {}, None
    for i, t in enumerate(polls):
        now = EPOCH + timedelta(seconds=t)
        percent = progress.percent(t) if progress else None
        samples = eta.add_sample(samples, now.timestamp(), percent)
        if i not in read:
            continue
        said = {BLEND: _seconds(blend(now, t, samples, stats))}
        linear = eta.from_progress(samples, now.timestamp())
        said[LINEAR] = (t + linear.median, t + linear.low, t + linear.high) if linear else None
        known = stats is not None and stats.count >= adaptive.MIN_SAMPLES
        said[MEDIAN] = (stats.quantile(0.5), stats.quantile(0.1), stats.quantile(0.9)) if known else None
        said[NAIVE] = (t * 100.0 / percent, None, None) if percent and percent < 100 else None
        out[i] = said
    return out


def _last_polls(polls: list[float], duration_s: float, fractions: dict) -> dict:
    """For each moment (its share of the life), the index of the last poll before it: whose estimate is read."""
    return {f: max((i for i, t in enumerate(polls) if t <= share * duration_s), default=None)
            for f, share in fractions.items()}


def _seconds(estimate: eta.Estimate | None):
    if estimate is None:
        return None
    return tuple((when - EPOCH).total_seconds() for when in (estimate.eta, estimate.low, estimate.high))


def evaluate(ops: list[Op], stats: dict[str, DurationStats], policy: Policy, seed: int, reporting: bool,
             blend=eta.estimate, reads: list | None = None) -> dict:
    """The strategies' figures at each moment and the verdicts. `reads`, given, receives each paired checkpoint
    read: (checkpoint, duration, elapsed at the poll read, kind median, kind 5th percentile, the blend's end)."""
    reads = [] if reads is None else reads
    rng = random.Random(seed)
    moment_rng = random.Random(seed + 1)  # apart, so the checkpoints' figures do not depend on it
    errors = {f: {s: [] for s in STRATEGIES} for f in MOMENTS}
    inside = {f: {s: [] for s in STRATEGIES} for f in MOMENTS}
    answered = {f: {s: 0 for s in STRATEGIES} for f in MOMENTS}
    moments = {f: 0 for f in MOMENTS}
    # As deployed, each kind counts its progress finishes as they come (p2_lag_cost.progress_steering).
    counting = {kind: DurationStats.from_dict(s.to_dict()) for kind, s in stats.items()}
    for op in ops:
        kind_stats = counting.get(op.kind)
        progress = Reporting(op.duration_s, rng) if reporting else None
        polls = poll_times(op, policy, kind_stats, rng, progress, kind_stats if reporting else None)
        fractions = {f: f for f in CHECKPOINTS} | {RANDOM: moment_rng.random()}
        last = _last_polls(polls, op.duration_s, fractions)
        said = estimates(op, polls, progress, kind_stats, {i for i in last.values() if i is not None}, blend)
        for f, share in fractions.items():
            moments[f] += 1
            if last[f] is None:
                continue
            now_said = said[last[f]]
            for s in STRATEGIES:
                answered[f][s] += now_said[s] is not None
            required = (BLEND, MEDIAN, LINEAR) if reporting else (BLEND, MEDIAN)
            if any(now_said[s] is None for s in required):
                continue
            left = op.duration_s * (1 - share)
            if f in CHECKPOINTS:
                reads.append((f, op.duration_s, polls[last[f]], kind_stats.quantile(0.5), kind_stats.quantile(0.05),
                              now_said[BLEND][0]))
            for s in STRATEGIES:
                if now_said[s] is None:
                    continue
                point, low, high = now_said[s]
                errors[f][s].append(abs(point - op.duration_s) / left)
                if low is not None:
                    inside[f][s].append(low <= op.duration_s <= high)
    table = []
    for f in MOMENTS:
        for s in STRATEGIES:
            errs = errors[f][s]
            table.append({
                "checkpoint": f, "strategy": s, "paired": len(errs),
                "answered": answered[f][s] / moments[f] if moments[f] else float("nan"),
                "err_p50": _pct(errs, 0.5), "err_p90": _pct(errs, 0.9),
                "coverage": (sum(inside[f][s]) / len(inside[f][s])) if inside[f][s] else None,
            })
    return {"rows": table, "verdicts": _verdicts(table), "random_verdicts": _verdicts(table, (RANDOM,)),
            "first_checkpoint": _first_checkpoint([r[1:5] for r in reads if r[0] == CHECKPOINTS[0]])}


def _first_checkpoint(reads: list[tuple[float, float, float, float]]) -> dict | None:
    """(info) Who is read at 25 % of life ((duration, elapsed, kind median, kind 5th percentile) each), and the best
    any reading of the kind alone could do there: the single multiple of each kind's median with the lowest median
    error, fitted on these very operations (an oracle)."""
    if not reads:
        return None

    def p50(multiple: float) -> float:
        return _pct([abs(multiple * median - d) / (d * (1 - CHECKPOINTS[0])) for d, _, median, _ in reads], 0.5)

    best = min((p50(m / 100), m / 100) for m in range(50, 201))
    return {"reads": len(reads), "elapsed_below_q05": sum(t < q05 for _, t, _, q05 in reads) / len(reads),
            "duration_over_median_p50": _pct([d / median for d, _, median, _ in reads], 0.5),
            "oracle_multiple": best[1], "oracle_err_p50": best[0], "median_err_p50": p50(1.0)}


def _verdicts(table: list[dict], moments: tuple = CHECKPOINTS) -> dict:
    """AHEAD of a baseline when the blend's median and p90 errors are both lower at every one of `moments`;
    otherwise BEHIND, naming the figures where it is not."""
    verdicts = {}
    for base in BASELINES:
        short = []
        for f in moments:
            a, b = (next(r for r in table if r["checkpoint"] == f and r["strategy"] == s) for s in (BLEND, base))
            if b["paired"] == 0:
                short = None
                break
            at = f if isinstance(f, str) else f"{f:.0%}"
            short += [f"{key[4:]} at {at}: {a[key]:.3f} vs {b[key]:.3f}"
                      for key in ("err_p50", "err_p90") if not a[key] < b[key]]
        verdicts[base] = "n/a" if short is None else "AHEAD" if not short else "BEHIND (" + "; ".join(short) + ")"
    return verdicts


def history_weighed(weight: float):
    """The blend's history-only estimate with each learnt duration D weighed D^-weight."""
    def blend(now: datetime, elapsed_s: float, samples, stats: DurationStats | None) -> eta.Estimate | None:
        left = eta.from_history(stats, elapsed_s, None, weight)
        if left is None:
            return None
        return eta.Estimate(*(now + timedelta(seconds=s) for s in (left.median, left.low, left.high)),
                            eta.BASIS_HISTORY)
    return blend


def weight_sweep(n: int, seed: int) -> list[dict]:
    """(info) Does any weighing of history win every checkpoint where elapsed time is all there is? Each weight's
    checkpoints behind the per-kind median, on the two workloads without progress."""
    policy, rows = Policy(), []
    workloads = [("P2 mixed kinds", mixed_kinds(n, seed + 1), mixed_kinds(n, seed)),
                 ("P2 single kind, log-uniform", log_uniform(n, seed + 1), log_uniform(n, seed))]
    learnt = [(name, learn(train, policy, seed + 7), test) for name, train, test in workloads]
    for weight in SWEEP_WEIGHTS:
        row = {"weight": weight}
        for name, stats, test in learnt:
            verdict = evaluate(test, stats, policy, seed, False, history_weighed(weight))["verdicts"][MEDIAN]
            row[name] = verdict
        rows.append(row)
    return rows


# (info) checkpoint_oracle: an end estimate that depends on the elapsed time alone, both in units of the kind's
# median, non-decreasing, constant between ORACLE_KNOTS knots log-spaced over ORACLE_SPAN; fitted by ORACLE_STEPS
# steps of a seeded random search.
ORACLE_KNOTS, ORACLE_SPAN, ORACLE_STEPS = 24, (0.02, 3.0), 3000
_KNOTS = tuple(ORACLE_SPAN[0] * (ORACLE_SPAN[1] / ORACLE_SPAN[0]) ** (i / (ORACLE_KNOTS - 1))
               for i in range(ORACLE_KNOTS))
ORACLE_SHOWN_AT = (0.1, 0.2, 0.3, 0.5, 1.0)  # elapsed ÷ kind median, where the fitted reading is printed


def _oracle_end(levels: list[float], elapsed: float) -> float:
    """The reading's end for an elapsed time (both ÷ the kind's median): never before now."""
    return max(levels[max(bisect.bisect_right(_KNOTS, elapsed) - 1, 0)], elapsed)


def _by_checkpoint(reads: list[tuple]) -> dict[float, tuple[list, list]]:
    """Per checkpoint, each read's (elapsed ÷ kind median, duration ÷ kind median, time left ÷ kind median), and
    the per-kind median's (p50, p90) error there: what every step of the fit compares against, computed once."""
    out = {}
    for f in CHECKPOINTS:
        shares = [(elapsed / median, duration / median, duration * (1 - f) / median)
                  for at, duration, elapsed, median, *_ in reads if at == f]
        errors = [abs(1.0 - share) / left for _, share, left in shares]
        out[f] = (shares, [_pct(errors, q) for q in (0.5, 0.9)])
    return out


def _ratio_to_median(levels: list[float], checkpoints: dict[float, tuple[list, list]]) -> float:
    """The reading's worst figure (p50 or p90 at a checkpoint) ÷ the per-kind median's: below 1 beats it everywhere."""
    worst = 0.0
    for shares, median_figures in checkpoints.values():
        errors = [abs(_oracle_end(levels, elapsed) - share) / left for elapsed, share, left in shares]
        worst = max(worst, *(_pct(errors, q) / figure for q, figure in zip((0.5, 0.9), median_figures)))
    return worst


def _fit_reading(reads: list[tuple], rng: random.Random) -> tuple[list[float], float]:
    """Start from the blend's own reading (its median end per knot), then keep every random change (one knot or a
    run of knots scaled, made non-decreasing again) that does not raise the worst figure (so it drifts across ties
    instead of stopping at the first)."""
    levels = []
    for lo, hi in zip(_KNOTS, [*_KNOTS[1:], math.inf]):
        near = sorted(said / median for _, _, elapsed, median, _, said in reads if lo <= elapsed / median < hi)
        levels.append(near[len(near) // 2] if near else levels[-1] if levels else 1.0)
    levels = list(itertools.accumulate(levels, max))
    checkpoints = _by_checkpoint(reads)
    score = _ratio_to_median(levels, checkpoints)
    for _ in range(ORACLE_STEPS):
        changed, j = list(levels), rng.randrange(ORACLE_KNOTS)
        changed[j] *= math.exp(rng.gauss(0.0, 0.15))
        if rng.random() < 0.5:  # a run of knots moves together
            end = min(j + rng.randrange(1, 6), ORACLE_KNOTS)
            changed[j:end] = [changed[j]] * (end - j)
        changed = list(itertools.accumulate(changed, max))
        if (changed_score := _ratio_to_median(changed, checkpoints)) <= score:
            levels, score = changed, changed_score
    return levels, score


def _oracle_blend(levels: list[float]):
    """The fitted reading as a blend: it answers where the blend's history does, with no interval."""
    def blend(now: datetime, elapsed_s: float, samples, stats: DurationStats | None) -> eta.Estimate | None:
        if eta.from_history(stats, elapsed_s) is None:
            return None
        median = stats.quantile(0.5)
        at = now + timedelta(seconds=max(_oracle_end(levels, elapsed_s / median) * median - elapsed_s,
                                         eta.MIN_REMAINING_S))
        return eta.Estimate(at, at, at, eta.BASIS_HISTORY)
    return blend


def checkpoint_oracle(n: int, seeds: tuple[int, ...] = SEEDS) -> dict:
    """(info) Can any reading of elapsed time alone beat the per-kind median at every checkpoint of P2 mixed kinds,
    and what does it cost a reader at a random moment? The reading is fitted on the first seed's own checkpoint
    reads (an oracle), then read on every seed: its verdict at the checkpoints and its random-moment errors
    beside the blend's."""
    policy, out = Policy(), {"fit_seed": seeds[0], "seeds": []}
    for seed in seeds:
        train, ops = mixed_kinds(n, seed + 1), mixed_kinds(n, seed)
        stats = learn(train, policy, seed + 7)
        reads: list = []
        ours = evaluate(ops, stats, policy, seed, False, reads=reads)
        if seed == seeds[0]:
            levels, score = _fit_reading(reads, random.Random(seed))
            out |= {"fit_ratio": score, "shape": [(x, _oracle_end(levels, x)) for x in ORACLE_SHOWN_AT],
                    "blend_shape": [(x, _pct([said / median for _, _, elapsed, median, _, said in reads
                                               if abs(math.log(elapsed / median / x)) < 0.1], 0.5))
                                    for x in ORACLE_SHOWN_AT]}
        mine = evaluate(ops, stats, policy, seed, False, _oracle_blend(levels))
        at_random = [next(r for r in result["rows"] if r["checkpoint"] == RANDOM and r["strategy"] == BLEND)
                     for result in (mine, ours)]
        out["seeds"].append({"seed": seed, "verdict": mine["verdicts"][MEDIAN],
                             "random_verdict": mine["random_verdicts"][MEDIAN],
                             "random": [(r["err_p50"], r["err_p90"]) for r in at_random]})
    return out


FROM_START, FROM_SUBMISSION = "lrowatch, elapsed from the API's start", "(before) elapsed from the submission"


def _elapsed_less(seconds: float):
    """The blend told the operation has run `seconds` less than it has (its age counted from a late submission)."""
    return lambda now, elapsed_s, samples, stats: eta.estimate(now, elapsed_s - seconds, samples, stats)


def late_handover(n: int, seeds: tuple[int, ...] = SEEDS) -> list[dict]:
    """(info) P2 mixed kinds handed to lrowatch late (p2_lag_cost.handed_over, as in P2's late_handover),
    polled as deployed: the history estimate at 50 and 75 % of life with the time elapsed counted from
    the start the API reports (Record.started) and from the submission, and the per-kind median, on the
    moments where all three answer."""
    policy, rows = Policy(), []
    for seed in seeds:
        train, ops = mixed_kinds(n, seed + 1), mixed_kinds(n, seed)
        stats = learn(train, policy, seed + 7)
        rng = random.Random(seed)
        errors = {(f, s): [] for f in CHECKPOINTS[1:] for s in (FROM_START, FROM_SUBMISSION, MEDIAN)}
        for op, late in zip(ops, handed_over(ops, seed)):
            polls, kind = [], stats.get(op.kind)
            run_lrowatch(op.duration_s, policy, rng, kind, polls=polls, handed_over_s=late)
            last = _last_polls(polls, op.duration_s, {f: f for f in CHECKPOINTS[1:]})
            read = {i for i in last.values() if i is not None}
            said = {FROM_START: estimates(op, polls, None, kind, read),
                    FROM_SUBMISSION: estimates(op, polls, None, kind, read, blend=_elapsed_less(late))}
            for f, i in last.items():
                points = {FROM_START: said[FROM_START].get(i, {}).get(BLEND),
                          FROM_SUBMISSION: said[FROM_SUBMISSION].get(i, {}).get(BLEND),
                          MEDIAN: said[FROM_START].get(i, {}).get(MEDIAN)}
                if None in points.values():
                    continue
                for name, (point, *_) in points.items():
                    errors[(f, name)].append(abs(point - op.duration_s) / (op.duration_s * (1 - f)))
        rows += [{"seed": seed, "checkpoint": f, "strategy": name, "paired": len(errs),
                  "err_p50": _pct(errs, 0.5), "err_p90": _pct(errs, 0.9)} for (f, name), errs in errors.items()]
    return rows


def run(quick: bool = False, seeds: tuple[int, ...] = SEEDS) -> dict:
    started = time.monotonic()
    n = 400 if quick else 1200
    policy = Policy()
    results = {"n_ops": n, "seeds": list(seeds), "workloads": [],
               "goal": "blend's median and p90 error below both baselines' at 25/50/75 % of life, on every seed"}
    for seed in seeds:
        workloads = [
            ("P2 mixed kinds", mixed_kinds(n, seed + 1), mixed_kinds(n, seed), False),
            ("P2 single kind, log-uniform", log_uniform(n, seed + 1), log_uniform(n, seed), False),
            ("progress-reporting (P2 mixed kinds, progressPercent)", mixed_kinds(n, seed + 3),
             mixed_kinds(n, seed + 2), True),
        ]
        for name, train, test, reporting in workloads:
            stats = learn(train, policy, seed + 7)
            result = evaluate(test, stats, policy, seed, reporting)
            if seed == seeds[0]:
                results["workloads"].append({"name": name, "progress": reporting, **result, "seed_verdicts": {},
                                                "seed_random_verdicts": {}})
            workload = next(w for w in results["workloads"] if w["name"] == name)
            workload["seed_verdicts"][seed] = result["verdicts"]
            workload["seed_random_verdicts"][seed] = result["random_verdicts"]
            workload.setdefault("seed_first_checkpoint", {})[seed] = result["first_checkpoint"]
    verdicts = [v for w in results["workloads"] for by_seed in w["seed_verdicts"].values()
                for v in by_seed.values() if v != "n/a"]
    results["weight_sweep"] = {"seed": seeds[0], "rows": weight_sweep(n, seeds[0])}
    results["late_handover"] = late_handover(n, seeds)
    results["checkpoint_oracle"] = checkpoint_oracle(n, seeds)
    results["verdict"] = "PASS" if verdicts and all(v == "AHEAD" for v in verdicts) else "MISS"
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    return results


if __name__ == "__main__":
    import json
    print(json.dumps(run(quick=True), indent=1, default=str))
