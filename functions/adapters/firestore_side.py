"""Collections beside the records' (claims, leases, durations), and the one
create-or-take-over algorithm that claims and leases share.

A claim or lease is one document per key. Taking it: create it if absent
(`create` is atomic); otherwise read it and, if the current holder's time is
up, overwrite it guarded by the update time just read, so that of two takers
at most one wins. The whole is tried a bounded number of times (a document
deleted between our create and our read, by TTL or a release, starts over).
Many keys are taken in two round trips: one batched read, one BatchWrite.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from google.api_core import exceptions as gexc

from functions.adapters.firestore_lib import library
from functions.adapters.firestore_usage import Usage

# Per-write status codes of a BatchWrite (google.rpc.Code).
_OK, _NOT_FOUND, _ALREADY_EXISTS, _FAILED_PRECONDITION, _ABORTED = 0, 5, 6, 9, 10
LOST_RACE = (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound)
TAKE_ATTEMPTS = 3


@dataclass(frozen=True)
class Taken:
    """The outcome of taking one key: taken or not, the holder's document when not, and
    the version (update time) of ours when taken: the precondition of our next write to it."""

    taken: bool
    current: dict | None = None
    version: Any = None


class SideCollection:
    """A collection beside the records', on the store's lazy client and its side usage counter."""

    def __init__(self, store, collection: str):
        self._store = store
        self._collection = collection

    @property
    def client(self):
        return self._store.client

    @property
    def usage(self) -> Usage:
        return self._store.side_usage

    def _doc(self, key: str):
        return self.client.collection(self._collection).document(key)

    def take(self, keys: list[str], doc: dict, may_take: Callable[[dict], bool],
             attempts: int = TAKE_ATTEMPTS, **call) -> dict[str, Taken]:
        """Create-or-take-over for each key at once; `may_take(current)` says whether an existing
        document's holder is done with it. `call`: retry/timeout for each RPC."""
        BulkWriteBatch = library().BulkWriteBatch

        outcome: dict[str, Taken] = {}
        pending = list(dict.fromkeys(keys))
        for _ in range(attempts):
            if not pending:
                break
            refs = {k: self._doc(k) for k in pending}
            snapshots = {s.id: s for s in self.client.get_all(list(refs.values()), **call)}
            self.usage.read(max(1, len(snapshots)))
            batch, order = BulkWriteBatch(self.client), []
            for key in pending:
                snapshot = snapshots.get(key)
                if snapshot is None or not snapshot.exists:
                    batch.create(refs[key], doc)
                elif may_take(snapshot.to_dict()):
                    batch.update(refs[key], doc,
                                 option=self.client.write_option(last_update_time=snapshot.update_time))
                else:
                    outcome[key] = Taken(False, snapshot.to_dict())
                    continue
                order.append(key)
            if not order:
                break
            response = batch.commit(**call)
            self.usage.write(len(order))
            retry = []
            for key, status, result in zip(order, response.status, response.write_results):
                if status.code == _OK:
                    outcome[key] = Taken(True, version=result.update_time)
                elif status.code in (_ALREADY_EXISTS, _NOT_FOUND):
                    retry.append(key)  # created or deleted since our read: look again
                elif status.code in (_FAILED_PRECONDITION, _ABORTED):
                    outcome[key] = Taken(False)  # another taker won the same expired document
                else:
                    raise _status_error(status)
            pending = retry
        for key in pending:
            outcome.setdefault(key, Taken(False))
        return outcome

    def take_one(self, key: str, doc: dict, may_take: Callable[[dict], bool], **call) -> Taken:
        return self.take([key], doc, may_take, **call)[key]


def _status_error(status) -> Exception:
    """A BatchWrite's per-write failure as the exception a single call would have raised."""
    transient = {4: gexc.DeadlineExceeded, 8: gexc.TooManyRequests, 13: gexc.InternalServerError,
                 14: gexc.ServiceUnavailable}
    return transient.get(status.code, gexc.Unknown)(f"write failed (code {status.code}): {status.message}")
