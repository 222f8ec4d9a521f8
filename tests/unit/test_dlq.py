"""Dead-letter replay with fake Pub/Sub clients: what is republished, and when it is acked."""
from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from functions import dlq


def _received(n: int, key: str = "op-1"):
    return [SimpleNamespace(ack_id=f"ack-{i}", message=SimpleNamespace(
        data=f"m{i}".encode(), ordering_key=key, message_id=f"id-{i}",
        attributes={"type": "cancel", "CloudPubSubDeadLetterSourceDeliveryCount": "5"})) for i in range(n)]


class FakeSubscriber:
    def __init__(self, batches):
        self.batches = list(batches)
        self.acked: list[str] = []
        self.handed_back: list[str] = []

    def pull(self, request, timeout):
        batch = self.batches.pop(0) if self.batches else []
        return SimpleNamespace(received_messages=batch[: request["max_messages"]])

    def acknowledge(self, request):
        self.acked += request["ack_ids"]

    def modify_ack_deadline(self, request):
        assert request["ack_deadline_seconds"] == 0
        self.handed_back += request["ack_ids"]


class FakePublisher:
    def __init__(self, fail_on: set[bytes] = frozenset()):
        self.published: list[tuple] = []
        self.fail_on = fail_on
        self.resumed: list[str] = []

    def publish(self, topic, data, ordering_key="", **attributes):
        future = Future()
        if data in self.fail_on:
            future.set_exception(RuntimeError("publish failed"))
        else:
            self.published.append((topic, data, ordering_key, attributes))
            future.set_result("new-id")
        return future

    def resume_publish(self, topic, key):
        self.resumed.append(key)


def test_replay_republishes_data_attributes_and_ordering_key_then_acks():
    subscriber, publisher = FakeSubscriber([_received(2)]), FakePublisher()
    report = dlq.replay("cmds-dlq", "lro-commands", project="p", subscriber=subscriber, publisher=publisher)
    assert publisher.published == [("projects/p/topics/lro-commands", b"m0", "op-1", {"type": "cancel"}),
                                   ("projects/p/topics/lro-commands", b"m1", "op-1", {"type": "cancel"})]
    assert subscriber.acked == ["ack-0", "ack-1"]
    assert (report.pulled, report.republished, report.message_ids) == (2, 2, ["id-0", "id-1"])
    assert report.subscription == "projects/p/subscriptions/cmds-dlq"


def test_a_failed_republish_is_not_acked_and_is_reported():
    subscriber, publisher = FakeSubscriber([_received(2)]), FakePublisher(fail_on={b"m1"})
    with pytest.raises(dlq.ReplayError):
        dlq.replay("s", "t", project="p", subscriber=subscriber, publisher=publisher)
    assert subscriber.acked == ["ack-0"] and subscriber.handed_back == ["ack-1"]
    assert publisher.resumed == ["op-1"]


def test_limit_caps_how_many_messages_are_replayed():
    subscriber, publisher = FakeSubscriber([_received(5)]), FakePublisher()
    report = dlq.replay("s", "t", project="p", limit=2, subscriber=subscriber, publisher=publisher)
    assert report.republished == 2 and len(publisher.published) == 2


def test_a_dry_run_publishes_nothing_and_hands_the_messages_back():
    subscriber, publisher = FakeSubscriber([_received(3)]), FakePublisher()
    report = dlq.replay("s", "t", project="p", dry_run=True, subscriber=subscriber, publisher=publisher)
    assert publisher.published == [] and subscriber.acked == []
    assert subscriber.handed_back == ["ack-0", "ack-1", "ack-2"] and report.pulled == 3


def test_full_paths_are_used_as_given():
    subscriber, publisher = FakeSubscriber([]), FakePublisher()
    report = dlq.replay("projects/a/subscriptions/s", "projects/b/topics/t", subscriber=subscriber,
                        publisher=publisher)
    assert (report.subscription, report.topic, report.pulled) == (
        "projects/a/subscriptions/s", "projects/b/topics/t", 0)


def test_the_cli_refuses_a_limit_below_one():
    with pytest.raises(SystemExit):
        dlq.main(["replay", "--subscription", "s", "--topic", "t", "--limit", "0"])
