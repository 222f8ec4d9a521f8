"""Adaptive polling: learn how long operations of a kind take, poll near their finish.

Pure: no I/O, no clock. Durations of finished operations are summarised per
(service, operation kind, location) in a `DurationStats`, a small log-scale
histogram (a few dozen integer buckets at most) that is JSON-serialisable and
mergeable (summing counts), so several poll runs or shards can each add to it
and a Firestore document can hold it.

How the schedule uses it (issue 3, item 9):
- no data (or too little) → the policy's own ramp, unchanged;
- the first poll lands near the start of the kind's likely finish window
  (its FIRST_POLL_QUANTILE), never later than policy.max_delay_s;
- before the window, the policy's geometric ramp, but never overshooting the
  window's start; inside the window [WINDOW_LO, WINDOW_HI] quantiles, a dense
  spacing (a fraction of the median, at most DENSE_MAX_S); past the window,
  the spacing widens again. No gap ever exceeds policy.max_delay_s.
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
WINDOW_LO = 0.02
WINDOW_HI = 0.98
DENSE_FRACTION = 0.10  # of the median duration
DENSE_MIN_S = 1.0
DENSE_MAX_S = 15.0
TAIL_GROWTH = 0.25  # past the window, spacing grows by this fraction of the time past it


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
    _quantiles: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def add(self, duration_s: float, n: int = 1) -> "DurationStats":
        if not isinstance(duration_s, (int, float)) or duration_s != duration_s or duration_s < 0:
            return self
        index = _bucket(float(duration_s))
        self._quantiles.clear()
        self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += n
        if self.count > MAX_COUNT:
            self._halve()
        return self

    def merge(self, other: "DurationStats") -> "DurationStats":
        """A new summary holding both (commutative, associative)."""
        merged = DurationStats(self.count + other.count, dict(self.buckets))
        for index, n in other.buckets.items():
            merged.buckets[index] = merged.buckets.get(index, 0) + n
        while merged.count > MAX_COUNT:
            merged._halve()
        return merged

    def _halve(self) -> None:
        self._quantiles.clear()
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

    def bins(self) -> list[tuple[float, float, int]]:
        """(low edge, high edge, count) of each bucket, shortest first."""
        return [(_edge(i), _edge(i + 1), self.buckets[i]) for i in sorted(self.buckets)]

    def to_dict(self) -> dict:
        return {"count": self.count, "buckets": {str(i): n for i, n in sorted(self.buckets.items())}}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "DurationStats":
        """Tolerant: malformed entries are dropped rather than failing a poll."""
        if not isinstance(raw, Mapping):
            return cls()
        buckets: dict[int, int] = {}
        for key, value in (raw.get("buckets") or {}).items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                continue
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                buckets[index] = value
        return cls(sum(buckets.values()), buckets)


def observed_duration(submitted_s: float, last_running_s: float | None, done_s: float) -> float:
    """Duration to record for an operation seen done at `done_s` (all times in seconds, any origin).

    The operation finished somewhere between the last poll that saw it running
    and the poll that saw it done: the midpoint removes the polling lag that
    would otherwise inflate every learnt duration (and push first polls late).
    """
    start = submitted_s if last_running_s is None else max(last_running_s, submitted_s)
    return max(0.0, (start + done_s) / 2.0 - submitted_s)


def _known(stats: DurationStats | None) -> bool:
    return stats is not None and stats.count >= MIN_SAMPLES


def first_poll_delay(stats: DurationStats | None, policy: Policy) -> float:
    """Delay of the first poll: near the kind's likely finish, never past max_delay_s."""
    if not _known(stats):
        return policy.initial_delay_s
    expected = stats.quantile(FIRST_POLL_QUANTILE)
    return min(max(expected, policy.initial_delay_s), policy.max_delay_s)


def dense_delay(stats: DurationStats, policy: Policy) -> float:
    """Spacing of polls inside the likely finish window."""
    median = stats.quantile(0.5)
    return min(max(DENSE_FRACTION * median, DENSE_MIN_S), DENSE_MAX_S, policy.max_delay_s)


def next_delay(stats: DurationStats | None, elapsed_s: float, polls_done: int, policy: Policy,
               rng: random.Random | None = None) -> float:
    """Delay before the next poll, `elapsed_s` after submission, after `polls_done` "not done" polls."""
    if not _known(stats):
        return policy.poll_delay(polls_done, rng)
    ramp = replace(policy, jitter=0.0).poll_delay(polls_done)  # the policy's own ramp, unjittered
    lo, hi = stats.quantile(WINDOW_LO), stats.quantile(WINDOW_HI)
    dense = dense_delay(stats, policy)
    if elapsed_s < lo:
        # The ramp, landing on the window's start rather than jumping past it.
        delay = max(min(ramp, lo - elapsed_s), dense, 1.0)
    elif elapsed_s <= hi:
        delay = dense
    else:
        delay = dense + TAIL_GROWTH * (elapsed_s - hi)
    delay = min(max(delay, 1.0), policy.max_delay_s)
    return _jittered(delay, policy.jitter, rng)
