"""When will it finish? A completion estimate from two sources, combined.

Pure: no I/O, no clock. The inputs are what the record holds:
- progress: a few (time, percent) samples of the operation's own
  `progress_percent`, kept on the record across polls (`add_sample`), extrapolated
  linearly to 100 %: a remaining time with a log-normal spread (`from_progress`);
- history: the learnt durations of its kind (functions.domain.adaptive), read as
  what is left given the time already elapsed (`from_history`).

Whose question history answers: someone asking at a random moment of an
operation's life, each operation counting once (as the accuracy benchmark asks
at 25/50/75 % of every life). Of the kind's durations D longer than the time
elapsed, each then weighs 1/D: the chance that the moment asked about falls at
this point of a D-long life. (Weighing them alike asks at a random moment in
time instead, where long runs dominate: on a kind spread over orders of
magnitude that overestimates what is left several-fold.)

With both sources, history is the prior and progress the likelihood: the
estimate is their product's median and its 80 % interval the product's 10th..90th
percentiles. Where history has no duration anywhere near what progress says,
progress alone speaks. With neither there is no estimate (None), never an invented one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Sequence

from functions.domain.adaptive import MIN_SAMPLES, DurationStats

# Samples kept on the record: the last at the starting value (work began after it), and the latest.
SAMPLES_KEPT = 8
# The interval is the 10th..90th percentile of the remaining time.
INTERVAL_LO, INTERVAL_HI = 0.10, 0.90
Z80 = 1.2816  # the 90th percentile of a standard normal, in standard deviations
# Each learnt duration D weighs D^-READER_WEIGHT: 1 for a reader at a random moment of the life (module doc).
READER_WEIGHT = 1.0
# Past the 95th percentile of its kind, history says nothing about what is left.
HISTORY_MIN_SURVIVING = 0.05
# With progress, the product is read on a grid of remaining times, log-spaced: a few steps inside
# each of history's buckets (adaptive.BUCKETS_PER_DOUBLING) and inside a late trend's narrow spread,
# as far as PROGRESS_REACH standard deviations either side of what progress says (beyond, its
# likelihood is below 4e-6 of its peak).
GRID_STEPS_PER_DOUBLING = 16
PROGRESS_REACH = 5.0
# Progress: the log-spread of a linear extrapolation, floor plus a share of what is left
# (a rate measured over a small part of the work extrapolates far).
PROGRESS_SIGMA_FLOOR = 0.10
PROGRESS_SIGMA_LEFT = 0.50
MIN_REMAINING_S = 1.0
# The soonest end worth polling for, with a progress trend: the estimate's lower spread carried
# SOONEST_Z standard deviations below its median (0.13 % of a log-normal; adaptive.steered_delay).
SOONEST_Z = 3.0

BASIS_PROGRESS, BASIS_HISTORY, BASIS_BOTH = "progress", "history", "both"
PROGRESS_BASES = (BASIS_PROGRESS, BASIS_BOTH)  # the estimates resting on a progress trend


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

    @property
    def soonest(self) -> float:
        """Seconds left before which an end is very unlikely: the lower spread carried to SOONEST_Z."""
        below = math.log(self.median / self.low) / Z80 if self.low > 0 else self.sigma
        return self.median * math.exp(-SOONEST_Z * below)


@dataclass(frozen=True)
class Estimate:
    eta: datetime
    low: datetime
    high: datetime
    basis: str  # progress | history | both
    # With a progress trend, the earliest end worth polling for (Remaining.soonest); not on the record.
    soonest: datetime | None = None

    def fields(self) -> dict:
        return {"eta": self.eta, "eta_low": self.low, "eta_high": self.high, "eta_basis": self.basis}


NO_ESTIMATE = {"eta": None, "eta_low": None, "eta_high": None, "eta_basis": None}


def add_sample(samples: Sequence[Sequence[float]] | None, t_s: float, percent: int | None) -> list | None:
    """`samples` with (t_s, percent) added: the last at the starting value, then the latest SAMPLES_KEPT - 1."""
    kept = [list(s) for s in samples or ()]
    if percent is None:
        return kept or None
    if kept and t_s <= kept[-1][0]:
        return kept  # a replayed poll adds nothing
    if kept and all(p == percent for _, p in kept):
        # Still at its starting value (queued): work began after the latest such sample, so only it counts.
        return [[round(t_s, 3), int(percent)]]
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


def from_history(stats: DurationStats | None, elapsed_s: float, progress: Remaining | None = None,
                 weight: float = READER_WEIGHT) -> Remaining | None:
    """What is left by the kind's durations, `elapsed_s` into the operation's life (module doc),
    times the progress trend's likelihood when given. None with too little history, past its
    95th percentile, or when none of the kind's durations lies within PROGRESS_REACH of what
    progress says. `weight`: each duration D weighs D^-weight (READER_WEIGHT; the accuracy
    benchmark sweeps it)."""
    if stats is None or stats.count < MIN_SAMPLES:
        return None
    if stats.count - stats.count_below(elapsed_s) < HISTORY_MIN_SURVIVING * stats.count:
        return None
    bins = [(lo, hi, n) for lo, hi, n in stats.bins() if hi > elapsed_s]
    left = (_left_by_history(bins, elapsed_s, weight) if progress is None
            else _left_by_both(bins, elapsed_s, progress, weight))
    if left is None:
        return None
    median = max(left(0.5), MIN_REMAINING_S)
    return Remaining(min(left(INTERVAL_LO), median), median, max(left(INTERVAL_HI), median))


def _left_by_history(bins: list[tuple[float, float, int]], elapsed_s: float,
                     weight: float) -> Callable[[float], float]:
    """The q-quantile of the time left, in closed form: inside a bucket durations are log-uniform
    (density ∝ 1/D, as DurationStats.quantile reads them), so weighed D^-weight their density is
    ∝ D^-(1 + weight)."""
    pieces = []
    for lo, hi, n in bins:
        start = max(lo, elapsed_s)
        pieces.append((start, hi, n / math.log(hi / lo) * _power_mass(start, hi, weight)))
    total = sum(mass for *_, mass in pieces)

    def left(q: float) -> float:
        target, seen = q * total, 0.0
        for start, end, mass in pieces:
            if mass > 0 and seen + mass >= target:
                return _power_quantile(start, end, weight, (target - seen) / mass) - elapsed_s
            seen += mass
        return pieces[-1][1] - elapsed_s

    return left


def _power_mass(start: float, end: float, weight: float) -> float:
    """∫ D^-(1 + weight) dD over [start, end]."""
    if weight == 0:
        return math.log(end / start)
    return (start ** -weight - end ** -weight) / weight


def _power_quantile(start: float, end: float, weight: float, share: float) -> float:
    """The D in [start, end] below which `share` of ∫ D^-(1 + weight) dD lies."""
    if weight == 0:
        return start * (end / start) ** share
    return (start ** -weight - share * (start ** -weight - end ** -weight)) ** (-1 / weight)


def _left_by_both(bins: list[tuple[float, float, int]], elapsed_s: float, progress: Remaining,
                  weight: float) -> Callable[[float], float] | None:
    """The q-quantile of the time left by history (prior) times progress (likelihood), on a grid of
    time left log-spaced around what progress says; None when history has no duration there."""
    def cell(seconds: float) -> int:
        return max(math.floor(GRID_STEPS_PER_DOUBLING * math.log2(max(seconds, 1e-9) / _grid_edge(1))) + 1, 0)

    reach = PROGRESS_REACH * progress.sigma
    cells = range(max(cell(bins[0][0] - elapsed_s), cell(progress.median * math.exp(-reach))),
                  min(cell(bins[-1][1] - elapsed_s), cell(progress.median * math.exp(reach))) + 1)
    masses, index = [], 0
    for i in cells:
        lo, hi = _grid_edge(i), _grid_edge(i + 1)
        mid = (lo + hi) / 2
        duration = elapsed_s + mid
        while index < len(bins) and bins[index][1] <= duration:
            index += 1
        if index == len(bins) or bins[index][0] > duration:
            masses.append(0.0)
            continue
        bucket_lo, bucket_hi, n = bins[index]
        z = math.log(mid / progress.median) / progress.sigma
        # The bucket's density per second over the cell's width, weighed duration^-weight, times the likelihood.
        masses.append(n / (duration * math.log(bucket_hi / bucket_lo)) * (hi - lo) / duration ** weight
                      * math.exp(-0.5 * z * z))
    total = sum(masses)
    if total <= 0:
        return None

    def left(q: float) -> float:
        target, seen = q * total, 0.0
        for i, mass in zip(cells, masses):
            if mass > 0 and seen + mass >= target:
                lo, hi, share = _grid_edge(i), _grid_edge(i + 1), (target - seen) / mass
                return hi * share if lo == 0 else lo * (hi / lo) ** share
            seen += mass
        return _grid_edge(cells[-1] + 1)

    return left


def _grid_edge(i: int) -> float:
    """Seconds left at edge i of the grid: 0, then log-spaced from half the minimum."""
    return 0.0 if i <= 0 else 0.5 * MIN_REMAINING_S * 2.0 ** ((i - 1) / GRID_STEPS_PER_DOUBLING)


def estimate(now: datetime, elapsed_s: float, samples: Sequence[Sequence[float]] | None,
             stats: DurationStats | None) -> Estimate | None:
    """The completion estimate at `now`, `elapsed_s` after submission; None when nothing supports one."""
    progress = from_progress(samples, now.timestamp())
    history = from_history(stats, elapsed_s, progress)
    if history:
        remaining, basis = history, BASIS_BOTH if progress else BASIS_HISTORY
    elif progress:
        remaining, basis = progress, BASIS_PROGRESS
    else:
        return None

    def at(seconds: float) -> datetime:
        return now + timedelta(seconds=round(seconds, 3))

    soonest = at(remaining.soonest) if progress else None
    return Estimate(at(remaining.median), at(remaining.low), at(remaining.high), basis, soonest)


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
