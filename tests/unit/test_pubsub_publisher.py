"""The Pub/Sub publisher adapter's waiting, with a stand-in client (no I/O)."""
from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout

from functions.adapters import pubsub_publisher
from functions.adapters.lazy import Lazy
from functions.domain.events import Message


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class StalledFuture:
    """A publish Pub/Sub never answers: each wait uses up the time it was given."""

    def __init__(self, clock: Clock):
        self.clock = clock

    def result(self, timeout=None):
        self.clock.now += timeout
        raise FutureTimeout()


class StalledClient:
    def __init__(self, clock: Clock):
        self.clock = clock
        self.resumed: list[str] = []

    def publish(self, topic, data, ordering_key="", **kwargs):
        return StalledFuture(self.clock)

    def resume_publish(self, topic, key):
        self.resumed.append(key)


def test_a_stalled_pubsub_holds_one_publish_call_for_one_timeout_not_one_per_message(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(pubsub_publisher.time, "monotonic", clock.monotonic)
    publisher = pubsub_publisher.Publisher(timeout_s=10)
    client = StalledClient(clock)
    publisher._client = Lazy(lambda: client)
    messages = [Message({"event_id": f"op{i}-1"}, {}, ordering_key=f"op{i}") for i in range(60)]

    results = publisher.publish("projects/p/topics/t", messages)

    assert len(results) == 60 and all(isinstance(r, FutureTimeout) for r in results)
    assert clock.now <= 10 + 5, f"waited {clock.now} s in all"
    assert sorted(client.resumed) == sorted(f"op{i}" for i in range(60))
