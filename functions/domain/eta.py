"""When will it finish? A completion estimate from two sources, blended.

Pure: no I/O, no clock. The inputs are what the record holds:
- progress: a few (time, percent) samples of the operation's own
  `progress_percent`, kept on the record across polls (`add_sample`);
- history: the learnt durations of its kind (functions.domain.adaptive), read
  given the time elapsed since submission: of the operations of this kind that
  ran at least this long, how much longer did they take? (Short runs are
  weighted up the more the kind's durations spread: LIFE_WEIGHT_PER_VARIANCE.)

Each source gives the remaining time as a median and an 80 % interval. Two
sources are blended in log space, each weighted by how sure it is (the
narrower interval weighs more); the blended interval is never narrower than
their disagreement. With neither source there is no estimate (None), never
an invented one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from functions.domain.adaptive import MIN_SAMPLES, DurationStats

# Samples kept on the record: the first where progress moved, and the latest.
SAMPLES_KEPT = 8
# The interval is the 10th..90th percentile of the remaining time.
INTERVAL_LO, INTERVAL_HI = 0.10, 0.90
Z80 = 1.2816  # the 90th percentile of a standard normal, in standard deviations
# Past the 95th percentile of its kind, history says nothing about what is left.
HISTORY_MIN_SURVIVING = 0.05
# Each learnt duration D longer than the time elapsed weighs D^-w. w = 0 reads the plain
# conditional distribution, where long runs dominate; w = 1 takes every moment of an operation's
# life as equally likely to be the one asked about, so short runs count as much as long ones.
# w grows with the spread of the kind (sigma², the variance of its log-durations): for a regular
# kind the two readings barely differ, for one spread over orders of magnitude the long runs
# would swamp the estimate. Chosen on the benchmark (docs/benchmarks.md, "ETA accuracy").
LIFE_WEIGHT_PER_VARIANCE = 1.4
# Progress: the log-spread of a linear extrapolation, floor plus a share of what is left
# (a rate measured over a small part of the work extrapolates far).
PROGRESS_SIGMA_FLOOR = 0.10
PROGRESS_SIGMA_LEFT = 0.50
MIN_REMAINING_S = 1.0

BASIS_PROGRESS, BASIS_HISTORY, BASIS_BOTH = "progress", "history", "both"


@dataclass(frozen=True)
class Remaining:
    """Seconds left, as a median and an 80 % interval (low <= median <= high)."""

    low: float
    median: float
    high: float

    @property
    def sigma(self) -> float:
        """Standard deviation of log(remaining), as a log-normal with this interval would have."""
        return max(math.log(self.high / self.low) / (2 * Z80), 1e-3)


@dataclass(frozen=True)
class Estimate:
    eta: datetime
    low: datetime
    high: datetime
    basis: str  # progress | history | both

    def fields(self) -> dict:
        return {"eta": self.eta, "eta_low": self.low, "eta_high": self.high, "eta_basis": self.basis}


NO_ESTIMATE = {"eta": None, "eta_low": None, "eta_high": None, "eta_basis": None}


def add_sample(samples: Sequence[Sequence[float]] | None, t_s: float, percent: int | None) -> list | None:
    """`samples` with (t_s, percent) added: the first kept, then the latest SAMPLES_KEPT - 1."""
    kept = [list(s) for s in samples or ()]
    if percent is None:
        return kept or None
    if kept and t_s <= kept[-1][0]:
        return kept  # a replayed poll adds nothing
    kept.append([round(t_s, 3), int(percent)])
    if len(kept) > SAMPLES_KEPT:
        kept = [kept[0], *kept[-(SAMPLES_KEPT - 1):]]
    return kept


def from_progress(samples: Sequence[Sequence[float]] | None, now_s: float) -> Remaining | None:
    """Linear extrapolation of progress from where it started moving; None without a positive rate."""
    points = [(float(t), float(p)) for t, p in samples or ()]
    if len(points) < 2:
        return None
    # Leading samples at the starting percentage are queue time, not work: start from the last of them.
    start = max(i for i, (_, p) in enumerate(points) if p == points[0][1])
    points = points[start:]
    t_last, p_last = points[-1]
    if len(points) < 2 or p_last >= 100:
        return None
    rate = _slope(points)
    if rate <= 0:
        return None  # stalled: progress alone cannot tell
    left = (100.0 - p_last) / 100.0
    median = max((100.0 - p_last) / rate - (now_s - t_last), MIN_REMAINING_S)
    # How far the latest step's rate strays from the fitted one widens the interval.
    (t0, p0), (t1, p1) = points[-2], points[-1]
    recent = (p1 - p0) / (t1 - t0) if t1 > t0 else rate
    drift = abs(math.log(recent / rate)) if recent > 0 else 1.0
    sigma = math.hypot(PROGRESS_SIGMA_FLOOR + PROGRESS_SIGMA_LEFT * left, 0.5 * drift)
    return _around(median, sigma)


def from_history(stats: DurationStats | None, elapsed_s: float) -> Remaining | None:
    """The kind's durations, given that this operation has already run `elapsed_s`."""
    if stats is None or stats.count < MIN_SAMPLES:
        return None
    spread = math.log(stats.quantile(INTERVAL_HI) / stats.quantile(INTERVAL_LO)) / (2 * Z80)
    pieces = _longer_than(stats, elapsed_s, min(LIFE_WEIGHT_PER_VARIANCE * spread ** 2, 1.0))
    if sum(n for _, _, n, _ in pieces) < HISTORY_MIN_SURVIVING * stats.count:
        return None
    total = sum(w for *_, w in pieces)

    def left(q: float) -> float:
        target, seen = q * total, 0.0
        for lo, hi, _, w in pieces:
            if seen + w >= target:
                return max(lo * (hi / lo) ** ((target - seen) / w) - elapsed_s, MIN_REMAINING_S)
            seen += w
        return max(pieces[-1][1] - elapsed_s, MIN_REMAINING_S)

    low, median, high = left(INTERVAL_LO), left(0.5), left(INTERVAL_HI)
    return Remaining(min(low, median), median, max(high, median))


