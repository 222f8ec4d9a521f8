"""OutboxRelay with in-memory fakes: per-operation order survives failed publishes."""
from __future__ import annotations

from datetime import timedelta

from functions.config import Settings
from functions.domain.events import Message, OutboxEntry, outbox_id
from functions.services.outbox import OutboxRelay
from functions.services.poll import RunSummary
from tests.unit.factories import NOW


def _event(op: str, seq: int) -> Message:
    return Message({"event_id": f"{op}-{seq}", "sequence": seq}, {}, ordering_key=op)


class FakeStore:
    def __init__(self):
        self.entries: dict[str, OutboxEntry] = {}

    def park(self, message: Message, age_s: float = 60) -> None:
        entry_id = outbox_id("events", message)
        self.entries[entry_id] = OutboxEntry(entry_id, "events", message, NOW - timedelta(seconds=age_s))

    def outbox_operation_ids(self):
        return {e.message.ordering_key for e in self.entries.values()}

    def outbox_pages(self, older_than, page_size=500):
        yield sorted((e for e in self.entries.values() if e.created_at <= older_than), key=lambda e: e.created_at)

    def delete_outbox(self, ids):
        for i in ids:
            self.entries.pop(i, None)


class FakePublisher:
    def __init__(self, down_keys=()):
        self.down_keys = set(down_keys)
        self.sent: list[str] = []

    def publish(self, topic, messages):
        out = []
        for m in messages:
            if m.ordering_key in self.down_keys:
                out.append(RuntimeError("unavailable"))
            else:
                self.sent.append(m.data["event_id"])
                out.append("id")
        return out


def _relay(store, publisher, ticks=None):
    ticks = ticks if ticks is not None else [0.0]
    return OutboxRelay(Settings(project="p"), store, publisher, RunSummary("r"), clock=lambda: NOW,
                       monotonic=lambda: ticks[0])


def test_a_new_event_waits_behind_an_older_one_still_in_the_outbox():
    store, publisher = FakeStore(), FakePublisher()
    store.park(_event("a", 1), age_s=1)  # young: maybe a live run's
    relay = _relay(store, publisher)
    relay.start()
    store.park(_event("a", 2), age_s=0)
    relay.publish([("events", _event("a", 2)), ("events", _event("b", 1))])
    assert publisher.sent == ["b-1"]
    relay.flush()
    assert publisher.sent == ["b-1", "a-1", "a-2"] and not relay.blocked and not store.entries


def test_after_a_failed_publish_an_operations_later_events_are_not_sent_ahead_of_it():
    store, publisher, ticks = FakeStore(), FakePublisher(down_keys={"a"}), [0.0]
    relay = _relay(store, publisher, ticks)
    relay.start()
    store.park(_event("a", 1), age_s=2)
    relay.publish([("events", _event("a", 1))])
    assert relay.blocked == {"a"}
    store.park(_event("a", 2), age_s=1)
    relay.publish([("events", _event("a", 2))])
    assert publisher.sent == []  # Pub/Sub looked down: the relay pauses rather than stall the run
    publisher.down_keys.clear()
    ticks[0] += 10
    relay.flush()
    assert publisher.sent == ["a-1", "a-2"] and not store.entries
