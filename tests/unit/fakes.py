"""In-memory fakes of the ports (functions.ports), for fast service tests.

They keep the adapters' promises that services rely on: versions that change
on every write, guarded writes that fail when the version moved, a change and
its outbox entries committed together, leases that only one holder has.
"""
from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from functions.domain.events import OutboxEntry, outbox_id
from functions.domain.record import Record, Versioned
from functions.domain.states import ACTIVE
from functions.domain.tracking import ApiFailure


class FakeStore:
    """Records and the outbox (PollStore and Outbox)."""

    def __init__(self, clock):
        self._clock = clock
        self._lock = threading.Lock()
        self._versions = itertools.count(1)
        self.docs: dict[str, tuple[Record, int]] = {}
        self.outbox: dict[str, OutboxEntry] = {}
        self.writes = 0
        self.commits: list[int] = []  # records per commit call

    # RecordStore
    def put(self, record: Record) -> None:
        with self._lock:
            self.docs[record.id] = (record, next(self._versions))

    def create(self, record):
        with self._lock:
            if record.id in self.docs:
                return self.docs[record.id][0], False
        self.put(record)
        return record, True

    def get(self, operation_id):
        found = self.docs.get(operation_id)
        return found[0] if found else None

    def get_versioned(self, operation_id):
        found = self.docs.get(operation_id)
        return Versioned(*found) if found else None

    def update_fields(self, operation_id, changes):
        with self._lock:
            record, _ = self.docs[operation_id]
            self.docs[operation_id] = (record.with_changes(**changes), next(self._versions))
            self.writes += 1

    def existing_ids(self, ids):
        return {i for i in ids if i in self.docs}

    def list(self, **_):
        return [r for r, _ in self.docs.values()], None

    # PollStore
    def _due(self, now: datetime, shards) -> list[Versioned]:
        active = [Versioned(r, v) for r, v in self.docs.values() if r.state in ACTIVE
                  and (shards is None or r.shard in shards)]
        return sorted((v for v in active if v.record.next_poll_at <= now), key=_order)

    def due_page(self, now, limit, shards=None, after=None):
        """Like a Firestore cursor: the page after the last one's (next_poll_at, id), whatever moved."""
        with self._lock:
            due = [v for v in self._due(now, shards) if after is None or _order(v) > after]
        page = due[:limit]
        return page, (_order(page[-1]) if len(page) == limit else None)

    def due_count(self, now, shards, up_to):
        return min(up_to, len(self._due(now, shards)))

    def next_due_at(self, shards=None):
        active = [r.next_poll_at for r, _ in self.docs.values() if r.state in ACTIVE
                  and (shards is None or r.shard in shards)]
        return min(active, default=None)

    def reschedule_many(self, items, now):
        moved = 0
        with self._lock:
            for versioned, when in items:
                record, version = self.docs[versioned.record.id]
                if version == versioned.version:
                    self.docs[record.id] = (record.with_changes(next_poll_at=when), next(self._versions))
                    moved += 1
        return moved

    def commit(self, items):
        with self._lock:
            self.commits.append(len(items))
            out = []
            for versioned, decision in items:
                record_id = versioned.record.id
                if self.docs[record_id][1] != versioned.version:
                    out.append(None)
                    continue
                version = next(self._versions)
                self.docs[record_id] = (decision.record, version)
                self.writes += 1
                for topic, message in (("events", decision.event), ("commands", decision.command)):
                    if message is not None:
                        entry_id = outbox_id(topic, message)
                        self.outbox[entry_id] = OutboxEntry(entry_id, topic, message, self._clock())
                        self.writes += 1
                out.append(version)
            return out

    # Outbox
    def outbox_pages(self, older_than, page_size=500):
        entries = sorted((e for e in self.outbox.values() if e.created_at <= older_than),
                         key=lambda e: e.created_at)
        if entries:
            yield entries

    def outbox_operation_ids(self):
        return {e.message.ordering_key for e in self.outbox.values()}

    def delete_outbox(self, entry_ids):
        for entry_id in entry_ids:
            self.outbox.pop(entry_id, None)


class FakeLeases:
    def __init__(self):
        self._lock = threading.Lock()
        self._versions = itertools.count(1)
        self.docs: dict[str, tuple[dict, int]] = {}

    def acquire(self, key, holder, now, until, **fields):
        return self.acquire_many([key], holder, now, until, **fields).get(key)

    def acquire_many(self, keys, holder, now, until, **fields):
        taken = {}
        with self._lock:
            for key in keys:
                current = self.docs.get(key)
                if current is None or current[0]["holder"] == holder or current[0]["expires_at"] <= now:
                    version = next(self._versions)
                    self.docs[key] = ({"holder": holder, "expires_at": until, **fields}, version)
                    taken[key] = version
        return taken

    def renew(self, held, until, **fields):
        renewed = {}
        with self._lock:
            for key, version in held.items():
                doc, current = self.docs.get(key, (None, None))
                if current == version:
                    new = next(self._versions)
                    self.docs[key] = ({**doc, "expires_at": until, **fields}, new)
                    renewed[key] = new
        return renewed

    def get(self, key):
        found = self.docs.get(key)
        return found[0] if found else None


class FakeApi:
    """Answers GETs from a table of operation name → answer (or a callable of the name)."""

    def __init__(self, answer):
        self._answer = answer
        self._lock = threading.Lock()
        self.gets: list[str] = []
        self.times: list[float] = []

    def get(self, ref, quota_project=None):
        with self._lock:
            self.gets.append(ref.name)
            self.times.append(time.monotonic())
        answer = self._answer(ref.name) if callable(self._answer) else self._answer
        return answer

    def start_gets(self, requests):
        return answered_now(self.get, requests)

    def cancel(self, ref, quota_project=None):
        raise NotImplementedError

    def list(self, *args, **kwargs):
        return [], ""


class FakePublisher:
    def __init__(self):
        self.sent: list[tuple[str, Any]] = []

    def publish(self, topic, messages):
        self.sent += [(topic, m) for m in messages]
        return [f"id-{len(self.sent)}" for _ in messages]

    def publish_one(self, topic, message):
        return self.publish(topic, [message])[0]


def _order(versioned: Versioned) -> tuple:
    return versioned.record.next_poll_at, versioned.record.id


TOO_MANY = ApiFailure("transient", {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"})


def answered_now(get, requests) -> list[Future]:
    """start_gets of a client that answers at once: each get() called now, as a finished Future."""
    futures = []
    for ref, quota_project in requests:
        try:
            answer = get(ref, quota_project)
        except Exception as exc:
            futures.append(failed(exc))
            continue
        future: Future = Future()
        future.set_result(answer)
        futures.append(future)
    return futures


def failed(exc: Exception) -> Future:
    """A Future that finished by raising `exc`."""
    future: Future = Future()
    future.set_exception(exc)
    return future
