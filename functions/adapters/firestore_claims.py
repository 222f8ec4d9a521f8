"""Effect claims: each side effect of `handle` happens once.

In the spirit of AWS Powertools' idempotency: a claim is created with a
conditional write (IN_PROGRESS with an expiry), completed with its result,
or released when the effect fails so that a redelivery retries it. An expired
in-progress claim (its holder crashed) is taken over. Firestore's TTL policy
on `expires_at` deletes old claims.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from google.api_core import exceptions as gexc

from functions.adapters.firestore_store import LOST_RACE, FirestoreStore


class FirestoreClaims:
    def __init__(self, store: FirestoreStore, collection: str):
        self._store = store
        self._collection = collection

    @property
    def client(self):
        return self._store.client

    def _claims(self):
        return self.client.collection(self._collection)

    def claim(self, key: str, now: datetime, expires_s: float) -> str:
        """'acquired', 'done' or 'busy' for an effect keyed by e.g. an event id."""
        ref = self._claims().document(key)
        doc = {"status": "IN_PROGRESS", "claimed_at": now, "expires_at": now + timedelta(seconds=expires_s)}
        try:
            ref.create(doc)
            return "acquired"
        except gexc.AlreadyExists:
            pass
        snapshot = ref.get()
        if not snapshot.exists:
            return self.claim(key, now, expires_s)
        current = snapshot.to_dict()
        if current.get("status") == "COMPLETED":
            return "done"
        if current["expires_at"] > now:
            return "busy"
        try:  # an expired in-progress claim: its holder crashed, take it over
            ref.update(doc, option=self.client.write_option(last_update_time=snapshot.update_time))
            return "acquired"
        except LOST_RACE:
            return "busy"

    def complete(self, key: str, result: dict, now: datetime, keep_days: int) -> None:
        self._claims().document(key).update({
            "status": "COMPLETED", "result": result, "completed_at": now,
            "expires_at": now + timedelta(days=keep_days)})

    def mark(self, key: str, changes: dict) -> None:
        self._claims().document(key).update(changes)

    def release(self, key: str) -> None:
        self._claims().document(key).delete()

    def get(self, key: str) -> dict | None:
        snapshot = self._claims().document(key).get()
        return snapshot.to_dict() if snapshot.exists else None
