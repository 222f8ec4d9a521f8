"""Firestore persistence: operation records and the event outbox.

Writes that race (poll results, handle's outcomes) use update-time
preconditions rather than transactions: the emulator and Standard edition lock
pessimistically, so optimistic preconditions keep contended work fast and
never block readers. A poll result is written as the fields it changed only,
guarded by the version (update time) it was decided on.

Every call counts what Firestore bills (functions.adapters.firestore_usage).
"""
from __future__ import annotations

import base64
import logging
from datetime import datetime
from typing import Any, Iterable, Iterator

from google.api_core import exceptions as gexc

from functions.adapters.firestore_side import LOST_RACE, SideCollection  # noqa: F401 (re-exported)
from functions.adapters.firestore_usage import Usage
from functions.adapters.firestore_lib import library
from functions.adapters.lazy import Lazy
from functions.domain.errors import InvalidArgument
from functions.domain.events import Message, OutboxEntry, outbox_id
from functions.domain.record import Record, Versioned
from functions.domain.states import ACTIVE
from functions.domain.tracking import Decision

log = logging.getLogger(__name__)

_ACTIVE_STATES = [s.value for s in ACTIVE]
# A guarded write that lost: someone else wrote (or deleted) the document since it was read.
_LOST_RACE_CODES = (5, 9, 10)  # NOT_FOUND, FAILED_PRECONDITION, ABORTED


