"""Firestore persistence: operation records, the event outbox, effect claims.

Writes that race (claims, poll results) use update-time preconditions rather
than transactions: the emulator and Standard edition lock pessimistically, so
optimistic preconditions keep contended work fast and never block readers.
"""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator

from google.api_core import exceptions as gexc

from functions.adapters.lazy import Lazy
from functions.domain.errors import InvalidArgument
from functions.domain.events import Message, outbox_id
from functions.domain.record import Record
from functions.domain.states import ACTIVE
from functions.domain.tracking import Decision

log = logging.getLogger(__name__)

LOST_RACE = (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound)


@dataclass(frozen=True)
class Claimed:
    """A record this run holds a lease on, with the write time that proves it."""

    record: Record
    update_time: Any


@dataclass(frozen=True)
class OutboxEntry:
    id: str
    topic: str  # "events" | "commands"
    message: Message
    created_at: datetime


class FirestoreStore:
    def __init__(self, project: str, collection: str, client=None):
        self._project = project
        self._collection = collection
        self._client = Lazy(self._new_client, client)

    def _new_client(self):
        from google.cloud import firestore

        return firestore.Client(project=self._project)

    @property
    def client(self):
        return self._client.get()

    def _records(self):
        return self.client.collection(self._collection)

    def _outbox(self):
        return self.client.collection(f"{self._collection}_outbox")

    # Records ---------------------------------------------------------------
    def create(self, record: Record) -> tuple[Record, bool]:
        """Create unless it exists: `create()` is atomic, so concurrent submits make one record."""
        ref = self._records().document(record.id)
        try:
            ref.create(record.to_doc())
            return record, True
        except gexc.AlreadyExists:
            existing = self.get(record.id)
            if existing is None:  # deleted in between (TTL): extremely unlikely; try once more
                ref.create(record.to_doc())
                return record, True
            return existing, False

    def get(self, operation_id: str) -> Record | None:
        snapshot = self._records().document(operation_id).get()
        return Record.from_doc(snapshot.to_dict()) if snapshot.exists else None

    def get_with_time(self, operation_id: str) -> Claimed | None:
        snapshot = self._records().document(operation_id).get()
        return Claimed(Record.from_doc(snapshot.to_dict()), snapshot.update_time) if snapshot.exists else None

    def update_fields(self, operation_id: str, changes: dict) -> None:
        """A field-level update that does not disturb other writers' fields."""
        self._records().document(operation_id).update(changes)

    def list(self, *, state: str | None = None, service: str | None = None, labels: dict | None = None,
             limit: int = 50, page_token: str | None = None) -> tuple[list[Record], str | None]:
        """Equality filters ordered by id: served by single-field indexes (no composite needed)."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._records()
        if state:
            query = query.where(filter=FieldFilter("state", "==", state))
        if service:
            query = query.where(filter=FieldFilter("service", "==", service))
        for key, value in (labels or {}).items():
            query = query.where(filter=FieldFilter(f"labels.`{key}`", "==", value))
        query = query.order_by("__name__").limit(limit + 1)
        if page_token:
            query = query.start_after({"__name__": self._records().document(_decode_token(page_token))})
        records = [Record.from_doc(s.to_dict()) for s in query.stream()]
        more = len(records) > limit
        records = records[:limit]
        return records, (_encode_token(records[-1].id) if more and records else None)

    # Polling ---------------------------------------------------------------
    def _due_query(self, now: datetime, shard: int | None):
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._records()
        if shard is not None:
            query = query.where(filter=FieldFilter("shard", "==", shard))
        query = query.where(filter=FieldFilter("state", "in", [s.value for s in ACTIVE]))
        return query.where(filter=FieldFilter("next_poll_at", "<=", now)).order_by("next_poll_at")

    def due(self, now: datetime, limit: int, shard: int | None = None) -> list[Claimed]:
        """Due records with their update times, oldest due first."""
        return self.due_page(now, limit, shard)[0]

    def due_page(self, now: datetime, limit: int, shard: int | None = None,
                 after: Any = None) -> tuple[list[Claimed], Any]:
        """One page of due records, oldest due first, and the cursor after it (None at the end).

        `after` continues from the previous page's cursor rather than from the top, so a
        run walks a large backlog one page at a time without re-reading what it passed.
        """
        query = self._due_query(now, shard).limit(limit)
        if after is not None:
            query = query.start_after(after)
        snapshots = list(query.stream())
        page = [Claimed(Record.from_doc(s.to_dict()), s.update_time) for s in snapshots]
        return page, (snapshots[-1] if len(snapshots) == limit else None)

    def next_due_at(self, shard: int | None = None) -> datetime | None:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._records()
        if shard is not None:
            query = query.where(filter=FieldFilter("shard", "==", shard))
        query = query.where(filter=FieldFilter("state", "in", [s.value for s in ACTIVE]))
        for snapshot in query.order_by("next_poll_at").limit(1).stream():
            return snapshot.get("next_poll_at")
        return None

    def due_count(self, now: datetime, shard: int | None, up_to: int) -> int:
        """How many operations are due, counted server-side up to `up_to` (no documents read)."""
        query = self._due_query(now, shard).limit(up_to)
        for result in query.count().get():
            return int(result[0].value)
        return 0

    def claim_many(self, candidates: list[Claimed], run_id: str, lease_until: datetime,
                   now: datetime) -> list[Claimed]:
        """Lease many records in one BatchWrite; each write is guarded on its own, so a lost race
        (another run, a handle write) drops only that record."""
        from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

        if not candidates:
            return []
        changes = {"lease_owner": run_id, "next_poll_at": lease_until, "updated_at": now}
        batch = BulkWriteBatch(self.client)
        for candidate in candidates:
            batch.update(self._records().document(candidate.record.id), changes,
                         option=self.client.write_option(last_update_time=candidate.update_time))
        response = batch.commit()
        return [Claimed(c.record.with_changes(**changes), result.update_time)
                for c, status, result in zip(candidates, response.status, response.write_results)
                if status.code == 0]

    def reschedule_many(self, items: list[tuple[Claimed, datetime]], now: datetime) -> int:
        """Move records' next poll later (adaptive first poll), each guarded; returns how many moved."""
        from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

        if not items:
            return 0
        batch = BulkWriteBatch(self.client)
        for claimed, when in items:
            batch.update(self._records().document(claimed.record.id), {"next_poll_at": when, "updated_at": now},
                         option=self.client.write_option(last_update_time=claimed.update_time))
        return sum(1 for status in batch.commit().status if status.code == 0)

    def commit_quiet(self, items: list[tuple[Claimed, Decision]]) -> list[Any]:
        """Poll results that publish nothing, in one BatchWrite; None where the guard failed."""
        from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

        if not items:
            return []
        batch = BulkWriteBatch(self.client)
        for claimed, decision in items:
            batch.update(self._records().document(claimed.record.id), decision.record.to_doc(),
                         option=self.client.write_option(last_update_time=claimed.update_time))
        response = batch.commit()
        return [result.update_time if status.code == 0 else None
                for status, result in zip(response.status, response.write_results)]

    def existing_ids(self, operation_ids: list[str]) -> set[str]:
        """Which of these records exist, in one batched read (ids only)."""
        refs = [self._records().document(i) for i in operation_ids]
        return {s.id for s in self.client.get_all(refs, field_paths=["state"]) if s.exists}

    def claim(self, claimed: Claimed, run_id: str, lease_until: datetime, now: datetime) -> Claimed | None:
        """Take a lease by pushing next_poll_at past the lease; None if another writer got there first."""
        changes = {"lease_owner": run_id, "next_poll_at": lease_until, "updated_at": now}
        try:
            result = self._records().document(claimed.record.id).update(
                changes, option=self.client.write_option(last_update_time=claimed.update_time))
        except LOST_RACE:
            return None
        return Claimed(claimed.record.with_changes(**changes), result.update_time)

    def commit(self, claimed: Claimed, decision: Decision) -> Any:
        """Record and its outbox entries in one atomic batch, guarded by the lease's write time.

        Returns the new update time, or None when someone else wrote the record
        since (the caller re-reads and decides again).
        """
        times = self.commit_many([(claimed, decision)])
        return times[0] if times else None

    def commit_many(self, items: list[tuple[Claimed, Decision]]) -> list[Any] | None:
        """Several records and their outbox entries in one atomic batch, each record guarded by its
        own write time: a state change is never written without its event, nor the event without it.

        Returns the records' new update times, or None when any guard failed (nothing was written;
        the caller retries them one by one).
        """
        from google.cloud import firestore

        batch = self.client.batch()
        record_writes: list[int] = []  # each record's index among the batch's writes
        writes = 0
        for claimed, decision in items:
            record_writes.append(writes)
            batch.update(self._records().document(claimed.record.id), decision.record.to_doc(),
                         option=self.client.write_option(last_update_time=claimed.update_time))
            writes += 1
            for topic, message in (("events", decision.event), ("commands", decision.command)):
                if message is not None:
                    batch.set(self._outbox().document(outbox_id(topic, message)),
                              {**message.to_doc(), "topic": topic, "created_at": firestore.SERVER_TIMESTAMP,
                               "operation_id": claimed.record.id, "sequence": decision.record.sequence})
                    writes += 1
        try:
            results = batch.commit()
        except LOST_RACE:
            return None
        return [results[i].update_time for i in record_writes]

    # Outbox ----------------------------------------------------------------
    def add_outbox(self, topic: str, message: Message, operation_id: str, sequence: int) -> str:
        from google.cloud import firestore

        entry_id = outbox_id(topic, message)
        self._outbox().document(entry_id).set(
            {**message.to_doc(), "topic": topic, "created_at": firestore.SERVER_TIMESTAMP,
             "operation_id": operation_id, "sequence": sequence})
        return entry_id

    def outbox(self, older_than: datetime, limit: int = 500) -> list[OutboxEntry]:
        """The oldest page of entries recorded before `older_than`, oldest first."""
        return next(self.outbox_pages(older_than, limit), [])

    def outbox_pages(self, older_than: datetime, page_size: int = 500) -> Iterator[list[OutboxEntry]]:
        """Entries recorded before `older_than`, page by page, oldest first.

        Creation order is per-operation sequence order: an operation's next
        change is recorded only after its previous one was committed.
        """
        from google.cloud.firestore_v1.base_query import FieldFilter

        base = (self._outbox().where(filter=FieldFilter("created_at", "<=", older_than))
                .order_by("created_at").order_by("__name__").limit(page_size))
        query, last = base, None
        while True:
            if last is not None:
                query = base.start_after(last)
            snapshots = list(query.stream())
            if not snapshots:
                return
            yield [OutboxEntry(s.id, s.get("topic"), Message.from_doc(s.to_dict()), s.get("created_at"))
                   for s in snapshots]
            if len(snapshots) < page_size:
                return
            last = snapshots[-1]

    def outbox_operation_ids(self) -> set[str]:
        """Operations with any event still waiting in the outbox (ids only, all pages)."""
        ids: set[str] = set()
        query = self._outbox().select(["operation_id"]).order_by("__name__").limit(1000)
        last = None
        while True:
            page = list((query.start_after(last) if last is not None else query).stream())
            ids.update(s.get("operation_id") for s in page if s.get("operation_id"))
            if len(page) < 1000:
                return ids
            last = page[-1]

    def delete_outbox(self, entry_ids: list[str]) -> None:
        for start in range(0, len(entry_ids), 400):
            batch = self.client.batch()
            for entry_id in entry_ids[start:start + 400]:
                batch.delete(self._outbox().document(entry_id))
            batch.commit()


def _encode_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        value = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token is not valid") from exc
    if not value or not all(c in "0123456789abcdef" for c in value) or len(value) > 64:
        raise InvalidArgument("page_token is not valid")
    return value


class SideCollection:
    """A collection beside the records' (claims, leases, durations), on the store's lazy client."""

    def __init__(self, store: FirestoreStore, collection: str):
        self._store = store
        self._collection = collection

    @property
    def client(self):
        return self._store.client

    def _doc(self, key: str):
        return self.client.collection(self._collection).document(key)
