"""Firestore billing units, counted where the adapters make the calls.

Counted as Firestore bills them: a document read (a query returning nothing
bills one read; a count bills one read per 1,000 index entries, at least one),
a document written (create, set, update; attempted, whether or not its
precondition held) and a document deleted. The bench and a run's summary read
these; nothing is estimated.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Counts:
    reads: int = 0
    writes: int = 0
    deletes: int = 0

    def __sub__(self, other: "Counts") -> "Counts":
        return Counts(self.reads - other.reads, self.writes - other.writes, self.deletes - other.deletes)

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.reads + other.reads, self.writes + other.writes, self.deletes + other.deletes)


class Usage:
    def __init__(self):
        self._lock = threading.Lock()
        self._reads = self._writes = self._deletes = 0

    def read(self, n: int = 1) -> None:
        with self._lock:
            self._reads += n

    def write(self, n: int = 1) -> None:
        with self._lock:
            self._writes += n

    def delete(self, n: int = 1) -> None:
        with self._lock:
            self._deletes += n

    def counts(self) -> Counts:
        with self._lock:
            return Counts(self._reads, self._writes, self._deletes)
