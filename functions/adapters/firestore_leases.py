"""Named leases in Firestore: who may do a piece of work until when.

Used for the poller's run markers (one run per Cloud Scheduler schedule time),
shard ownership (one run per shard) and watch-scope listings (once per
interval). A lease is one document: created if absent, taken over only when
expired, always with an update-time precondition so that two takers can't
both win. Firestore's TTL policy on `expires_at` may delete old ones.
"""
from __future__ import annotations

import re
from datetime import datetime

from google.api_core import exceptions as gexc

from functions.adapters.firestore_store import LOST_RACE, SideCollection

_UNSAFE = re.compile(r"[^A-Za-z0-9_.~-]")


def lease_key(*parts: str) -> str:
    """A document id from free text (schedule times hold ':'; ids may not hold '/')."""
    return _UNSAFE.sub("_", "-".join(parts))[:1400]


class FirestoreLeases(SideCollection):

    def acquire(self, key: str, holder: str, now: datetime, until: datetime, **fields) -> bool:
        """True when `holder` now holds `key` until `until`; False while another holder's lease runs."""
        ref = self._doc(key)
        doc = {"holder": holder, "acquired_at": now, "expires_at": until, **fields}
        try:
            ref.create(doc)
            return True
        except gexc.AlreadyExists:
            pass
        snapshot = ref.get()
        if not snapshot.exists:
            return self.acquire(key, holder, now, until, **fields)
        current = snapshot.to_dict()
        if current.get("holder") != holder and current.get("expires_at") and current["expires_at"] > now:
            return False
        try:  # expired (its holder crashed or finished): take it over
            ref.update(doc, option=self.client.write_option(last_update_time=snapshot.update_time))
            return True
        except LOST_RACE:
            return False

    def extend(self, key: str, holder: str, until: datetime, **fields) -> None:
        """Move the end of a lease we hold (e.g. to keep a finished run's marker)."""
        snapshot = self._doc(key).get()
        if snapshot.exists and snapshot.get("holder") == holder:
            self._doc(key).update({"expires_at": until, **fields},
                                  option=self.client.write_option(last_update_time=snapshot.update_time))

    def get(self, key: str) -> dict | None:
        snapshot = self._doc(key).get()
        return snapshot.to_dict() if snapshot.exists else None
