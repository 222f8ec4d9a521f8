"""The Pub/Sub publisher adapter: requests, order and waiting, with a stand-in Publish RPC (no I/O)."""
from __future__ import annotations

import json

import pytest
from google.api_core import exceptions as gexc
from google.pubsub_v1.types import PublishResponse

from functions.adapters import pubsub_publisher
from functions.adapters.pubsub_publisher import NotSent, Publisher
from functions.domain.events import Message

TOPIC = "projects/p/topics/t"


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class PubSub:
    """Records each Publish request; answers ids, or fails the requests that carry a poisoned key."""

    def __init__(self, poisoned: frozenset[str] = frozenset(), clock: Clock | None = None):
        self.requests: list = []
        self.poisoned, self.clock = poisoned, clock

    def __call__(self, request, retry, timeout):
        pb = request._pb
        self.requests.append(pb)
        if self.clock is not None:  # stalled: each request uses up the time it was given
            self.clock.now += timeout
            raise gexc.DeadlineExceeded("stalled")
        if any(m.ordering_key in self.poisoned for m in pb.messages):
            raise gexc.InvalidArgument("refused")
        return PublishResponse(message_ids=[f"id-{json.loads(m.data)['event_id']}" for m in pb.messages])


def message(op: int, n: int = 1) -> Message:
    return Message({"event_id": f"op{op}-{n}"}, {"type": "lro.state_changed", "state": "RUNNING"},
                   ordering_key=f"op{op}")


def test_a_calls_messages_go_in_one_request_in_order_with_their_keys_and_attributes():
    pubsub = PubSub()
    messages = [message(i) for i in range(60)]
    assert Publisher(publish_rpc=pubsub).publish(TOPIC, messages) == [f"id-op{i}-1" for i in range(60)]
    [request] = pubsub.requests
    assert request.topic == TOPIC
    assert [m.ordering_key for m in request.messages] == [f"op{i}" for i in range(60)]
    assert [m.data for m in request.messages] == [m.encoded() for m in messages]
    assert dict(request.messages[0].attributes) == {"type": "lro.state_changed", "state": "RUNNING"}


def test_requests_stay_within_pubsubs_message_and_byte_limits(monkeypatch):
    monkeypatch.setattr(pubsub_publisher, "MAX_MESSAGES", 10)
    pubsub = PubSub()
    results = Publisher(publish_rpc=pubsub).publish(TOPIC, [message(i) for i in range(25)])
    assert [len(r.messages) for r in pubsub.requests] == [10, 10, 5]
    assert results == [f"id-op{i}-1" for i in range(25)]
    monkeypatch.setattr(pubsub_publisher, "MAX_REQUEST_BYTES", 400)
    pubsub = PubSub()
    Publisher(publish_rpc=pubsub).publish(TOPIC, [message(i) for i in range(6)])
    assert len(pubsub.requests) > 1 and sum(len(r.messages) for r in pubsub.requests) == 6


def test_after_a_key_fails_its_later_messages_are_not_sent_and_other_keys_go_on(monkeypatch):
    monkeypatch.setattr(pubsub_publisher, "MAX_MESSAGES", 2)
    pubsub = PubSub(poisoned=frozenset({"op1"}))
    # Requests: [op0-1, op1-1] fails; [op1-2, op2-1] holds op1-2 back and sends op2-1.
    results = Publisher(publish_rpc=pubsub).publish(TOPIC, [message(0), message(1), message(1, 2), message(2)])
    assert isinstance(results[0], gexc.InvalidArgument) and isinstance(results[1], gexc.InvalidArgument)
    assert isinstance(results[2], NotSent) and results[3] == "id-op2-1"
    assert [m.ordering_key for m in pubsub.requests[-1].messages] == ["op2"]


def test_a_stalled_pubsub_holds_one_publish_call_for_one_timeout_not_one_per_request(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(pubsub_publisher.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(pubsub_publisher, "MAX_MESSAGES", 10)
    pubsub = PubSub(clock=clock)
    results = Publisher(timeout_s=10, publish_rpc=pubsub).publish(TOPIC, [message(i) for i in range(60)])
    assert len(results) == 60 and all(isinstance(r, Exception) for r in results)
    assert clock.now <= 10, f"waited {clock.now} s in all"
    assert len(pubsub.requests) == 1


def test_publish_one_raises_what_failed():
    with pytest.raises(gexc.InvalidArgument):
        Publisher(publish_rpc=PubSub(poisoned=frozenset({"op3"}))).publish_one(TOPIC, message(3))
