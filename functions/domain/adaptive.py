"""Adaptive polling: learn how long operations of a kind take, poll near their finish.

Pure: no I/O, no clock. Durations of finished operations are summarised per
(service, operation kind, location) in a `DurationStats`, a small log-scale
histogram (a few dozen integer buckets at most) that is JSON-serialisable and
mergeable (summing counts), so several poll runs or shards can each add to it
and a Firestore document can hold it.

How the schedule uses it:
- no data (or too little) → the policy's own ramp, unchanged;
- the first poll lands near the start of the kind's likely finish window
  (its FIRST_POLL_QUANTILE), never later than policy.max_delay_s, nor so
  late that it alone breaks the lag promise below;
- it is planned to a lag promise: LAG_SHARE (95 %) of the kind's operations
  seen within DENSE_MAX_S of finishing, at the fewest GETs. Inside the dense
  stretches (dense_stretches) polls are a dense spacing apart (a fraction of
  the median, at most DENSE_MAX_S); the histogram buckets where a poll is
  least likely to find a finish (most GETs saved per finish seen late) are
  left sparse, for as long as the finishes seen late stay within the other
  5 %, at two standard errors of the learnt shares, counted on the histogram
  smoothed over neighbouring buckets (learnt durations cluster at poll
  midpoints, and the emptiest buckets by chance are the likeliest picks);
- outside the stretches, the policy's geometric ramp, landing on the next
  stretch's start rather than jumping past it; past the last one, the spacing
  widens again. No gap ever exceeds policy.max_delay_s.
- an operation that reports progress says more about itself than its kind
  does: steered_delay skips the polls planned before the soonest end its trend
  allows (functions.domain.eta) and polls densely from there. A trend can be
  wrong (back-loaded curves end sooner than a straight line says; an API
  whose progress understates how far it is would have its finishes seen up
  to policy.max_delay_s late). So each kind scores its finishes: the time
  really left at the last poll ÷ the soonest end that poll allowed. From
  CALIBRATION_MIN scores on, the soonest end is scaled by their
  CALIBRATION_SHARE quantile (DurationStats.calibration); before that, a kind
  whose finishes keep coming before the soonest end (came_early) is not
  steered at all (trusts_progress). On P2's mixed kinds reporting progress:
  about 0.4x the GETs at the same lag, every kind within the promise; an API
  whose progress misleads is polled as its plan says (docs/benchmarks.md,
  "Steered by progress").
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from functions.domain.policy import Policy, _jittered

# Histogram resolution: 4 buckets per doubling (each ~19 % wide).
BUCKETS_PER_DOUBLING = 4
MIN_DURATION_S = 0.25
MAX_DURATION_S = 60 * 86400.0
# Counts are halved past this, so that the summary follows recent behaviour.
MAX_COUNT = 10_000
# Below this many samples the policy's ramp is used as is.
MIN_SAMPLES = 10

FIRST_POLL_QUANTILE = 0.10
DENSE_FRACTION = 0.10  # of the median duration
DENSE_MIN_S = 1.0
DENSE_MAX_S = 15.0
# The lag promise the schedule is planned to: this share of a kind's operations seen within
# DENSE_MAX_S of finishing, at the fewest GETs (dense_stretches).
LAG_SHARE = 0.95
SMOOTHING = 2  # buckets either side (half a doubling) when planning on the histogram
TAIL_GROWTH = 0.25  # past the window, spacing grows by this fraction of the time past it
# Steering by progress is calibrated per kind: each finish with a trend scores the time it really had
# left at its last poll ÷ the soonest end that poll's trend allowed. From CALIBRATION_MIN scores on,
# the soonest end is scaled by their CALIBRATION_SHARE quantile (at most 1), so that no more than that
# share of finishes come before it, whatever the shape of the API's progress.
CALIBRATION_SHARE = 0.02
CALIBRATION_MIN = 30
SCORE_BUCKETS_PER_DOUBLING = 4
SCORE_OFFSET = 64  # bucket index of a score of 1; scores outside 2^-16..2^16 are clamped
SCORE_TOP = 2 * SCORE_OFFSET
# Until then, a kind's trends are trusted until more of its finishes than the lag promise leaves late
# came before the soonest end their trend allowed, past a gap wide enough to be seen late
# (came_early; at least PROGRESS_EARLY_MIN of them, so that a few odd ones do not decide).
PROGRESS_EARLY_SHARE = 1.0 - LAG_SHARE
PROGRESS_EARLY_MIN = 5


def stats_key(service: str, kind: str | None, location: str | None) -> str:
    """A document-id-safe key for (service, operation kind, location)."""
    parts = [service or "-", kind or "-", location or "-"]
    return "~".join(p.replace("/", "_").replace("~", "_") for p in parts)


def _bucket(duration_s: float) -> int:
    d = min(max(duration_s, MIN_DURATION_S), MAX_DURATION_S)
    return math.floor(math.log2(d) * BUCKETS_PER_DOUBLING)


def _edge(index: int) -> float:
    return 2.0 ** (index / BUCKETS_PER_DOUBLING)


@dataclass
class DurationStats:
    """A log-histogram of operation durations (seconds)."""

    count: int = 0
    buckets: dict[int, int] = field(default_factory=dict)
    # Finishes of operations with a progress trend, and how many of them came before its soonest end.
    progress_ends: int = 0
    progress_early: int = 0
    # Those finishes' scores (time really left ÷ the soonest end allowed), a log-histogram.
    progress_scores: dict[int, int] = field(default_factory=dict)
    _quantiles: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _plans: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def add(self, duration_s: float, n: int = 1) -> "DurationStats":
        if not isinstance(duration_s, (int, float)) or duration_s != duration_s or duration_s < 0:
            return self
        index = _bucket(float(duration_s))
        self._quantiles.clear()
        self._plans.clear()
        self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += n
        if self.count > MAX_COUNT:
            self._halve()
        return self

    def add_progress_end(self, early: bool) -> "DurationStats":
        """Count a finish of an operation with a progress trend; `early`: before its soonest end."""
        self.progress_ends += 1
        self.progress_early += bool(early)
        return self

    def add_progress_score(self, score: float) -> "DurationStats":
        """Count a finish's score: the time it really had left at its last poll ÷ that poll's soonest end."""
        if isinstance(score, (int, float)) and score == score and score >= 0:
            index = _score_bucket(float(score))
            self.progress_scores[index] = self.progress_scores.get(index, 0) + 1
        return self

    @property
    def calibrated(self) -> bool:
        return sum(self.progress_scores.values()) >= CALIBRATION_MIN

    def calibration(self) -> float:
        """The factor for this kind's soonest ends: 1 below CALIBRATION_MIN scores, else the lower edge of
        the bucket holding the CALIBRATION_SHARE quantile of its scores, at most 1."""
        if not self.calibrated:
            return 1.0
        target, seen = CALIBRATION_SHARE * sum(self.progress_scores.values()), 0
        for index in sorted(self.progress_scores):
            seen += self.progress_scores[index]
            if seen >= target:
                return min(_score_edge(index), 1.0)
        return 1.0

    def merge(self, other: "DurationStats") -> "DurationStats":
        """A new summary holding both (commutative, associative)."""
        merged = DurationStats(self.count + other.count, _summed(self.buckets, other.buckets),
                               self.progress_ends + other.progress_ends, self.progress_early + other.progress_early,
                               _summed(self.progress_scores, other.progress_scores))
        while merged.count > MAX_COUNT:
            merged._halve()
        return merged

    def _halve(self) -> None:
        self._quantiles.clear()
        self._plans.clear()
        self.buckets = {i: n // 2 for i, n in self.buckets.items() if n // 2 > 0}
        self.count = sum(self.buckets.values())

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1), interpolated geometrically inside a bucket; None when empty."""
        if self.count <= 0:
            return None
        q = min(max(q, 0.0), 1.0)
        if q not in self._quantiles:
            self._quantiles[q] = self._quantile(q)
        return self._quantiles[q]

    def _quantile(self, q: float) -> float:
        target = q * self.count
        seen = 0
        for index in sorted(self.buckets):
            n = self.buckets[index]
            if seen + n >= target and n > 0:
                frac = (target - seen) / n
                lo, hi = _edge(index), _edge(index + 1)
                return lo * (hi / lo) ** frac
            seen += n
        return _edge(max(self.buckets) + 1)

    def count_below(self, duration_s: float) -> float:
        """How many durations are shorter than `duration_s`, geometric inside a bucket (as quantile)."""
        return sum(n * (1.0 - share_above(lo, hi, duration_s)) for lo, hi, n in self.bins())

    def bins(self) -> list[tuple[float, float, int]]:
        """(low edge, high edge, count) of each bucket, shortest first."""
        return [(_edge(i), _edge(i + 1), self.buckets[i]) for i in sorted(self.buckets)]

    def to_dict(self) -> dict:
        raw = {"count": self.count, "buckets": {str(i): n for i, n in sorted(self.buckets.items())}}
        if self.progress_ends:
            raw |= {"progress_ends": self.progress_ends, "progress_early": self.progress_early}
        if self.progress_scores:
            raw["progress_scores"] = {str(i): n for i, n in sorted(self.progress_scores.items())}
        return raw

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "DurationStats":
        """Tolerant: malformed entries are dropped rather than failing a poll."""
        if not isinstance(raw, Mapping):
            return cls()
        buckets = _counts(raw.get("buckets"))
        ends, early = (raw.get(k) for k in ("progress_ends", "progress_early"))
        ends = ends if _counted(ends) and ends > 0 else 0
        early = min(early, ends) if _counted(early) and early > 0 else 0
        return cls(sum(buckets.values()), buckets, ends, early, _counts(raw.get("progress_scores"), 0, SCORE_TOP))


