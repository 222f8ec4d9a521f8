"""Named leases in Firestore: who may do a piece of work until when.

Used for the poller's run markers (one run per Cloud Scheduler schedule time),
shard ownership (one run per shard: the poller's fence, see docs/poll-design.md)
and watch-scope listings (once per interval). A lease is one document, taken
with the create-or-take-over helper (functions.adapters.firestore_side): created
if absent, taken over only when expired or already ours. Every later write
(renewal, release) is guarded by the version our previous write returned, so a
holder that lost its lease can never write it again. Firestore's TTL policy on
`expires_at` may delete old ones.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from functions.adapters.firestore_lib import library
from functions.adapters.firestore_side import SideCollection


class FirestoreLeases(SideCollection):

    def acquire(self, key: str, holder: str, now: datetime, until: datetime, **fields) -> Any:
        """The lease's version when `holder` now holds `key` until `until`; None while another
        holder's lease runs."""
        return self.acquire_many([key], holder, now, until, **fields).get(key)

    def acquire_many(self, keys: list[str], holder: str, now: datetime, until: datetime,
                     **fields) -> dict[str, Any]:
        """Each key `holder` now holds (key → version), in two round trips for all of them."""
        doc = {"holder": holder, "acquired_at": now, "expires_at": until, **fields}

        def may_take(current: dict) -> bool:
            expires = current.get("expires_at")
            return current.get("holder") == holder or expires is None or expires <= now

        taken = self.take(keys, doc, may_take)
        return {key: t.version for key, t in taken.items() if t.taken}

    def renew(self, held: Mapping[str, Any], until: datetime, **fields) -> dict[str, Any]:
        """Move the end of leases we hold (key → version); returns the new versions of those still
        ours. One BatchWrite; a lease someone took over meanwhile is simply not returned."""
        BulkWriteBatch = library().BulkWriteBatch

        if not held:
            return {}
        batch = BulkWriteBatch(self.client)
        keys = list(held)
        for key in keys:
            batch.update(self._doc(key), {"expires_at": until, **fields},
                         option=self.client.write_option(last_update_time=held[key]))
        response = batch.commit()
        self.usage.write(len(keys))
        return {key: result.update_time for key, status, result in
                zip(keys, response.status, response.write_results) if status.code == 0}

    def get(self, key: str) -> dict | None:
        snapshot = self._doc(key).get()
        self.usage.read()
        return snapshot.to_dict() if snapshot.exists else None