class FirestoreStore:
    def __init__(self, project: str, collection: str, client=None):
        self._project = project
        self._collection = collection
        self._client = Lazy(self._new_client, client)
        self.usage = Usage()  # the records and the outbox: what each poll costs
        self.side_usage = Usage()  # leases, claims, learnt durations: what each run costs (SideCollection)

    def _new_client(self):
        client = library().firestore.Client(project=self._project)
        # The client builds its gRPC channel on first use, unguarded: threads making their first
        # calls at once would each build one. Build it here, under the Lazy lock.
        getattr(client, "_firestore_api", None)
        return client

    @property
    def client(self):
        return self._client.get()

    def _records(self):
        return self.client.collection(self._collection)

    @property
    def _outbox_name(self) -> str:
        return f"{self._collection}_outbox"

    def _outbox(self):
        return self.client.collection(self._outbox_name)

    # Records ---------------------------------------------------------------
    def create(self, record: Record) -> tuple[Record, bool]:
        """Create unless it exists: `create()` is atomic, so concurrent submits make one record."""
        ref = self._records().document(record.id)
        try:
            self.usage.write()
            ref.create(record.to_doc())
            return record, True
        except gexc.AlreadyExists:
            existing = self.get(record.id)
            if existing is None:  # deleted in between (TTL): extremely unlikely; try once more
                self.usage.write()
                ref.create(record.to_doc())
                return record, True
            return existing, False

    def get(self, operation_id: str) -> Record | None:
        snapshot = self._snapshot(operation_id)
        return Record.from_doc(snapshot.to_dict()) if snapshot.exists else None

    def get_versioned(self, operation_id: str) -> Versioned | None:
        snapshot = self._snapshot(operation_id)
        return Versioned(Record.from_doc(snapshot.to_dict()), snapshot.update_time) if snapshot.exists else None

    def _snapshot(self, operation_id: str):
        self.usage.read()
        return self._records().document(operation_id).get()

    def update_fields(self, operation_id: str, changes: dict) -> None:
        """A field-level update that does not disturb other writers' fields."""
        self.usage.write()
        self._records().document(operation_id).update(changes)

    def existing_ids(self, operation_ids: list[str]) -> set[str]:
        """Which of these records exist, in one batched read (ids only)."""
        refs = [self._records().document(i) for i in operation_ids]
        self.usage.read(len(refs))
        return {s.id for s in self.client.get_all(refs, field_paths=["state"]) if s.exists}

    def list(self, *, state: str | None = None, service: str | None = None, labels: dict | None = None,
             limit: int = 50, page_token: str | None = None) -> tuple[list[Record], str | None]:
        """Equality filters ordered by id: served by single-field indexes (no composite needed)."""
        FieldFilter = library().FieldFilter

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
        self.usage.read(max(1, len(records)))
        more = len(records) > limit
        records = records[:limit]
        return records, (_encode_token(records[-1].id) if more and records else None)

    # Polling ---------------------------------------------------------------
    def _active(self, shards: frozenset[int] | None):
        """Active records of `shards` (None: all). One shard is an equality on the shard field, served
        by the by_shard index; several are filtered after the query (see due_page)."""
        FieldFilter = library().FieldFilter

        query = self._records()
        if shards is not None and len(shards) == 1:
            query = query.where(filter=FieldFilter("shard", "==", next(iter(shards))))
        return query.where(filter=FieldFilter("state", "in", _ACTIVE_STATES))

    def _due_query(self, now: datetime, shards: frozenset[int] | None):
        FieldFilter = library().FieldFilter

        return self._active(shards).where(filter=FieldFilter("next_poll_at", "<=", now)).order_by("next_poll_at")

    def due_page(self, now: datetime, limit: int, shards: frozenset[int] | None = None,
                 after: Any = None) -> tuple[list[Versioned], Any]:
        """One page of due records with their versions, oldest due first, and the cursor after it
        (None at the end).

        `after` continues from the previous page's cursor rather than from the top, so a
        run walks a large backlog one page at a time without re-reading what it passed.
        With several (not all) shards, other shards' records are read and dropped: a run
        holds a subset only while another run still finishes the rest.
        """
        query = self._due_query(now, shards).limit(limit)
        if after is not None:
            query = query.start_after(after)
        found = library().raw.run_query(query)  # raw protobuf: the library's snapshots cost more than the GET
        self.usage.read(max(1, len(found)))
        page = [Versioned(Record.from_doc(fields), update_time) for _, fields, update_time in found
                if shards is None or len(shards) == 1 or fields.get("shard") in shards]
        return page, (self._cursor(found[-1]) if len(found) == limit else None)

    def _cursor(self, found: tuple) -> Any:
        """The last document of a page, as a snapshot for `start_after`: its id and the ordered-by
        field are all a cursor reads (a snapshot deep-copies the data it is given)."""
        DocumentSnapshot = library().DocumentSnapshot

        doc_id, fields, update_time = found
        return DocumentSnapshot(self._records().document(doc_id), {"next_poll_at": fields.get("next_poll_at")},
                                exists=True, read_time=None, create_time=None, update_time=update_time)

    def next_due_at(self, shards: frozenset[int] | None = None) -> datetime | None:
        query = self._active(shards).order_by("next_poll_at")
        if shards is not None and len(shards) > 1:
            query = query.limit(50)  # a few pages' worth of others' records before giving up
        else:
            query = query.limit(1)
        found = None
        reads = 0
        for snapshot in query.stream():
            reads += 1
            if shards is None or len(shards) == 1 or snapshot.get("shard") in shards:
                found = snapshot.get("next_poll_at")
                break
        self.usage.read(max(1, reads))
        return found

    def due_count(self, now: datetime, shards: frozenset[int] | None, up_to: int) -> int:
        """How many operations are due, counted server-side up to `up_to` (no documents read)."""
        query = self._due_query(now, shards).limit(up_to)
        self.usage.read(max(1, -(-up_to // 1000)))
        for result in query.count().get():
            return int(result[0].value)
        return 0

    def reschedule_many(self, items: list[tuple[Versioned, datetime]], now: datetime) -> int:
        """Move records' next poll later (adaptive first poll), each guarded; returns how many moved."""
        BulkWriteBatch = library().BulkWriteBatch

        if not items:
            return 0
        batch = BulkWriteBatch(self.client)
        for versioned, when in items:
            batch.update(self._records().document(versioned.record.id), {"next_poll_at": when, "updated_at": now},
                         option=self.client.write_option(last_update_time=versioned.version))
        self.usage.write(len(items))
        return sum(1 for status in batch.commit().status if status.code == 0)

    def commit(self, items: list[tuple[Versioned, Decision]]) -> list[Any]:
        """Poll results: each record's changed fields, guarded by the version it was decided on.
        Returns each record's new version, or None where someone else wrote it since.

        A result that publishes nothing is one write, all of them in one BatchWrite. A result
        with messages is its record and its outbox entries in one atomic commit: a change is
        never written without its event, nor the event without it. They go in one atomic
        commit together; if that fails (nothing is written), each goes alone, so only the
        raced ones come back None.

        A write Firestore refuses for itself (too large, say) comes back as its exception,
        so that it stays that operation's error and the others land.
        """
        versions: list[Any] = [None] * len(items)
        quiet = [i for i, (_, d) in enumerate(items) if not _messages(d)]
        outboxed = [i for i, (_, d) in enumerate(items) if _messages(d)]
        if quiet:
            for i, version in zip(quiet, self._commit_quiet([items[i] for i in quiet])):
                versions[i] = version
        if outboxed:
            together = self._commit_atomic([items[i] for i in outboxed])
            if isinstance(together, list):
                for i, version in zip(outboxed, together):
                    versions[i] = version
            elif len(outboxed) == 1:
                versions[outboxed[0]] = together
            else:
                for i in outboxed:
                    alone = self._commit_atomic([items[i]])
                    versions[i] = alone[0] if isinstance(alone, list) else alone
        return versions

    def _commit_quiet(self, items: list[tuple[Versioned, Decision]]) -> list[Any]:
        raw = library().raw

        request, written = raw.batch_write_request(self.client), []
        versions: list[Any] = [v.version for v, _ in items]  # nothing changed: the version stands
        for i, (versioned, decision) in enumerate(items):
            changes = decision.record.doc_changes(versioned.record)
            if changes:
                raw.update_write(self._path(versioned.record.id), changes, versioned.version, request.writes.add())
                written.append(i)
        if not written:
            return versions
        self.usage.write(len(written))
        response = raw.batch_write(self.client, request)
        for i, status, result in zip(written, response.status, response.write_results):
            if status.code == 0:
                versions[i] = raw.timestamp(result.update_time)
            elif status.code in _LOST_RACE_CODES:
                versions[i] = None
            else:
                versions[i] = gexc.InvalidArgument(f"write refused (code {status.code}): {status.message}"[:500])
        return versions

    def _commit_atomic(self, items: list[tuple[Versioned, Decision]]) -> list[Any] | Exception | None:
        """The items' new versions; None when a guard failed; the exception Firestore raised."""
        raw = library().raw

        request, record_writes = raw.commit_request(self.client), []  # each record's index among the writes
        writes = request.writes
        for versioned, decision in items:
            record_writes.append(len(writes))
            raw.update_write(self._path(versioned.record.id), decision.record.doc_changes(versioned.record),
                             versioned.version, writes.add())
            for topic, message in _messages(decision):
                raw.set_write(self._path(outbox_id(topic, message), self._outbox_name),
                              {**message.to_doc(), "topic": topic, "operation_id": versioned.record.id,
                               "sequence": decision.record.sequence}, ("created_at",), writes.add())
        self.usage.write(len(writes))
        try:
            response = raw.commit(self.client, request)
        except LOST_RACE:
            return None
        except gexc.GoogleAPICallError as exc:
            return exc
        return [raw.timestamp(response.write_results[i].update_time) for i in record_writes]

    def _path(self, doc_id: str, collection: str | None = None) -> str:
        """A document's full resource name, as the Write protobuf names it."""
        return f"{self.client._database_string}/documents/{collection or self._collection}/{doc_id}"

    # Outbox ----------------------------------------------------------------
    def outbox_pages(self, older_than: datetime, page_size: int = 500) -> Iterator[list[OutboxEntry]]:
        """Entries recorded before `older_than`, page by page, oldest first.

        Creation order is per-operation sequence order: an operation's next
        change is recorded only after its previous one was committed.
        """
        FieldFilter = library().FieldFilter

        base = (self._outbox().where(filter=FieldFilter("created_at", "<=", older_than))
                .order_by("created_at").order_by("__name__").limit(page_size))
        query, last = base, None
        while True:
            if last is not None:
                query = base.start_after(last)
            snapshots = list(query.stream())
            self.usage.read(max(1, len(snapshots)))
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
            self.usage.read(max(1, len(page)))
            ids.update(s.get("operation_id") for s in page if s.get("operation_id"))
            if len(page) < 1000:
                return ids
            last = page[-1]

    def delete_outbox(self, entry_ids: Iterable[str]) -> None:
        """Published entries, deleted in batches (the outbox clean-up): each batch one commit, as
        the library's WriteBatch makes it, built as raw protobuf."""
        raw = library().raw

        entry_ids = list(entry_ids)
        for start in range(0, len(entry_ids), 400):
            request = raw.commit_request(self.client)
            chunk = entry_ids[start:start + 400]
            for entry_id in chunk:
                raw.delete_write(self._path(entry_id, self._outbox_name), request.writes.add())
            self.usage.delete(len(chunk))
            raw.commit(self.client, request)


def _messages(decision: Decision) -> list[tuple[str, Message]]:
    return [(topic, m) for topic, m in (("events", decision.event), ("commands", decision.command))
            if m is not None]


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