def _counted(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _counts(raw: Any, lowest: float = -math.inf, highest: float = math.inf) -> dict[int, int]:
    """A stored {"index": count} histogram: entries that are not a positive count at an index in
    lowest..highest dropped (a malformed document must not fail a poll)."""
    kept: dict[int, int] = {}
    for key, value in (raw.items() if isinstance(raw, Mapping) else ()):
        try:
            index = int(key)
        except (TypeError, ValueError):
            continue
        if lowest <= index <= highest and _counted(value) and value > 0:
            kept[index] = value
    return kept


def _summed(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    """Two histograms' counts added bucket by bucket."""
    total = dict(a)
    for index, n in b.items():
        total[index] = total.get(index, 0) + n
    return total


def _score_bucket(score: float) -> int:
    if score <= 0:
        return 0
    return min(max(math.floor(SCORE_BUCKETS_PER_DOUBLING * math.log2(score)) + SCORE_OFFSET, 0), SCORE_TOP)


def _score_edge(index: int) -> float:
    return 2.0 ** ((index - SCORE_OFFSET) / SCORE_BUCKETS_PER_DOUBLING)


def share_above(lo: float, hi: float, duration_s: float) -> float:
    """The share of a bucket [lo, hi) longer than `duration_s`, durations log-uniform inside it."""
    if duration_s <= lo:
        return 1.0
    return 0.0 if duration_s >= hi else math.log(hi / duration_s) / math.log(hi / lo)


def observed_duration(start_s: float, last_running_s: float | None, done_s: float) -> float:
    """Duration to record for an operation started at `start_s` and seen done at `done_s` (all times
    in seconds, any origin).

    The operation finished somewhere between the last poll that saw it running
    and the poll that saw it done: the midpoint removes the polling lag that
    would otherwise inflate every learnt duration (and push first polls late).
    """
    after = start_s if last_running_s is None else max(last_running_s, start_s)
    return max(0.0, (after + done_s) / 2.0 - start_s)


def _known(stats: DurationStats | None) -> bool:
    return stats is not None and stats.count >= MIN_SAMPLES


def first_poll_delay(stats: DurationStats | None, policy: Policy) -> float:
    """Delay of the first poll: near the kind's likely finish, never past max_delay_s."""
    if not _known(stats):
        return policy.initial_delay_s
    # Never so late that more finishes than the lag promise allows wait over DENSE_MAX_S for it.
    expected = min(stats.quantile(FIRST_POLL_QUANTILE), stats.quantile(_late_allowance(stats)) + DENSE_MAX_S)
    return min(max(expected, policy.initial_delay_s), policy.max_delay_s)


def _late_allowance(stats: DurationStats) -> float:
    """The share of a kind's finishes the schedule may see late: 1 - LAG_SHARE, less two standard errors
    of a share learnt from stats.count samples."""
    return max((1.0 - LAG_SHARE) - 2.0 * math.sqrt(LAG_SHARE * (1.0 - LAG_SHARE) / stats.count), 0.0)


def dense_delay(stats: DurationStats, policy: Policy) -> float:
    """Spacing of polls inside a dense stretch: a fraction of the median, at most DENSE_MAX_S."""
    median = stats.quantile(0.5)
    return min(max(DENSE_FRACTION * median, DENSE_MIN_S), DENSE_MAX_S, policy.max_delay_s)


def dense_stretches(stats: DurationStats, policy: Policy) -> tuple[tuple[float, float], ...]:
    """The (start, end) stretches of elapsed time polled densely, in order (module doc).

    Every finish inside one is seen within DENSE_MAX_S. Elsewhere polls are up to
    policy.max_delay_s apart, so a finish there may be seen later: the stretches
    left sparse are the histogram buckets that save the most GETs per such late
    finish, for as long as late finishes stay within 1 - LAG_SHARE of the kind's
    operations (those before the first poll included).
    """
    key = (policy.initial_delay_s, policy.max_delay_s)
    if key not in stats._plans:
        stats._plans[key] = _plan(stats, policy)
    return stats._plans[key]


def _plan(stats: DurationStats, policy: Policy) -> tuple[tuple[float, float], ...]:
    first, dense = first_poll_delay(stats, policy), dense_delay(stats, policy)
    sparse = max(policy.max_delay_s, dense)
    budget = _late_allowance(stats) * stats.count - stats.count_below(first - DENSE_MAX_S)
    # Planned on the histogram smoothed over SMOOTHING buckets either side: a learnt duration is the
    # midpoint between two polls, so finishes cluster in some buckets and leave neighbours empty, and
    # choosing the buckets that hold the fewest finishes by chance would leave more late than counted.
    pieces, alive = [], float(stats.count)  # (start, end, finishes, alive at start), from the first poll on
    for lo, hi, n in _smoothed(stats):
        inside = n * share_above(lo, hi, first)
        alive -= n - inside
        if inside > 0:
            pieces.append((max(lo, first), hi, inside, alive))
        alive -= inside

    def late(i: int, j: int) -> float:
        """Finishes seen late in a sparse gap over pieces i..j: polls there are at most the gap's width
        (a landing on the next dense stretch) or `sparse` apart, and a finish waits for the next one."""
        if i > j:
            return 0.0
        spacing = min(sparse, pieces[j][1] - pieces[i][0])
        return sum(p[2] for p in pieces[i:j + 1]) * max(0.0, 1.0 - DENSE_MAX_S / spacing)

    def saved_per_finish(i: int) -> float:
        start, end, finishes, alive_then = pieces[i]
        return alive_then * (end - start) * (1 / dense - 1 / sparse) / finishes

    is_sparse = [False] * len(pieces)
    for i in sorted(range(len(pieces)), key=saved_per_finish, reverse=True):
        lo = hi = i  # the sparse gap piece i would join
        while lo > 0 and is_sparse[lo - 1]:
            lo -= 1
        while hi + 1 < len(pieces) and is_sparse[hi + 1]:
            hi += 1
        cost = late(lo, hi) - late(lo, i - 1) - late(i + 1, hi)
        if cost <= budget:
            budget -= cost
            is_sparse[i] = True
    stretches: list[list[float]] = []
    for (start, end, _, _), skipped in zip(pieces, is_sparse):
        if skipped:
            continue
        if stretches and stretches[-1][1] >= start:
            stretches[-1][1] = end
        else:
            stretches.append([start, end])
    return tuple((start, end) for start, end in stretches)


def _smoothed(stats: DurationStats) -> list[tuple[float, float, float]]:
    """(low edge, high edge, count) of every bucket from the shortest to the longest seen, each count the
    mean over SMOOTHING buckets either side (within that range), rescaled to the same total."""
    first, last = min(stats.buckets), max(stats.buckets)
    means = []
    for i in range(first, last + 1):
        window = range(max(i - SMOOTHING, first), min(i + SMOOTHING, last) + 1)
        means.append(sum(stats.buckets.get(j, 0) for j in window) / len(window))
    scale = stats.count / sum(means)
    return [(_edge(first + k), _edge(first + k + 1), m * scale) for k, m in enumerate(means)]


def next_delay(stats: DurationStats | None, elapsed_s: float, polls_done: int, policy: Policy,
               rng: random.Random | None = None) -> float:
    """Delay before the next poll, `elapsed_s` after submission, after `polls_done` "not done" polls."""
    if not _known(stats):
        return policy.poll_delay(polls_done, rng)
    ramp = replace(policy, jitter=0.0).poll_delay(polls_done)  # the policy's own ramp, unjittered
    dense = dense_delay(stats, policy)
    stretches = dense_stretches(stats, policy)
    ahead = next(((start, end) for start, end in stretches if end > elapsed_s), None)
    if ahead is None:
        # Past every dense stretch: the spacing widens with the time past the last one.
        delay = dense + TAIL_GROWTH * (elapsed_s - stretches[-1][1]) if stretches else ramp
    elif elapsed_s >= ahead[0]:
        # Inside a dense stretch, unjittered: the jittered landing already set each operation's
        # phase, and an even spacing keeps operations submitted together apart.
        return dense
    else:
        # The ramp, landing on the next dense stretch's start rather than jumping past it.
        delay = max(min(ramp, ahead[0] - elapsed_s), dense, 1.0)
    return _shortened(min(max(delay, 1.0), policy.max_delay_s), policy, rng)


def steered_delay(planned_s: float, soonest_s: float, stats: DurationStats | None, policy: Policy,
                  rng: random.Random | None = None) -> float:
    """The planned delay steered by an operation's own progress trend, `soonest_s` being the time left
    before which its end is very unlikely (eta.Remaining.soonest). The plan polls where the kind's
    operations usually end; progress says where this one will. Polls planned before `soonest_s` find
    nothing, so they are skipped, up to policy.max_delay_s; a sparse gap planned past it lands on it
    instead, and from there polls are dense, as in a dense stretch."""
    if stats is not None and stats.calibrated:
        soonest_s *= stats.calibration()  # what this kind's finishes showed of its trends
    elif not trusts_progress(stats):
        return planned_s
    if soonest_s >= planned_s:
        return max(planned_s, _shortened(min(soonest_s, policy.max_delay_s), policy, rng))
    dense = dense_delay(stats, policy) if _known(stats) else min(DENSE_MAX_S, policy.max_delay_s)
    return min(planned_s, max(soonest_s, dense, 1.0))


def came_early(due_s: float, soonest_s: float, gap_s: float) -> bool:
    """Whether a finish seen by a poll due at `due_s`, `gap_s` after the one before, came before the
    soonest end `soonest_s` the trend allowed at that one, with a gap wide enough to see it late."""
    return due_s <= soonest_s and gap_s > DENSE_MAX_S


def trusts_progress(stats: DurationStats | None) -> bool:
    """Whether progress trends may steer polls of this kind (PROGRESS_EARLY_SHARE); with nothing learnt, yes."""
    if stats is None or stats.progress_early < PROGRESS_EARLY_MIN:
        return True
    return stats.progress_early <= PROGRESS_EARLY_SHARE * stats.progress_ends


def _shortened(delay: float, policy: Policy, rng: random.Random | None) -> float:
    # Jitter only shortens a delay, so a dense stretch keeps its promise and no landing overshoots.
    return max(delay - abs(_jittered(delay, policy.jitter, rng) - delay), 1.0)
