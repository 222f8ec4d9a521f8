"""Effect claims: each side effect of `handle` happens once.

In the spirit of AWS Powertools' idempotency: a claim is created with a
conditional write (IN_PROGRESS with an expiry), completed with its result,
or released when the effect fails so that a redelivery retries it. An expired
in-progress claim (its holder crashed) is taken over. Firestore's TTL policy
on `expires_at` deletes old claims (infra/modules/lrowatch/firestore.tf).

Document `${collection}_claims/{key}`:
  status      IN_PROGRESS | COMPLETED
  claimed_at  when the current holder took it
  expires_at  IN_PROGRESS: when another delivery may take it over;
              COMPLETED: when Firestore TTL deletes it (the dedupe window)
  result      the effect's result as JSON text (API JSON may nest arrays,
              which Firestore maps cannot hold)
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type

from functions.adapters.firestore_side import SideCollection
from functions.domain.errors import TransientError

ACQUIRED, DONE, BUSY = "acquired", "done", "busy"

# Claims are the first Firestore call of a delivery: when Firestore is down,
# fail within seconds (→ 5xx, Pub/Sub redelivers with backoff) rather than
# holding the push request through the client's default 60 s of retries.
_UNAVAILABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError,
                gexc.TooManyRequests)
RETRY = Retry(predicate=if_exception_type(*_UNAVAILABLE), initial=0.1, maximum=1.0, multiplier=2.0,
              timeout=4.0)
CALL_TIMEOUT_S = 4.0


class ClaimsUnavailable(TransientError):
    """The claims collection could not be read or written: retry the delivery later."""


class FirestoreClaims(SideCollection):

    def claim(self, key: str, now: datetime, expires_s: float) -> str:
        """ACQUIRED, DONE or BUSY for the effect named `key`; an expired in-progress claim (its
        holder crashed) is taken over."""
        doc = {"status": "IN_PROGRESS", "claimed_at": now, "expires_at": now + timedelta(seconds=expires_s)}

        def may_take(current: dict) -> bool:
            return current.get("status") != "COMPLETED" and current["expires_at"] <= now

        with _wrapped(key):
            taken = self.take_one(key, doc, may_take, retry=RETRY, timeout=CALL_TIMEOUT_S)
        if taken.taken:
            return ACQUIRED
        return DONE if (taken.current or {}).get("status") == "COMPLETED" else BUSY

    def complete(self, key: str, result: dict, now: datetime, keep_days: float) -> None:
        self.usage.write()
        with _wrapped(key):
            self._doc(key).update({
                "status": "COMPLETED", "result": json.dumps(result, separators=(",", ":"), default=str),
                "completed_at": now, "expires_at": now + timedelta(days=keep_days)},
                retry=RETRY, timeout=CALL_TIMEOUT_S)

    def release(self, key: str) -> None:
        self.usage.delete()
        with _wrapped(key):
            self._doc(key).delete(retry=RETRY, timeout=CALL_TIMEOUT_S)

    def result(self, key: str) -> dict | None:
        """The stored result of a completed effect; None if unclaimed or still in progress."""
        doc = self.get(key)
        if not doc or doc.get("status") != "COMPLETED":
            return None
        return json.loads(doc.get("result") or "{}")

    def get(self, key: str) -> dict | None:
        self.usage.read()
        with _wrapped(key):
            snapshot = self._doc(key).get(retry=RETRY, timeout=CALL_TIMEOUT_S)
        return snapshot.to_dict() if snapshot.exists else None


class _wrapped:
    """Store unavailability → ClaimsUnavailable, with the cause kept."""

    def __init__(self, key: str):
        self._key = key

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, _tb):
        if exc is not None and isinstance(exc, (*_UNAVAILABLE, gexc.RetryError)):
            raise ClaimsUnavailable(f"claims store unavailable for {self._key}: {str(exc)[:200]}") from exc
        return False
