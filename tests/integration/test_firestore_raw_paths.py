"""The store's raw-protobuf paths on the real Firestore emulator: due pages walked by cursor, guarded
commits whose returned versions guard the next write, and the outbox entry written with its record."""
from __future__ import annotations

from datetime import timedelta

from functions.adapters.firestore_store import FirestoreStore
from functions.domain import events
from functions.domain.record import utcnow
from functions.domain.states import State
from functions.domain.tracking import Decision
from tests.unit.factories import make_record


def _records(store: FirestoreStore, n: int):
    now = utcnow()
    records = [make_record(name=f"projects/1/locations/us/operations/raw-{i}", submitted_at=now - timedelta(hours=1),
                           next_poll_at=now - timedelta(seconds=n - i), metadata={"step": i, "list": [1, {"a": None}]},
                           labels={"team": "ocr"}) for i in range(n)]
    for record in records:
        store.create(record)
    return records


def test_due_pages_walked_by_cursor_give_every_record_once_in_due_order_as_written(emulators, project_id):
    store = FirestoreStore(project_id, "lro_operations")
    records = _records(store, 7)
    seen, cursor = [], None
    while True:
        page, cursor = store.due_page(utcnow(), 3, None, cursor)
        seen += page
        if cursor is None:
            break
    assert [v.record for v in seen] == records  # oldest due first; every field decoded as written
    assert [v.version for v in seen] == [store.get_versioned(r.id).version for r in records]


def test_a_committed_version_guards_the_next_write_and_a_stale_one_loses(emulators, project_id):
    store = FirestoreStore(project_id, "lro_operations")
    [record] = _records(store, 1)
    read = store.get_versioned(record.id)
    polled = record.with_changes(state=State.RUNNING, sequence=1, polls=1, provider_state="RUNNING")
    event = events.state_changed(polled, "PENDING", utcnow())
    [version] = store.commit([(read, Decision(polled, event))])
    assert version is not None and version == store.get_versioned(record.id).version
    assert store.get(record.id) == polled
    [entry] = next(store.outbox_pages(utcnow() + timedelta(seconds=5)))
    assert entry.message == event and entry.created_at is not None
    assert entry.message.encoded() == event.encoded()  # published again as the very text stored
    # The version the commit returned guards a quiet write; the stale one read before it does not.
    quiet = polled.with_changes(polls=2)
    assert store.commit([(read, Decision(quiet))]) == [None]
    [again] = store.commit([(type(read)(polled, version), Decision(quiet))])
    assert again is not None and store.get(record.id).polls == 2


def test_published_outbox_entries_are_deleted_and_others_stay(emulators, project_id):
    store = FirestoreStore(project_id, "lro_operations")
    records = _records(store, 3)
    for record in records:
        polled = record.with_changes(state=State.RUNNING, sequence=1, polls=1)
        store.commit([(store.get_versioned(record.id), Decision(polled, events.state_changed(polled, "PENDING",
                                                                                              utcnow())))])
    entries = next(store.outbox_pages(utcnow() + timedelta(seconds=5)))
    assert len(entries) == 3
    store.delete_outbox([entries[0].id, entries[2].id, "events-never-written-1"])
    left = next(store.outbox_pages(utcnow() + timedelta(seconds=5)))
    assert [e.id for e in left] == [entries[1].id]
