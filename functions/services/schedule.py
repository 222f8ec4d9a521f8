"""The learnt schedule: duration statistics that place polls near expected finishes.

Reads the per-kind summaries the pure rules need (functions.domain.learning,
functions.domain.adaptive), caches them for a minute, collects the durations of
operations a run saw finish, and adds them to the store when the run ends.
`LearntSchedule.off()` is the schedule without statistics: every method does
nothing, and polls follow each record's policy alone.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Callable

from functions.domain import learning
from functions.domain.adaptive import DurationStats
from functions.domain.record import Record, Versioned
from functions.ports import Durations

log = logging.getLogger(__name__)

STATS_TTL_S = 60.0


class LearntSchedule:
    def __init__(self, durations: Durations | None, monotonic: Callable[[], float] = time.monotonic):
        self._durations = durations
        self._monotonic = monotonic
        self._stats: dict[str, DurationStats | None] = {}
        self._read_at = float("-inf")
        self._learnt: dict[str, DurationStats] = {}
        self._lock = threading.Lock()

    @classmethod
    def off(cls) -> "LearntSchedule":
        return cls(None)

    @property
    def on(self) -> bool:
        return self._durations is not None

    def prepare(self, records: list[Record], first: bool = False) -> None:
        """Read the summaries these records need (cached for STATS_TTL_S)."""
        if not self.on or not records:
            return
        if self._monotonic() - self._read_at > STATS_TTL_S:
            self._stats, self._read_at = {}, self._monotonic()
        keys = {learning.any_kind_key(r) for r in records}
        if not first:
            keys |= {k for k in (learning.kind_key(r) for r in records) if k}
        missing = [k for k in keys if k not in self._stats]
        if missing:
            found = self._durations.read(missing)
            self._stats = {**self._stats, **{key: found.get(key) for key in missing}}

    def stats_for(self, record: Record) -> DurationStats | None:
        if not self.on:
            return None
        key = learning.kind_key(record)
        stats = self._stats.get(key) if key else None
        return stats if stats is not None else self._stats.get(learning.any_kind_key(record))

    def first_polls_later(self, due: list[Versioned], now: datetime) -> list[tuple[Versioned, datetime]]:
        """New operations of a known kind whose first poll should wait until near their expected finish."""
        if not self.on:
            return []
        fresh = [v for v in due if not v.record.polls and not v.record.seen]
        self.prepare([v.record for v in fresh], first=True)
        later = []
        for versioned in fresh:
            when = learning.first_poll_at(versioned.record, self._stats.get(learning.any_kind_key(versioned.record)))
            if when is not None and when > now:
                later.append((versioned, when))
        return later

    def learn(self, before: Record, after: Record, now: datetime) -> None:
        """Count the duration of an operation this poll saw finish (once committed)."""
        if not self.on:
            return
        duration = learning.finished_duration(before, after, now)
        if duration is None:
            return
        progress = learning.progress_end(before, after, now)
        with self._lock:
            for key in filter(None, (learning.kind_key(after), learning.any_kind_key(after))):
                stats = self._learnt.setdefault(key, DurationStats()).add(duration)
                if progress is not None:
                    stats.add_progress_end(progress.early).add_progress_score(progress.score)

    def save(self) -> None:
        with self._lock:
            learnt, self._learnt = self._learnt, {}
        if learnt and self.on:
            try:
                self._durations.add(learnt)
            except Exception:  # statistics are an optimisation: never fail a run over them
                log.warning("could not save duration statistics", exc_info=True)