def _longer_than(stats: DurationStats, elapsed_s: float, power: float) -> list[tuple[float, float, float, float]]:
    """(low, high, count, weight) of the histogram's part above `elapsed_s`; weight = count·D^-power."""
    pieces = []
    for lo, hi, n in stats.bins():
        if hi <= elapsed_s:
            continue
        start = max(lo, elapsed_s)
        count = n * math.log(hi / start) / math.log(hi / lo)  # log-uniform inside a bucket, as quantile() reads it
        if count > 0:
            pieces.append((start, hi, count, count * math.sqrt(start * hi) ** -power))
    return pieces


def blend(a: Remaining, b: Remaining) -> Remaining:
    """Precision-weighted in log space; never narrower than the two sources' disagreement."""
    wa, wb = 1 / a.sigma ** 2, 1 / b.sigma ** 2
    mu_a, mu_b = math.log(a.median), math.log(b.median)
    mu = (wa * mu_a + wb * mu_b) / (wa + wb)
    sigma = max(1 / math.sqrt(wa + wb), abs(mu_a - mu_b) / 2)
    return _around(math.exp(mu), sigma)


def estimate(now: datetime, elapsed_s: float, samples: Sequence[Sequence[float]] | None,
             stats: DurationStats | None) -> Estimate | None:
    """The completion estimate at `now`, `elapsed_s` after submission; None when nothing supports one."""
    progress = from_progress(samples, now.timestamp())
    history = from_history(stats, elapsed_s)
    if progress and history:
        remaining, basis = blend(progress, history), BASIS_BOTH
    elif progress or history:
        remaining, basis = progress or history, BASIS_PROGRESS if progress else BASIS_HISTORY
    else:
        return None

    def at(seconds: float) -> datetime:
        return now + timedelta(seconds=round(seconds, 3))

    return Estimate(at(remaining.median), at(remaining.low), at(remaining.high), basis)


def _around(median: float, sigma: float) -> Remaining:
    median = max(median, MIN_REMAINING_S)
    return Remaining(max(median * math.exp(-Z80 * sigma), MIN_REMAINING_S * 0.5), median,
                     median * math.exp(Z80 * sigma))


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares percent per second."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_p = sum(p for _, p in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var <= 0:
        return 0.0
    return sum((t - mean_t) * (p - mean_p) for t, p in points) / var
