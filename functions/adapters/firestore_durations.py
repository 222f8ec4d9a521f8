"""Duration summaries (functions.domain.adaptive.DurationStats) kept in Firestore.

One document per (service, operation kind, location). Runs add their finished
operations with field increments, so concurrent runs and shards never
overwrite each other's counts and no transaction is needed.
"""
from __future__ import annotations

from typing import Iterable

from functions.adapters.firestore_lib import library
from functions.adapters.firestore_side import SideCollection
from functions.domain.adaptive import DurationStats


class FirestoreDurations(SideCollection):

    def read(self, keys: Iterable[str]) -> dict[str, DurationStats]:
        """The summaries that exist among `keys`, in one batched read."""
        refs = [self._doc(k) for k in dict.fromkeys(keys)]
        if not refs:
            return {}
        snapshots = list(self.client.get_all(refs))
        self.usage.read(len(refs))
        return {s.id: DurationStats.from_dict(s.to_dict()) for s in snapshots if s.exists}

    def add(self, additions: dict[str, DurationStats]) -> None:
        """Add each summary's counts to its document (created on first use)."""
        firestore = library().firestore

        counted = {key: stats for key, stats in additions.items() if stats.count > 0}
        if not counted:
            return
        batch = self.client.batch()
        for key, stats in counted.items():
            increments = {str(i): firestore.Increment(n) for i, n in stats.buckets.items()}
            fields = {"key": key, "count": firestore.Increment(stats.count), "buckets": increments}
            if stats.progress_ends:
                fields |= {"progress_ends": firestore.Increment(stats.progress_ends),
                           "progress_early": firestore.Increment(stats.progress_early)}
            if stats.progress_scores:
                fields["progress_scores"] = {str(i): firestore.Increment(n) for i, n in stats.progress_scores.items()}
            batch.set(self._doc(key), fields, merge=True)
        self.usage.write(len(counted))
        batch.commit()
